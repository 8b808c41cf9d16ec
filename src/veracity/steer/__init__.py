"""Steering: Inference-Time Intervention (ITI) and residual-stream steering (CAA, LAT) -- fit, apply through
hooks, bake, validate, sweep."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Intervention": "intervention",
    "POSITIONS": "apply", "apply": "apply", "intervention_factory": "apply",
    "bake": "bake", "baked_state_dict": "bake", "verify_baked": "bake",
    "NotBakeable": "base", "Steer": "base",
    "ResidualSteer": "residual", "apply_residual": "residual", "bake_residual": "residual",
    "fit_contrast_pairs": "residual", "fit_diff_means": "residual", "fit_lat": "residual",
    "verify_residual_baked": "residual",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
