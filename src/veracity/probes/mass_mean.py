"""Mass-mean probe (Marks & Tegmark, "The Geometry of Truth"): direction = mean(true) - mean(false).

With `covariance=True` the weight is Sigma^-1 theta (Sigma the within-class covariance), the paper's
in-distribution variant; it equals LDA. The plain difference of means is the direction that transfers
best out of distribution and is what ITI's `com` intervention uses.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import ScaledLinearProbe, as_batched, as_labels


class MassMeanProbe(ScaledLinearProbe):
    """Learned: `theta_` (mean(true) - mean(false)), `coef_` (theta, or Sigma^-1 theta), `direction_`
    (unit `coef_`), `intercept_` (threshold at the midpoint of the class means), `temperature_`
    (std of the projection, so `predict_proba` is on a sensible scale).

    `shrinkage` adds that fraction of the mean variance to Sigma's diagonal so it stays invertible when
    there are fewer rows than dimensions."""

    def __init__(self, covariance: bool = False, shrinkage: float = 1e-3):
        self.covariance = covariance
        self.shrinkage = shrinkage

    def fit(self, X: Any, y: Any) -> "MassMeanProbe":
        """Fit the mass-mean direction (difference of the class means, optionally whitened) per group, its midpoint
        threshold and its scale."""
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device).bool()
        mu1, mu0 = Xb[yt].mean(0), Xb[~yt].mean(0)  # [G, D]
        theta = mu1 - mu0
        coef = theta
        if self.covariance:
            R = torch.where(yt[:, None, None], Xb - mu1, Xb - mu0).transpose(0, 1)  # [G, N, D]
            cov = torch.bmm(R.transpose(1, 2), R) / N
            ridge = self.shrinkage * cov.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
            cov.diagonal(dim1=1, dim2=2).add_(ridge[:, None])
            coef = torch.linalg.solve(cov, theta.unsqueeze(-1)).squeeze(-1)
        mid = 0.5 * (mu1 + mu0)
        intercept = -(coef * mid).sum(-1)
        proj = torch.einsum("ngd,gd->ng", Xb, coef) + intercept
        self.theta_ = self._out(theta)
        self.coef_ = self._out(coef)
        self.intercept_ = self._out(intercept)
        self.temperature_ = self._out(proj.std(0).clamp_min(1e-12))
        self.direction_ = self._out(F.normalize(theta if not self.covariance else coef, dim=-1))
        return self
