"""Residual-stream steering: fit a vector per layer, add it to decoder layers' outputs, bake it exactly.

Fitting (all vectors point from false towards true, so alpha > 0 steers towards truth):
- `fit_diff_means` -- CAA / DiffMean / "DIM": mean(true rows) - mean(false rows), from labelled data;
- `fit_contrast_pairs` -- CAA's original form: the mean of paired differences pos_i - neg_i;
- `fit_lat` -- representation engineering's reading vector (LAT, Zou et al. 2023): the first principal
  component of paired differences. RepE convention, followed here: each pair's difference is taken in a
  random order (sign +-1, seeded), the differences are centred on their mean, and the top right singular
  vector of that matrix is the direction; its sign is fixed so that pos (true) projects above neg on the
  training pairs. The random order is what makes the truth direction the direction of largest *variance*
  (with every difference in the same order, centring would remove the very mean shift we look for).
  `lat_differences` exposes those signed differences so tests can redo the PCA with numpy.

Scaling (`normalize`), the same for every fit; u is the fitted unit direction:
- "raw" (default): u * (mean paired/class difference . u). For diff-means this is exactly mean(true) -
  mean(false), CAA's convention: alpha = 1 adds the full class difference.
- "sigma": u * std of the training activations projected on u (ITI's sigma): alpha is in standard
  deviations, comparable across layers and with ITI's alpha.
- "unit": u itself: alpha is in activation-norm units.

Applying: `apply_residual` adds alpha * v_l to the output of decoder layer l (what `resid.l` captures)
through forward hooks, at every position or only the last real token of each forward call (as
`steer.apply`). Note: transformers 5 records `output_hidden_states` with its own hooks, which run before
ours on the steered layer itself, so hidden_states[l + 1] does not show the shift (later layers do);
read a steered layer's output with a hook registered after entering `apply_residual`. Baking: `bake_residual` writes a plain Hugging Face folder where the constant is a
bias of the layer's last MLP projection -- exact where the MLP output is added to the residual with
nothing after it (Llama-style layers: down_proj; GPT-2: c_proj), refused (`NotBakeable`) elsewhere.

Modules: `vectors` (the ResidualSteer type and its files), `fit`, `apply` (hooks), `bake`; the names below are
the package's public API.
"""

from ..._lazy import lazy_exports

_EXPORTS = {
    "FORMAT": "vectors", "FORMAT_VERSION": "vectors", "ResidualSteer": "vectors",
    "NORMALIZE": "fit", "fit_contrast_pairs": "fit", "fit_diff_means": "fit", "fit_lat": "fit",
    "fit_residual_from_store": "fit", "lat_differences": "fit", "lat_signs": "fit", "pair_by_group": "fit",
    "NotBakeable": ".base",
    "POSITIONS": "apply", "apply_residual": "apply", "residual_factory": "apply",
    "bake_plan": "bake", "bake_residual": "bake", "baked_residual_state_dict": "bake", "verify_residual_baked":
    "bake",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
