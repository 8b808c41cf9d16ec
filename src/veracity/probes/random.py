"""Random-direction baseline: what accuracy does a direction carry by chance in this space?"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import ScaledLinearProbe, as_batched, as_labels, generator


class RandomProbe(ScaledLinearProbe):
    """A random unit direction per group (seeded); only the threshold and the sign are fitted on the
    training data: threshold at the midpoint of the two classes' mean projections, sign so that the
    true class projects higher. Learned: `direction_`, `coef_` (signed direction), `intercept_`."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X: Any, y: Any) -> "RandomProbe":
        """Draw the seeded random direction per group and fit only its threshold and sign: the floor a real probe must
        beat."""
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device).bool()
        d = torch.randn(G, D, generator=generator(self.seed), dtype=torch.float64).to(Xb.device, Xb.dtype)
        d = F.normalize(d, dim=-1)
        proj = torch.einsum("ngd,gd->ng", Xb, d)
        m1, m0 = proj[yt].mean(0), proj[~yt].mean(0)
        sign = torch.where(m1 >= m0, 1.0, -1.0).to(Xb.dtype)
        coef = d * sign[:, None]
        self.direction_ = self._out(d)
        self.coef_ = self._out(coef)
        self.intercept_ = self._out(-sign * 0.5 * (m1 + m0))
        self.temperature_ = self._out(proj.std(0).clamp_min(1e-12))
        return self
