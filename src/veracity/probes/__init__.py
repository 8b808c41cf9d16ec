"""Probes: where and how does a model represent truth?

Batched torch estimators with the scikit-learn contract (one fit trains a probe per layer or per
(layer, head)), split builders, the registry of probe methods and the geometry of learned directions (the probe
experiments live in `veracity.experiments.probe` and `veracity.experiments.ccs`).
ITI and other steering code call `head_accuracy_matrix` for per-head probes.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "BatchedProbe": "base", "accuracy_per_group": "base",
    "CCSProbe": "ccs", "ccs_loss": "ccs",
    "DETERMINISTIC": "registry", "METHODS": "registry", "make_probe": "registry", "site_matrix": "registry",
    "POLARITY_METHODS": "registry", "PROBES": "registry", "ProbeSpec": "registry", "register_probe": "registry",
    "GeometryResult": "geometry", "chance_levels": "geometry", "compare_directions": "geometry",
    "cosine_matrix": "geometry", "probe_direction": "geometry", "sign_agreement_matrix": "geometry",
    "HeadProbes": "heads", "head_accuracy_matrix": "heads",
    "LogisticProbe": "logistic",
    "MLPProbe": "mlp", "MLP_SIZES": "mlp",
    "MassMeanProbe": "mass_mean",
    "RandomProbe": "random",
    "SPLIT_KINDS": "splits", "SeedStats": "splits", "Split": "splits", "aggregate": "splits", "kfold_splits":
    "splits", "leave_one_group_out": "splits", "make_splits": "splits", "stratified_split": "splits",
    "transfer_split": "splits",
    "TTPDProbe": "ttpd",
    "DistractorResult": "sanity", "PolarityScore": "sanity", "add_distractor": "sanity", "ccs_distractor_test":
    "sanity", "polarity_split": "sanity",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
