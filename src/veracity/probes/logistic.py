"""L2 logistic-regression probe, batched over groups and solved by (quasi-)Newton on a streaming working set.

The objective is scikit-learn's: sum of log-losses + ||w||^2 / (2C), intercept not penalised, so a
`LogisticProbe(C)` matches `LogisticRegression(C)` on the same (optionally standardised) data.

How it is fast. A step costs two passes over a group's rows (the gradient Z^T r and the logits Z @ step);
everything else is D x D per group. The groups (e.g. 270 heads) flow through a working set of a few
dozen groups: a group's rows are gathered when it enters (a copy of contiguous D-rows, [g, N, D]; a
feature-major copy would be a transpose, ~10x slower on CPU) and it leaves as soon as it has converged,
its slot refilled by the next group. So no pass is spent on a finished group and there is no tail of
nearly empty steps at the end of every chunk. Standardisation is applied algebraically (see `_solve`).

Hessians. At w = 0 every row has the same weight, so the first Hessian is exactly the Gram matrix of the
standardised rows times that weight; it is computed once when a group enters (its diagonal also gives the
scales). With `hessian="quasi"` later steps use BFGS updates of its inverse (D x D, no pass over the data);
with "exact" every step computes a fresh Hessian (a third pass, N * D^2 per group). The gradient, objective
and line search are always exact, so either way the fixed point is the optimum to `tol`: the Hessian only
changes the path. A quasi-Newton group gets an exact Hessian after a backtracked, failed or non-descent
step, and every `_REFRESH_EVERY` steps if it is still going.
Measured on smollm2's 270 heads: quasi-Newton takes more steps than Newton (5.1 vs 2.7 on average) but
is faster overall, as were dropping an exact first-step length search and a switch to exact Hessians when
the gradient failed to halve: each saved steps but cost more than the steps it saved.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import BatchedProbe, as_batched, as_labels

_REFRESH_EVERY = 8  # quasi-Newton steps between exact Hessians for a group still not converged
_CPU_SLOTS = 24  # groups in the working set on CPU (24 x 4713 rows x 64 fp32 = 29 MB)


class LogisticProbe(BatchedProbe):
    """L2-regularised logistic regression (sklearn objective) for one or many groups at once.

    Parameters: `C` inverse regularisation strength (as sklearn); `standardize` z-scores each feature
    with training mean/std first (recorded in `mean_`/`scale_`); `max_iter` Newton steps; `tol` on the
    max-norm of the gradient of the per-row (mean) objective (sklearn's lbfgs default is 1e-4);
    `hessian`: "exact" (a fresh Hessian every Newton step), "quasi" (the exact first Hessian, then BFGS
    updates; groups where that goes badly switch to exact), or "auto" = "quasi" for float32 input with
    `standardize=True`, else "exact". Either way the result is the optimum to `tol` (see module docstring).

    Learned: `coef_` / `intercept_` act on *raw* X (standardisation folded in), `coef_std_` /
    `intercept_std_` on standardised X (what sklearn sees after a StandardScaler), `direction_` the
    unit vector of `coef_`, `n_iter_` Newton steps per group.
    """

    def __init__(self, C: float = 1.0, standardize: bool = True, max_iter: int = 100, tol: float = 1e-6,
                 hessian: str = "auto"):
        self.C = C
        self.standardize = standardize
        self.max_iter = max_iter
        self.tol = tol
        self.hessian = hessian

    def _quasi(self, X: torch.Tensor) -> bool:
        if self.hessian not in ("auto", "exact", "quasi"):
            raise ValueError(f"hessian must be 'auto', 'exact' or 'quasi', got {self.hessian!r}")
        if self.hessian != "auto":
            return self.hessian == "quasi"
        # raw activations can be arbitrarily ill-conditioned; float64 callers want the exact path
        return self.standardize and X.dtype != torch.float64

    def fit(self, X: Any, y: Any) -> "LogisticProbe":
        """Fit one logistic regression per group (X [N, D] or [N, G, D], y 0/1) with the scikit-learn objective, all
        groups in one batched solve."""
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device).to(Xb.dtype)
        slots = _CPU_SLOTS if Xb.device.type == "cpu" else max(1, 48_000_000 // (N * D))
        mean, scale, w, b, n_iter = _solve(Xb, yt, 1.0 / self.C, self.max_iter, self.tol, self.standardize,
                                           self._quasi(Xb), slots)
        self.mean_, self.scale_ = self._out(mean), self._out(scale)
        self.coef_std_, self.intercept_std_ = self._out(w), self._out(b)
        coef = w / scale
        self.coef_ = self._out(coef)
        self.intercept_ = self._out(b - (mean * coef).sum(-1))
        self.direction_ = self._out(F.normalize(coef, dim=-1))
        self.n_iter_ = self._out(n_iter)
        return self

    def decision_function(self, X: Any) -> torch.Tensor:
        """The logit X @ coef_ + intercept_ per row (and group), on the input scale (standardisation folded into
        `coef_`)."""
        Xb = self._in(X)
        coef = self.coef_.reshape(-1, Xb.shape[-1]).to(Xb.dtype)
        z = torch.einsum("ngd,gd->ng", Xb, coef) + self.intercept_.reshape(-1).to(Xb.dtype)
        return z.squeeze(1) if self._single else z


def _solve(X: torch.Tensor, y: torch.Tensor, lam: float, max_iter: int, tol: float, standardize: bool,
           quasi: bool, slots: int):
    """Minimise sum_n logloss(w^T z_n + b) + lam/2 ||w||^2 for every group of X [N, G, D] (b unpenalised),
    z the (optionally) standardised rows. Returns (mean, scale, w, b, n_iter), w and b on the standardised
    scale. A group stops when its gradient (of the per-row objective, max-norm) is below `tol`, after
    `max_iter` steps, or when the Newton decrement says the remaining gain is below the floating-point
    resolution of the objective (float32 cannot resolve a 1e-6 gradient on some heads).

    Standardisation is exact but never materialised: a group's rows are stored centred on a rough
    centre c (the mean of a strided sample of rows: this removes any large offset, which is what float
    precision needs), Z = X - c, and the exact mean c + delta and scale sd are applied algebraically,
    z_std = (Z - delta) / sd, on D-vectors and D x D matrices. delta comes free from the first gradient
    pass (at w = 0 every row has the same weight s0, so that pass yields Z^T 1) and sd from the Gram
    matrix Z^T Z that also gives the first Hessian. That saves two of the four passes a gathered,
    centred and scaled copy would cost."""
    N, G, D = X.shape
    dt, dev = X.dtype, X.device
    eps = torch.finfo(dt).eps
    C = min(slots, G)
    prior = y.mean().clamp(1e-6, 1 - 1e-6)
    b0 = torch.log(prior / (1 - prior))
    f0 = (F.softplus(b0) * N - b0 * y.sum())  # the objective at w = 0, b = b0
    mean = torch.zeros(G, D, dtype=dt, device=dev)
    scale = torch.ones(G, D, dtype=dt, device=dev)
    w_out = torch.zeros(G, D, dtype=dt, device=dev)
    b_out = b0.expand(G).clone()
    n_iter = torch.zeros(G, dtype=torch.long, device=dev)
    Z = torch.empty(C, N, D, dtype=dt, device=dev)  # the working set's rows; row i <-> state row i
    scratch = torch.empty(C, N, D, dtype=dt, device=dev)  # sqrt(s)-scaled rows for exact Hessians
    sample = slice(0, N, max(1, N // 256))  # rows for the rough centre
    lam_eye = torch.eye(D, dtype=dt, device=dev) * lam
    RS = torch.empty(C, 2, N, dtype=dt, device=dev)  # the r and s rows of the gradient pass

    def empty(*shape, dtype=dt):
        return torch.empty(0, *shape, dtype=dtype, device=dev)

    # per-group state of the working set
    head = empty(dtype=torch.long)  # which group sits in each slot
    dlt, sd = empty(D), empty(D)  # exact mean offset from the rough centre, and scale
    w, b, z, f = empty(D), empty(), empty(N), empty()
    Hi = empty(D + 1, D + 1)  # inverse Hessian for the next step (exact at entry, then BFGS-updated)
    grad_prev, dwb = empty(D + 1), empty(D + 1)  # last gradient and last move, for the BFGS update
    exact, k = empty(dtype=torch.bool), empty(dtype=torch.long)

    def state():
        return [head, dlt, sd, w, b, z, f, Hi, grad_prev, dwb, exact, k]

    nxt = 0
    while True:
        # refill the free slots with the next groups (in batches: fewer, larger ops): gather and centre
        n = len(head)
        m = min(C - n, G - nxt)
        new = 0  # groups added now: the last `new` slots
        if m > 0 and (m >= max(1, C // 4) or n == 0 or nxt + m == G):
            new = m
            sl = slice(nxt, nxt + m)
            nxt += m
            Zn, src = Z[n:n + m], X[:, sl]
            if standardize:
                c = src[sample].mean(0)
                torch.sub(src.transpose(0, 1), c.unsqueeze(1), out=Zn)
            else:
                c = torch.zeros(m, D, dtype=dt, device=dev)
                Zn.copy_(src.transpose(0, 1))
            gram = torch.bmm(Zn.transpose(1, 2), Zn)  # used by the first pass, just below
            zeros = torch.zeros(m, D + 1, dtype=dt, device=dev)
            head = torch.cat([head, torch.arange(sl.start, sl.stop, device=dev)])
            dlt, sd = torch.cat([dlt, torch.zeros_like(c)]), torch.cat([sd, torch.ones_like(c)])
            w, b = torch.cat([w, torch.zeros_like(c)]), torch.cat([b, b0.expand(m)])
            z, f = torch.cat([z, b0.expand(m, N)]), torch.cat([f, f0.expand(m)])
            Hi = torch.cat([Hi, torch.empty(m, D + 1, D + 1, dtype=dt, device=dev)])  # made at the first pass
            grad_prev, dwb = torch.cat([grad_prev, zeros]), torch.cat([dwb, zeros])
            exact = torch.cat([exact, torch.full((m,), not quasi, device=dev)])
            k = torch.cat([k, torch.zeros(m, dtype=torch.long, device=dev)])
        n = len(head)
        if n == 0:
            break
        Zw = Z[:n]
        p = torch.sigmoid(z)
        rs = RS[:n]
        r, s = torch.sub(p, y, out=rs[:, 0]), torch.mul(p, 1 - p, out=rs[:, 1])
        # one pass over the rows: Z^T r and Z^T s (the gradient and the w-b border of the Hessian)
        gh = torch.bmm(rs, Zw)
        rsum, ssum = r.sum(1), s.sum(1)
        fresh = k == 0
        if new:
            # first pass of the new groups: s is the same on every row, so Z^T s / s = Z^T 1 gives the exact
            # mean offset; the Gram matrix gives the scale and the exact first Hessian
            fi = slice(n - new, n)
            if standardize:
                d = gh[fi, 1] / s[fi, :1] / N
                var = torch.diagonal(gram, dim1=1, dim2=2) / N - d * d
                sdf = var.clamp_min(0).sqrt()
                dlt[fi], sd[fi] = d, torch.where(sdf > 0, sdf, torch.ones_like(sdf))
                mean[sl], scale[sl] = c + d, sd[fi]
            gc = gram - N * dlt[fi].unsqueeze(-1) * dlt[fi].unsqueeze(1)
            H0 = torch.empty(new, D + 1, D + 1, dtype=dt, device=dev)
            H0[:, :D, :D] = gc / (sd[fi].unsqueeze(-1) * sd[fi].unsqueeze(1)) * s[fi, :1, None] + lam_eye
            h0 = (gh[fi, 1] - dlt[fi] * ssum[fi, None]) / sd[fi]
            H0[:, :D, D], H0[:, D, :D], H0[:, D, D] = h0, h0, ssum[fi]
            Hi[fi] = torch.linalg.inv(H0)
        # in standardised coordinates: Z_std^T v = (Z^T v - delta sum(v)) / sd
        gw = (gh[:, 0] - dlt * rsum[:, None]).div_(sd).add_(w, alpha=lam)
        grad = torch.cat([gw, rsum[:, None]], 1)
        gmax = grad.abs().amax(1) / N
        active = (gmax > tol) & (k < max_iter)
        if quasi:  # BFGS: fold the last move into the inverse Hessian (a no-op for fresh groups: dwb = 0)
            _bfgs_inverse_update(Hi, grad - grad_prev, dwb)
            exact |= (k > 0) & (k % _REFRESH_EVERY == 0)  # the rare slow group gets an exact Hessian now and then
        # exact Hessians where asked for: every step in "exact" mode; in "quasi" mode one refresh, from which
        # BFGS goes on. (A refresh for every group at its second step was tried: it saves a step for half
        # the groups but costs as much as the step it saves.)
        need = active & ~fresh & exact
        if bool(need.any()):
            ni = need.nonzero().squeeze(1)
            Hi[ni] = torch.linalg.inv(_exact_hessians(Zw, s, gh[:, 1], ssum, dlt, sd, ni, lam_eye, scratch))
        used_exact = need | fresh
        if quasi:
            exact &= ~need
        step = torch.bmm(Hi, grad.unsqueeze(-1)).squeeze(-1)
        decrease = (grad * step).sum(1)  # Newton decrement^2 ~ 2 (f - f*)
        reg = 0.5 * lam * (w * w).sum(1)
        # the remaining gain is below float resolution of the objective, so a line search cannot judge the
        # step: we are in the quadratic region and the full exact Newton step is the last one (an inexact
        # Hessian's decrement proves nothing: those groups line-search on, and go exact if that stalls)
        polish = (0.5 * decrease.abs() <= 8 * eps * (f + reg).abs().clamp_min(1.0)) & used_exact & active
        if bool(polish.any()):
            w = torch.where(polish[:, None], w - step[:, :D], w)
            b = torch.where(polish, b - step[:, D], b)
            k = k + polish.long()
            active &= ~polish
        bad = active & (decrease <= 0)  # a non-descent step (an inexact Hessian): redo exactly next time
        if bool(bad.any()):
            exact |= bad
            step = torch.where(bad[:, None], torch.zeros_like(step), step)
        # retire converged / finished groups and close the gaps (rows move within Z, no new buffer)
        if not bool(active.all()):
            _retire(~active, head, w, b, k, w_out, b_out, n_iter)
            keep = _compact(Z[:n], active)
            head, dlt, sd, w, b, z, f, Hi, grad_prev, dwb, exact, k = (t[keep] for t in state())
            reg, grad, step, decrease, used_exact = (t[keep] for t in (reg, grad, step, decrease, used_exact))
            n = len(keep)
            if n == 0:
                continue
            Zw = Z[:n]
        sw, sb = step[:, :D], step[:, D]
        # Z_std @ sw + sb = Z @ (sw / sd) + (sb - delta . sw / sd), as v^T Z^T: a batched product with the
        # rows as the transposed operand runs ~2.5x faster than Z @ v with a [D, 1] operand (and ~1.7x
        # faster than one gemv per group)
        v = sw / sd
        dz = torch.baddbmm((sb - (dlt * v).sum(1))[:, None, None], v.unsqueeze(1), Zw.transpose(1, 2)).squeeze(1)
        wsq, wstep, ssq = (w * w).sum(1), (w * sw).sum(1), (sw * sw).sum(1)
        # along the step the objective is sum softplus(z - t dz) - y.(z - t dz) + penalty(t): one softplus
        # pass per trial (backtracking from t = 1); the accepted t per group is applied once at the end
        yz, ydz = z @ y, dz @ y
        t = torch.ones(n, dtype=dt, device=dev)
        t_acc = torch.zeros_like(t)
        accepted = torch.zeros(n, dtype=torch.bool, device=dev)
        for _ in range(40):
            f_new = F.softplus(torch.addcmul(z, t[:, None], dz, value=-1)).sum(1) - yz + t * ydz
            pen = 0.5 * lam * (wsq - 2 * t * wstep + t * t * ssq)
            ok = (f_new + pen <= f + reg - 1e-4 * t * decrease) & ~accepted
            t_acc = torch.where(ok, t, t_acc)
            f = torch.where(ok, f_new, f)
            accepted |= ok
            if bool(accepted.all()):
                break
            t = torch.where(accepted, t, t * 0.5)
        w = torch.addcmul(w, t_acc[:, None], sw, value=-1)
        b = b - t_acc * sb
        z = torch.addcmul(z, t_acc[:, None], dz, value=-1)
        dwb, grad_prev = step * -t_acc[:, None], grad
        if quasi:  # a backtracked quasi-Newton step: its Hessian is poor
            exact |= ~used_exact & (t_acc < 1)
        k = k + 1
        stalled = ~accepted  # a failed line search means we are at the precision limit
        if bool(stalled.any()):
            retry = stalled & ~used_exact  # an inexact step may stall where an exact one would not
            exact |= retry
            stalled &= ~retry
            if bool(stalled.any()):
                _retire(stalled, head, w, b, k, w_out, b_out, n_iter)
                keep = _compact(Z[:n], ~stalled)
                head, dlt, sd, w, b, z, f, Hi, grad_prev, dwb, exact, k = (t[keep] for t in state())
    return mean, scale, w_out, b_out, n_iter


def _retire(done, head, w, b, k, w_out, b_out, n_iter) -> None:
    """Write the solutions of the groups in `done` to the outputs."""
    hd = head[done]
    w_out[hd], b_out[hd], n_iter[hd] = w[done], b[done], k[done]


def _exact_hessians(Z: torch.Tensor, s: torch.Tensor, zts: torch.Tensor, ssum: torch.Tensor, dlt: torch.Tensor,
                    sd: torch.Tensor, idx: torch.Tensor, lam_eye: torch.Tensor,
                    scratch: torch.Tensor) -> torch.Tensor:
    """The exact Hessians [[Z_std^T diag(s) Z_std + lam I, h], [h^T, sum s]], h = Z_std^T s, of the groups `idx`
    (increasing), Z_std = (Z - delta) / sd. One product per contiguous run of groups, as
    (sqrt(s) Z)^T (sqrt(s) Z) through a preallocated scratch (a fresh [g, N, D] temporary would cost more
    in page faults than the product); then the centring and scaling on D x D: Z_c^T S Z_c = Z^T S Z -
    delta (Z^T s)^T - (Z^T s) delta^T + sum(s) delta delta^T, with `zts` = Z^T s."""
    D = Z.shape[-1]
    ids = idx.tolist()
    H = torch.empty(len(ids), D + 1, D + 1, dtype=Z.dtype, device=Z.device)
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or ids[i] != ids[i - 1] + 1:
            a, b = ids[start], ids[i - 1] + 1
            sc = torch.mul(Z[a:b], s[a:b].sqrt().unsqueeze(-1), out=scratch[: b - a])
            H[start:i, :D, :D] = torch.bmm(sc.transpose(1, 2), sc)
            start = i
    d, q = dlt[idx], zts[idx]
    Hw = H[:, :D, :D]
    Hw -= d.unsqueeze(-1) * q.unsqueeze(1) + q.unsqueeze(-1) * d.unsqueeze(1)
    Hw += ssum[idx, None, None] * d.unsqueeze(-1) * d.unsqueeze(1)
    Hw /= sd[idx].unsqueeze(-1) * sd[idx].unsqueeze(1)
    Hw += lam_eye
    h = (q - d * ssum[idx, None]) / sd[idx]
    H[:, :D, D] = h
    H[:, D, :D] = h
    H[:, D, D] = ssum[idx]
    return H


def _bfgs_inverse_update(Hi: torch.Tensor, yv: torch.Tensor, sv: torch.Tensor) -> None:
    """In place, per group: the BFGS update of an inverse Hessian for the move sv and gradient change yv,
    Hi += rho [(1 + rho y.Hi y) s s^T - s (Hi y)^T - (Hi y) s^T], rho = 1 / y.s; skipped where y.s is not
    positive (a group that did not move). The objective is strictly convex (lam > 0), so y.s > 0 for any
    real move and the update keeps Hi positive definite."""
    ys = (yv * sv).sum(1)
    ok = ys > 0
    if not bool(ok.any()):
        return
    rho = torch.where(ok, 1.0 / torch.where(ok, ys, 1.0), 0.0)
    Hy = torch.bmm(Hi, yv.unsqueeze(-1)).squeeze(-1)
    c = rho * (1 + rho * (yv * Hy).sum(1))
    Hi.add_(sv.unsqueeze(-1) * (c[:, None] * sv - rho[:, None] * Hy).unsqueeze(1)
            - (rho[:, None] * Hy).unsqueeze(-1) * sv.unsqueeze(1))


def _compact(T: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """Make the live groups of T the first ones, in place, and return the order (index tensor) to apply
    to every other state tensor. Each hole below the new end is filled by a live group from above it,
    so only as many groups are copied as retired (shifting everything down would copy most of them),
    and no new buffer is allocated (its page faults would cost more than the copies)."""
    alive = live.tolist()
    n = sum(alive)
    order = list(range(n))
    donors = [j for j in range(n, len(alive)) if alive[j]]
    for i in range(n):
        if not alive[i]:
            j = donors.pop()
            T[i].copy_(T[j])
            order[i] = j
    return torch.tensor(order, dtype=torch.long, device=live.device)
