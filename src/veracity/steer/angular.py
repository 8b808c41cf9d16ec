"""Angular steering (Vu & Nguyen, NeurIPS 2025, lone17/angular-steering): a norm-preserving rotation of the layer
output within a plane, by an angle rather than an additive alpha.

The plane at each steered layer is spanned by b1, the unit difference-of-means direction (false -> true) of the
training rows, and b2, the top principal component of the training rows (centred) with their b1 component
removed, i.e. the direction along which the activations vary most inside the complement of b1; its sign is
chosen so that the training mean has a non-negative b2 coordinate. With a = h.b1, b = h.b2 and
rho = sqrt(a^2 + b^2):

    h' = h - a b1 - b b2 + rho (cos theta b1 + sin theta b2)

i.e. h's component in the plane is turned to the angle theta from b1 (0 = along the true direction, 180 = along
the false one) and keeps its length; the rest of h is untouched, so |h'| = |h|. theta is the steer's `alpha`,
in degrees. The adaptive variant (``angular-adaptive``) rotates only activations with a positive b1 coordinate
(a > 0: those already aligned with the direction), leaving the others as they are.

No angle is the identity (theta = 0 turns every in-plane component onto b1), so `veracity steer sweep` scores
every angle given with --alphas, 0 included, against the plain model. Not bakeable (a rotation that depends on h;
`veracity.steer.layerwise`). An angle is absolute, so what it does depends on where the rows already sit in the
plane: the fit records that (`plane_stats`) and the sweep's log prints it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .layerwise import LayerwiseSteer, kept_unit, training_rows, unit_rows

METHODS = ("angular", "angular-adaptive")


@dataclass
class AngularSteer(LayerwiseSteer):
    """layers: decoder layers; b1, b2 [L, D] orthonormal pairs spanning each layer's plane; alpha: theta in
    degrees; method: "angular" (every activation) or "angular-adaptive" (only those with h.b1 > 0)."""

    layers: list[int]
    b1: torch.Tensor
    b2: torch.Tensor
    alpha: float = 0.0
    method: str = "angular"
    provenance: dict = field(default_factory=dict)

    SHAPES = {"b1": ("L", "D"), "b2": ("L", "D")}
    METHODS = METHODS

    def __post_init__(self) -> None:
        self.layers = self.checked_layers()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        L = len(self.layers)
        b1 = kept_unit(torch.as_tensor(self.b1).reshape(L, -1))
        b2 = torch.as_tensor(self.b2).reshape(L, -1)
        if not bool(((b2.double() * b1.double()).sum(-1).abs() < 1e-6).all()):  # orthogonal to b1, else made so
            b2 = b2.double() - (b2.double() * b1.double()).sum(-1, keepdim=True) * b1.double()
        self.b1, self.b2 = b1, kept_unit(b2)
        self.alpha = float(self.alpha)

    @property
    def hidden_size(self) -> int:
        """The model width the plane was fitted for."""
        return int(self.b1.shape[1])

    @property
    def adaptive(self) -> bool:
        """Whether only activations with a positive b1 coordinate are rotated."""
        return self.method == "angular-adaptive"

    def fit_summary(self, layer: int) -> str | None:
        """One line on where the training rows sit in `layer`'s plane (provenance["plane"]), so a sweep's log says
        what an angle will do before it is scored; None for a steer fitted without it."""
        p = (self.provenance.get("plane") or {}).get(str(int(layer)))
        if not p:
            return None
        return (f"training rows at {p['angle_median']:.1f} degrees from b1 (quartiles {p['angle_q25']:.1f}-"
                f"{p['angle_q75']:.1f}), {p['in_plane_share']:.0%} of |h|^2 in the plane (median), "
                f"{p['aligned_share']:.0%} with h.b1 > 0 (what the adaptive variant rotates)")

    def transform(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """h's in-plane component turned to theta = alpha degrees from b1, its length kept."""
        b1, b2 = self.b1[i].to(h.device, h.dtype), self.b2[i].to(h.device, h.dtype)
        a, b = h @ b1, h @ b2
        rho = torch.sqrt(a * a + b * b)
        t = math.radians(self.alpha)
        new = h + (rho * math.cos(t) - a)[..., None] * b1 + (rho * math.sin(t) - b)[..., None] * b2
        return torch.where((a > 0)[..., None], new, h) if self.adaptive else new


def second_axis(X: torch.Tensor, b1: torch.Tensor) -> torch.Tensor:
    """[L, D] b2: per layer, the top right singular vector of the centred rows X [n, L, D] with their b1
    component removed, signed so the rows' mean has b2 coordinate >= 0."""
    out = []
    for l in range(X.shape[1]):
        Xl, u = X[:, l].double(), b1[l].double()
        Z = Xl - Xl.mean(0)
        Z = Z - (Z @ u)[:, None] * u
        v = torch.linalg.svd(Z, full_matrices=False).Vh[0]
        v = v - (v @ u) * u
        out.append(-v if float(Xl.mean(0) @ v) < 0 else v)
    return unit_rows(torch.stack(out))


def plane_stats(X: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor, layers: Sequence[int]) -> dict:
    """Where the rows X [n, L, D] sit in each layer's plane, keyed by layer (as provenance["steerability"] is):
    the quartiles of their angle from b1 in degrees (the angle a rotation replaces), the median share of |h|^2 in
    the plane (how much of h a rotation moves), the share with h.b1 > 0 (the rows the adaptive variant rotates).
    Why: an angle means nothing without these. Rows already near the target angle barely move; rows far from it
    with most of |h|^2 in the plane move by most of their norm; where every row has h.b1 > 0 the adaptive variant
    is plain angular steering (docs/results.md has a model where all three happen)."""
    out = {}
    for i, layer in enumerate(layers):
        Xl = X[:, i].double()
        a, b = Xl @ b1[i].double(), Xl @ b2[i].double()
        q = torch.quantile(torch.rad2deg(torch.atan2(b, a)), torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
        share = (a * a + b * b) / (Xl * Xl).sum(-1).clamp_min(1e-30)
        out[str(int(layer))] = {"angle_q25": float(q[0]), "angle_median": float(q[1]), "angle_q75": float(q[2]),
                                "in_plane_share": float(torch.quantile(share, 0.5)),
                                "aligned_share": float((a > 0).double().mean())}
    return out


def fit_angular(X: torch.Tensor, y: torch.Tensor, layers: Sequence[int], angle: float = 0.0, adaptive: bool = False,
                provenance: dict | None = None) -> AngularSteer:
    """The rotation plane from training rows X [n, L, D] (axis 1 = `layers`) with labels y [n] (1 = true):
    b1 = the unit class-mean difference, b2 = `second_axis`; where the rows sit in it (`plane_stats`) is kept in
    provenance["plane"]."""
    X, y = torch.as_tensor(X).double(), torch.as_tensor(y).bool()
    b1 = unit_rows(X[y].mean(0) - X[~y].mean(0))
    method = METHODS[1] if adaptive else METHODS[0]
    b2 = second_axis(X, b1)
    prov = {"method": method, "second_axis": "top PC of the centred training rows orthogonal to b1",
            "plane": plane_stats(X, b1, b2, layers), **(provenance or {})}
    return AngularSteer(list(layers), b1, b2, angle, method, prov)


def fit_angular_for_fold(lm, train_questions: Sequence[int], layers: Sequence[int] | None = None, angle: float = 0.0,
                         adaptive: bool = False, seed: int = 0, data_dir=None, limit: int | None = None,
                         acts: str | Path | None = None, fold: int = 0, revision: str = "2021") -> AngularSteer:
    """Angular steering fitted on the training questions' rows of this model's cached resid activations."""
    from .ace import training_steerability
    from .residual_tqa import default_dataset, load_residual_data

    data = load_residual_data(lm, data_dir=data_dir, limit=limit, acts=acts, dataset=default_dataset(revision))
    X, y, layers, prov = training_rows(data, train_questions, layers, seed, fold)
    prov["steerability"] = training_steerability(data, train_questions, X, y, layers, seed)
    return fit_angular(X, y, layers, angle, adaptive, prov)
