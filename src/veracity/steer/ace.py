"""Affine concept editing (ACE, Marshall et al. 2024, EleutherAI/steering-llama3) and mean-centring ablation.

At each steered layer, with u the unit difference-of-means direction (false -> true) of the training rows and r
a reference point:

    h' = h - (h.u - r.u) u + alpha * s * u

so every activation's coordinate along u becomes r.u + alpha * s whatever it was. alpha = 0 is the ablation
*about the reference* (the coordinate set to the reference's, not to 0: ablation about the origin pushes
activations off their distribution, which is where it gives gibberish). `reference`: ``"false"`` (default,
the mean of the other class, as the paper's ACE) or ``"all"`` (the mean of every training row: mean-centring).
s is the size of one unit of alpha (residual steering's `normalize`): ``raw`` = the class-mean difference
along u, so with the false-class reference alpha = 1 moves every activation to the true class's mean
coordinate; ``sigma`` = the std of the projections; ``unit`` = 1.

Not bakeable: the projection is a rank-1 linear map of the layer output, and the residual stream passes that
output to every later layer unchanged (`veracity.steer.layerwise`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .layerwise import LayerwiseSteer, kept_unit, scales, training_rows, unit_rows

REFERENCES = ("false", "all")


@dataclass
class AceSteer(LayerwiseSteer):
    """layers: decoder layers; directions [L, D] unit vectors u; ref_proj [L] the reference's coordinate r.u;
    scales [L] the length of one unit of alpha along u; alpha: the coordinate's offset from the reference."""

    layers: list[int]
    directions: torch.Tensor
    ref_proj: torch.Tensor
    scales: torch.Tensor
    alpha: float = 1.0
    method: str = "ace"
    provenance: dict = field(default_factory=dict)

    SHAPES = {"directions": ("L", "D"), "ref_proj": ("L",), "scales": ("L",)}
    METHODS = ("ace",)

    def __post_init__(self) -> None:
        self.layers = self.checked_layers()
        L = len(self.layers)
        self.directions = kept_unit(torch.as_tensor(self.directions).reshape(L, -1))
        self.ref_proj = torch.as_tensor(self.ref_proj).detach().to("cpu", torch.float32).reshape(L)
        self.scales = torch.as_tensor(self.scales).detach().to("cpu", torch.float32).reshape(L)
        self.alpha = float(self.alpha)

    @property
    def hidden_size(self) -> int:
        """The model width the directions were fitted for."""
        return int(self.directions.shape[1])

    def transform(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """h - (h.u - r.u) u + alpha s u at layer `layers[i]`."""
        u = self.directions[i].to(h.device, h.dtype)
        target = float(self.ref_proj[i]) + self.alpha * float(self.scales[i])
        return h + (target - h @ u)[..., None] * u


def fit_ace(X: torch.Tensor, y: torch.Tensor, layers: Sequence[int], reference: str = "false",
            normalize: str = "raw", alpha: float = 1.0, provenance: dict | None = None) -> AceSteer:
    """ACE from training rows X [n, L, D] (axis 1 = `layers`) with labels y [n] (1 = true): u = the unit
    class-mean difference, r = the false rows' mean (`reference="false"`) or every row's (``"all"``)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    X, y = torch.as_tensor(X).double(), torch.as_tensor(y).bool()
    u = unit_rows(X[y].mean(0) - X[~y].mean(0))
    ref = X[~y].mean(0) if reference == "false" else X.mean(0)
    prov = {"method": "ace", "reference": reference, "normalize": normalize, **(provenance or {})}
    return AceSteer(list(layers), u, (ref * u).sum(-1), scales(u, X, y, normalize), alpha, "ace", prov)


def fit_ace_for_fold(lm, train_questions: Sequence[int], layers: Sequence[int] | None = None, alpha: float = 1.0,
                     normalize: str = "raw", reference: str = "false", seed: int = 0, data_dir=None,
                     limit: int | None = None, acts: str | Path | None = None, fold: int = 0,
                     revision: str = "2021") -> AceSteer:
    """ACE fitted on the training questions' rows of this model's cached resid activations (caa's rows)."""
    from .residual_tqa import default_dataset, load_residual_data

    data = load_residual_data(lm, data_dir=data_dir, limit=limit, acts=acts, dataset=default_dataset(revision))
    X, y, layers, prov = training_rows(data, train_questions, layers, seed, fold)
    prov["steerability"] = training_steerability(data, train_questions, X, y, layers, seed)
    return fit_ace(X, y, layers, reference, normalize, alpha, prov)


def training_steerability(data, train_questions, X: torch.Tensor, y: torch.Tensor, layers: Sequence[int],
                          seed: int = 0) -> dict:
    """The steerability predictors of each fitted layer (`steerability.layer_predictors`) on the rows
    `training_rows` returned (X, y): contrast pairs of a true and a false answer to one training question
    (`pair_by_group`, seeded, as caa's) for the directional agreement, separability of all rows."""
    import numpy as np

    from .residual.fit import pair_by_group
    from .steerability import layer_predictors

    rows = np.flatnonzero(np.isin(data.question, np.asarray(list(train_questions))))
    try:
        pairs = pair_by_group(y.long(), data.question[rows].tolist(), seed=seed)
    except ValueError:  # no question holds both classes: separability only
        pairs = None
    return layer_predictors(X, y, layers, pairs)
