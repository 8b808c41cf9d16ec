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
        if self.standardize:
            mean = Xb.mean(0)
        for sl in group_chunks(G, N, D):
            # one contiguous group-major working copy [g, N, D], centred and scaled in place
            Z = Xb[:, sl].transpose(0, 1).contiguous()
            if self.standardize:
                Z.sub_(mean[sl].unsqueeze(1))
                sd = torch.linalg.vector_norm(Z, dim=1) / N ** 0.5
                sd = torch.where(sd > 0, sd, torch.ones_like(sd))
                Z.div_(sd.unsqueeze(1))
                scale[sl] = sd
            w[sl], b[sl], n_iter[sl] = _newton(Z, yt, 1.0 / self.C, self.max_iter, self.tol)
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
    """Minimise sum_n logloss(Z w + b) + lam/2 ||w||^2 for every group of Z [g, N, D] at once (b unpenalised).

    Each step costs three passes over Z (Hessian, gradient, Z @ step); the line search is free because
    the logits move linearly along the step. A group stops when its gradient is below `tol` (per row) or
    when the Newton decrement says the remaining gain is below floating-point resolution of the
    objective (float32 cannot resolve a 1e-6 gradient on some heads). Returns (w, b, n_iter)."""
    g, N, D = Z.shape
    dt, dev = Z.dtype, Z.device
    eps = torch.finfo(dt).eps
    w = torch.zeros(g, D, dtype=dt, device=dev)
    prior = y.mean().clamp(1e-6, 1 - 1e-6)
    b = torch.full((g,), float(torch.log(prior / (1 - prior))), dtype=dt, device=dev)
    z = b[:, None].expand(g, N).clone()  # logits, kept in step with (w, b)
    f = (F.softplus(z) - y * z).sum(1)
    active = torch.ones(g, dtype=torch.bool, device=dev)
    n_iter = torch.zeros(g, dtype=torch.long)
    eye = torch.eye(D, dtype=dt, device=dev) * lam
    for _ in range(max_iter):
        p = torch.sigmoid(z)
        r = p - y
        gw = torch.bmm(r.unsqueeze(1), Z).squeeze(1) + lam * w
        gb = r.sum(1)
        grad = torch.cat([gw, gb[:, None]], 1)
        active &= grad.abs().amax(1) / N > tol
        if not bool(active.any()):
            break
        s = (p * (1 - p)).clamp_min(1e-12)
        ZS = Z * s.unsqueeze(-1)
        H = torch.empty(g, D + 1, D + 1, dtype=dt, device=dev)
        H[:, :D, :D] = torch.bmm(ZS.transpose(1, 2), Z) + eye
        h_wb = ZS.sum(1)
        del ZS
        H[:, :D, D] = h_wb
        H[:, D, :D] = h_wb
        H[:, D, D] = s.sum(1)
        step = torch.linalg.solve(H, grad.unsqueeze(-1)).squeeze(-1) * active[:, None]
        decrease = (grad * step).sum(1)  # Newton decrement^2 ~ 2 (f - f*)
        reg = 0.5 * lam * (w * w).sum(1)
        active &= 0.5 * decrease > 8 * eps * (f + reg).abs().clamp_min(1.0)
        if not bool(active.any()):
            break
        step = step * active[:, None]
        sw, sb = step[:, :D], step[:, D]
        dz = torch.bmm(Z, sw.unsqueeze(-1)).squeeze(-1) + sb[:, None]
        wsq, wstep, ssq = (w * w).sum(1), (w * sw).sum(1), (sw * sw).sum(1)
        t = torch.ones(g, dtype=dt, device=dev)
        accepted = ~active
        for _ in range(40):
            z_new = z - t[:, None] * dz
            pen = 0.5 * lam * (wsq - 2 * t * wstep + t * t * ssq)
            f_new = (F.softplus(z_new) - y * z_new).sum(1)
            ok = (f_new + pen <= f + reg - 1e-4 * t * decrease) & ~accepted
            w = torch.where(ok[:, None], w - t[:, None] * sw, w)
            b = torch.where(ok, b - t * sb, b)
            z = torch.where(ok[:, None], z_new, z)
            f = torch.where(ok, f_new, f)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        n_iter += active.cpu().long()
        active &= accepted  # a stalled line search means we are at the precision limit
    return w, b, n_iter
