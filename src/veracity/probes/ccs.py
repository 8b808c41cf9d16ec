"""Contrast-Consistent Search (Burns et al. 2022), batched over restarts and groups.

For a yes/no question the model sees x+ (answered "Yes") and x- (answered "No"). A linear probe with a
sigmoid gives p+ and p-; the unsupervised loss asks for consistency (p+ = 1 - p-) and confidence
(not both 0.5): loss = mean[(p+ - (1 - p-))^2 + min(p+, p-)^2]. Prediction: 0.5 * (p+ + 1 - p-).

Three defects of the first public release are absent by construction, and tests/probes/test_ccs.py
checks each: (1) the normalisation statistics (each side's own mean and scale) come from the training
rows only and are stored, never recomputed on test rows; (2) the sigmoid is applied before the loss;
(3) every minibatch of every epoch takes a gradient step (default: full batch, one step per epoch).

All R restarts for all G groups are one parameter tensor [R, G, D] trained with one AdamW; the restart
with the lowest final unsupervised loss is kept per group.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import PairedProbe, as_batched, generator


def ccs_loss(p_pos: torch.Tensor, p_neg: torch.Tensor) -> torch.Tensor:
    """Mean over the last axis (rows) of consistency + confidence; probabilities in, not logits."""
    consistency = (p_pos - (1 - p_neg)) ** 2
    confidence = torch.minimum(p_pos, p_neg) ** 2
    return (consistency + confidence).mean(-1)


def _stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(X, dim=0, unbiased=False)
    scale = var.sqrt()
    return mean, torch.where(scale > 0, scale, torch.ones_like(scale))


class CCSProbe(PairedProbe):
    """`fit(X_pos, X_neg, y=None)`: X_pos/X_neg [N, D] or [N, G, D]. `y` (1 when the "Yes" side is
    true) is used only to fix the sign after the unsupervised fit (`flipped_`), never for training.

    Parameters: `n_restarts`, `epochs`, `lr` and `weight_decay` (AdamW), `batch_size` (None = full
    batch), `seed`. Learned: `mean_pos_`, `scale_pos_`, `mean_neg_`, `scale_neg_` (train rows only),
    `coef_` / `intercept_` (on normalised inputs), `direction_` (unit vector of `coef_` mapped back
    to raw activation space by the mean of the two sides' scales), `loss_` (the kept
    restart's unsupervised loss), `restart_losses_` [R(, G)], `flipped_`."""

    def __init__(self, n_restarts: int = 10, epochs: int = 1000, lr: float = 1e-3, weight_decay: float = 0.01,
                 batch_size: int | None = None, seed: int = 0):
        self.n_restarts = n_restarts
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed

    def _normalise(self, X_pos: Any, X_neg: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides with the *stored training* statistics -> [G, N, D] each."""
        P, single = as_batched(X_pos, device=self._device)
        Q, _ = as_batched(X_neg, device=self._device)
        if single != self._single:
            raise ValueError("use the [N, D] / [N, G, D] layout of fit")
        P = (P - self._mp.to(P.dtype)) / self._sp.to(P.dtype)
        Q = (Q - self._mn.to(Q.dtype)) / self._sn.to(Q.dtype)
        return P.transpose(0, 1), Q.transpose(0, 1)

    def fit(self, X_pos: Any, X_neg: Any, y: Any = None) -> "CCSProbe":
        """Fit CCS on contrast pairs without labels (best of `n_restarts` by the unsupervised loss); `y`, when given,
        only fixes the sign."""
        P, self._single = as_batched(X_pos)
        Q, _ = as_batched(X_neg, device=P.device)
        if P.shape != Q.shape:
            raise ValueError(f"x+ and x- differ in shape: {tuple(P.shape)} vs {tuple(Q.shape)}")
        N, G, D = P.shape
        dt, dev = P.dtype, P.device
        self._device = dev
        self._mp, self._sp = _stats(P)
        self._mn, self._sn = _stats(Q)
        Pn, Qn = self._normalise(X_pos, X_neg)  # [G, N, D]
        R = self.n_restarts
        gen = generator(self.seed)
        bound = 1.0 / D ** 0.5  # nn.Linear's default init, as the reference implementation
        W = ((torch.rand(R, G, D, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_()
        b = ((torch.rand(R, G, 1, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_()
        opt = torch.optim.AdamW([W, b], lr=self.lr, weight_decay=self.weight_decay)
        bs = N if not self.batch_size or self.batch_size <= 0 else self.batch_size
        for _ in range(self.epochs):
            perm = torch.randperm(N, generator=gen).to(dev) if bs < N else None
            for start in range(0, N, bs):  # every minibatch steps, not only the last
                idx = perm[start:start + bs] if perm is not None else slice(None)
                pp = torch.sigmoid(torch.einsum("gnd,rgd->rgn", Pn[:, idx], W) + b)
                pn = torch.sigmoid(torch.einsum("gnd,rgd->rgn", Qn[:, idx], W) + b)
                loss = ccs_loss(pp, pn)  # [R, G]
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
        with torch.no_grad():
            pp = torch.sigmoid(torch.einsum("gnd,rgd->rgn", Pn, W) + b)
            pn = torch.sigmoid(torch.einsum("gnd,rgd->rgn", Qn, W) + b)
            losses = ccs_loss(pp, pn)  # [R, G]
            best = losses.argmin(0)  # [G]
            gi = torch.arange(G, device=dev)
            coef, icpt = W.detach()[best, gi], b.detach()[best, gi, 0]
        self._coef, self._icpt = coef, icpt
        self.coef_, self.intercept_ = self._out(coef), self._out(icpt)
        # direction in raw input space: the weight undoes each side's scaling (mean of the two scales)
        self.direction_ = self._out(F.normalize(coef / (0.5 * (self._sp + self._sn)), dim=-1))
        self.restart_losses_ = losses.squeeze(1) if self._single else losses
        self.loss_ = self._out(losses[best, gi])
        self.mean_pos_, self.scale_pos_ = self._out(self._mp), self._out(self._sp)
        self.mean_neg_, self.scale_neg_ = self._out(self._mn), self._out(self._sn)
        self._flip = torch.zeros(G, dtype=torch.bool, device=dev)
        if y is not None:
            acc = self._accuracy(self._raw_proba(X_pos, X_neg), y)
            self._flip = (acc < 0.5).to(dev)
        self.flipped_ = self._out(self._flip)
        return self

    @torch.no_grad()
    def _raw_proba(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """0.5 * (p+ + 1 - p-) before any sign fix -> [N, G]."""
        Pn, Qn = self._normalise(X_pos, X_neg)
        pp = torch.sigmoid(torch.einsum("gnd,gd->gn", Pn, self._coef.to(Pn.dtype)) + self._icpt[:, None].to(Pn.dtype))
        pn = torch.sigmoid(torch.einsum("gnd,gd->gn", Qn, self._coef.to(Qn.dtype)) + self._icpt[:, None].to(Qn.dtype))
        return (0.5 * (pp + 1 - pn)).transpose(0, 1)

    @staticmethod
    def _accuracy(proba: torch.Tensor, y: Any) -> torch.Tensor:
        y = torch.as_tensor(y.cpu() if isinstance(y, torch.Tensor) else y).to(proba.device).long().flatten()
        return ((proba > 0.5).long() == y[:, None]).double().mean(0).cpu()

    def _pair_proba(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """P("Yes" side true) = 0.5 * (p+ + 1 - p-), sign-fixed on the training labels when given (so
        `score` is the honest number: the sign never comes from the test rows)."""
        p = self._raw_proba(X_pos, X_neg)
        return torch.where(self._flip[None, :], 1 - p, p)

    def score_either_sign(self, X_pos: Any, X_neg: Any, y: Any) -> float | torch.Tensor:
        """max(acc, 1 - acc) on these rows: the optimistic number the CCS paper reports; label it so."""
        acc = self._accuracy(self._raw_proba(X_pos, X_neg), y)
        acc = torch.maximum(acc, 1 - acc)
        return float(acc) if self._single else acc

    def unsupervised_loss(self, X_pos: Any, X_neg: Any) -> float | torch.Tensor:
        """The CCS loss (consistency + confidence) of the fitted probe on pairs: a float, or per group [G]."""
        Pn, Qn = self._normalise(X_pos, X_neg)
        with torch.no_grad():
            pp = torch.sigmoid(torch.einsum("gnd,gd->gn", Pn, self._coef) + self._icpt[:, None])
            pn = torch.sigmoid(torch.einsum("gnd,gd->gn", Qn, self._coef) + self._icpt[:, None])
            loss = ccs_loss(pp, pn).cpu()
        return float(loss) if self._single else loss
