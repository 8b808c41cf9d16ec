"""L2 logistic-regression probe, batched over groups and solved by Newton's method.

The objective is scikit-learn's: sum of log-losses + ||w||^2 / (2C), intercept not penalised, so a
`LogisticProbe(C)` matches `LogisticRegression(C)` on the same (optionally standardised) data.
Newton (with a backtracking line search per group) converges in ~10 steps to machine precision, and
each step is a handful of batched matrix products, so 270 head probes cost about what one does.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import BatchedProbe, as_batched, as_labels, group_chunks


class LogisticProbe(BatchedProbe):
    """L2-regularised logistic regression (sklearn objective) for one or many groups at once.

    Parameters: `C` inverse regularisation strength (as sklearn); `standardize` z-scores each feature
    with training mean/std first (recorded in `mean_`/`scale_`); `max_iter` Newton steps; `tol` on the
    max-norm of the gradient of the per-row (mean) objective.

    Learned: `coef_` / `intercept_` act on *raw* X (standardisation folded in), `coef_std_` /
    `intercept_std_` on standardised X (what sklearn sees after a StandardScaler), `direction_` the
    unit vector of `coef_`, `n_iter_` Newton steps per group.
    """

    def __init__(self, C: float = 1.0, standardize: bool = True, max_iter: int = 100, tol: float = 1e-6):
        self.C = C
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: Any, y: Any) -> "LogisticProbe":
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device).to(Xb.dtype)
        dt, dev = Xb.dtype, Xb.device
        mean = torch.zeros(G, D, dtype=dt, device=dev)
        scale = torch.ones(G, D, dtype=dt, device=dev)
        w = torch.empty(G, D, dtype=dt, device=dev)
        b = torch.empty(G, dtype=dt, device=dev)
        n_iter = torch.zeros(G, dtype=torch.long)
        for sl in group_chunks(G, N, D + 1):
            # one group-major working copy [g, N, D+1]: features (standardised in place) + intercept column
            Z = torch.ones(sl.stop - sl.start, N, D + 1, dtype=dt, device=dev)
            Z[:, :, :D].copy_(Xb[:, sl].transpose(0, 1))
            if self.standardize:
                var, mu = torch.var_mean(Z[:, :, :D], dim=1, unbiased=False)
                sd = var.sqrt()
                sd = torch.where(sd > 0, sd, torch.ones_like(sd))
                Z[:, :, :D].sub_(mu.unsqueeze(1)).div_(sd.unsqueeze(1))
                mean[sl], scale[sl] = mu, sd
            wb, n_iter[sl] = _newton(Z, yt, 1.0 / self.C, self.max_iter, self.tol)
            w[sl], b[sl] = wb[:, :D], wb[:, D]
            del Z
        self.mean_, self.scale_ = self._out(mean), self._out(scale)
        self.coef_std_, self.intercept_std_ = self._out(w), self._out(b)
        coef = w / scale
        self.coef_ = self._out(coef)
        self.intercept_ = self._out(b - (mean * coef).sum(-1))
        self.direction_ = self._out(F.normalize(coef, dim=-1))
        self.n_iter_ = self._out(n_iter)
        return self

    def decision_function(self, X: Any) -> torch.Tensor:
        Xb = self._in(X)
        coef = self.coef_.reshape(-1, Xb.shape[-1]).to(Xb.dtype)
        z = torch.einsum("ngd,gd->ng", Xb, coef) + self.intercept_.reshape(-1).to(Xb.dtype)
        return z.squeeze(1) if self._single else z


def _newton(Z: torch.Tensor, y: torch.Tensor, lam: float, max_iter: int, tol: float):
    """Minimise sum_n logloss + lam/2 ||w||^2 for every group of Z [g, N, D+1] at once (last column of
    Z is the constant 1 for the unpenalised intercept).

    Each step costs three passes over Z (Hessian, gradient, Z @ step); the line search is free because
    the logits move linearly along the step. Groups that converge, or whose line search stalls at
    floating-point precision, stop moving while the others continue. Returns (w [g, D+1], n_iter [g])."""
    g, N, D1 = Z.shape
    dt, dev = Z.dtype, Z.device
    pen = torch.full((D1,), lam, dtype=dt, device=dev)
    pen[-1] = 0.0
    w = torch.zeros(g, D1, dtype=dt, device=dev)
    prior = y.mean().clamp(1e-6, 1 - 1e-6)
    w[:, -1] = float(torch.log(prior / (1 - prior)))
    z = w[:, -1:].expand(g, N).clone()  # logits, kept in step with w
    f = (F.softplus(z) - y * z).sum(1)
    active = torch.ones(g, dtype=torch.bool, device=dev)
    n_iter = torch.zeros(g, dtype=torch.long)
    for _ in range(max_iter):
        p = torch.sigmoid(z)
        grad = torch.bmm((p - y).unsqueeze(1), Z).squeeze(1) + pen * w
        active &= grad.abs().amax(1) / N > tol
        if not bool(active.any()):
            break
        s = (p * (1 - p)).clamp_min(1e-12)
        H = torch.bmm((Z * s.unsqueeze(-1)).transpose(1, 2), Z)
        H.diagonal(dim1=1, dim2=2).add_(pen)
        step = torch.linalg.solve(H, grad.unsqueeze(-1)).squeeze(-1) * active[:, None]
        dz = torch.bmm(Z, step.unsqueeze(-1)).squeeze(-1)
        decrease = (grad * step).sum(1)  # > 0 along the Newton direction
        wsq, wstep, ssq = (pen * w * w).sum(1), (pen * w * step).sum(1), (pen * step * step).sum(1)
        t = torch.ones(g, dtype=dt, device=dev)
        accepted = ~active
        for _ in range(40):
            z_new = z - t[:, None] * dz
            f_new = (F.softplus(z_new) - y * z_new).sum(1) + 0.5 * (wsq - 2 * t * wstep + t * t * ssq)
            ok = (f_new <= f + 0.5 * wsq - 1e-4 * t * decrease) & ~accepted
            w = torch.where(ok[:, None], w - t[:, None] * step, w)
            z = torch.where(ok[:, None], z_new, z)
            f = torch.where(ok, f_new - 0.5 * (wsq - 2 * t * wstep + t * t * ssq), f)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        n_iter += active.cpu().long()
        active &= accepted  # a stalled line search means we are at the precision limit
    return w, n_iter
