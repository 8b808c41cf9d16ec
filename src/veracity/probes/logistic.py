"""L2 logistic-regression probe, batched over groups and solved by Newton's method.

The objective is scikit-learn's: sum of log-losses + ||w||^2 / (2C), intercept not penalised, so a
`LogisticProbe(C)` matches `LogisticRegression(C)` on the same (optionally standardised) data.
Newton (with a backtracking line search per group) converges in a few steps, and each step is a
handful of batched matrix products, so 270 head probes cost about what one does.

Why the Hessian may be bfloat16 (float32 input only): with D=64 the Hessian Z^T diag(s) Z (N*D^2 per
group) costs more than everything else in a step (gradient and line search are N*D). On hardware with
fast bf16 matrix units (AMX on recent Xeons, tensor cores on GPUs) it is ~5x cheaper in bf16 (fp32
accumulation). The gradient, objective and line search stay in the input precision, so the fixed point
is still the exact optimum to `tol`: an approximate Hessian only changes the path (linear convergence
at a rate ~ its relative error, ~1e-2, once in the quadratic region). The same argument lets the first
step use the Gram matrix (at w = 0 the weights s are constant) and the steps after `_REFRESH` reuse the
last Hessian. Where the Hessian is too ill-conditioned for bf16 (e.g. a near-constant feature blown up by
standardisation) a group's steps stall; that is detected (a backtracked line search, a non-descent step or
a gradient that does not halve) and the group switches to the exact Hessian, so the result does not depend
on bf16 being adequate. float64 input always uses the exact float64 Hessian.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .base import BatchedProbe, as_batched, as_labels

_REFRESH = 3  # bf16 Hessians are recomputed for the first _REFRESH Newton steps, then reused
_CPU_CHUNK = 16  # groups per working chunk on CPU (16 x 4713 x 64 fp32 = 19 MB)


class LogisticProbe(BatchedProbe):
    """L2-regularised logistic regression (sklearn objective) for one or many groups at once.

    Parameters: `C` inverse regularisation strength (as sklearn); `standardize` z-scores each feature
    with training mean/std first (recorded in `mean_`/`scale_`); `max_iter` Newton steps; `tol` on the
    max-norm of the gradient of the per-row (mean) objective (sklearn's lbfgs default is 1e-4);
    `hessian`: "exact" (in the input dtype), "bf16" (bfloat16 Hessian, exact gradient/objective; groups
    where it stalls fall back to exact), or "auto" = "bf16" for float32 (or lower) input with
    `standardize=True` on a CUDA device or a CPU with AMX, else "exact". float64 input is
    always solved with the exact float64 Hessian. Either way the result is the optimum to `tol`.

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

    def _low_precision(self, X: torch.Tensor) -> bool:
        if self.hessian not in ("auto", "exact", "bf16"):
            raise ValueError(f"hessian must be 'auto', 'exact' or 'bf16', got {self.hessian!r}")
        if X.dtype == torch.float64 or self.hessian == "exact":
            return False
        if self.hessian == "bf16":
            return True
        if not self.standardize:  # raw activations can be arbitrarily ill-conditioned
            return False
        if X.device.type == "cuda":
            return True
        return X.device.type == "cpu" and _cpu_has_fast_bf16()

    def fit(self, X: Any, y: Any) -> "LogisticProbe":
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        self._device = Xb.device
        yt = as_labels(y, N, Xb.device).to(Xb.dtype)
        dt, dev = Xb.dtype, Xb.device
        low = self._low_precision(Xb)
        mean = torch.zeros(G, D, dtype=dt, device=dev)
        scale = torch.ones(G, D, dtype=dt, device=dev)
        w = torch.empty(G, D, dtype=dt, device=dev)
        b = torch.empty(G, dtype=dt, device=dev)
        n_iter = torch.zeros(G, dtype=torch.long)
        # Group-major working copy [g, N, D] of a few groups at a time: a gather of contiguous D-rows
        # (fast), where a feature-major [g, D, N] copy would be a full transpose (~10x slower on CPU).
        # Every product below reads it in a layout BLAS takes without copying.
        heads = _CPU_CHUNK if dev.type == "cpu" else max(1, 48_000_000 // (N * D))
        buf = torch.empty(min(heads, G), N, D, dtype=dt, device=dev)
        # bf16 scratch for the Hessians, allocated once: a fresh multi-MB buffer per chunk costs more in
        # page faults than the products that use it
        zs = torch.empty(2, min(heads, G), N, D, dtype=torch.bfloat16, device=dev) if low else None
        ones = torch.full((N,), 1.0 / N, dtype=dt, device=dev)
        for i in range(0, G, heads):
            sl = slice(i, min(i + heads, G))
            g = sl.stop - sl.start
            Z, src = buf[:g], Xb[:, sl]
            gram = None
            if self.standardize:
                # mean by one gemv, then gather and centre in one pass; the exact Gram of the centred
                # chunk gives the scales (its diagonal) and is the first Newton Hessian (see _newton)
                mean[sl] = torch.mv(src.reshape(N, g * D).t(), ones).view(g, D)
                torch.sub(src.transpose(0, 1), mean[sl].unsqueeze(1), out=Z)
                gram = torch.bmm(Z.transpose(1, 2), Z)
                sd = torch.diagonal(gram, dim1=1, dim2=2).div(N).sqrt_()
                sd = torch.where(sd > 0, sd, torch.ones_like(sd))
                Z.div_(sd.unsqueeze(1))
                gram.div_(sd.unsqueeze(1)).div_(sd.unsqueeze(2))
                scale[sl] = sd
            else:
                Z.copy_(src.transpose(0, 1))
            w[sl], b[sl], n_iter[sl] = _newton(Z, yt, 1.0 / self.C, self.max_iter, self.tol, low, gram, zs)
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


def _cpu_has_fast_bf16() -> bool:
    """AMX tiles (Sapphire Rapids and later): bf16 bmm ~5x fp32 there; without them it is no faster."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def _newton(Z: torch.Tensor, y: torch.Tensor, lam: float, max_iter: int, tol: float, low_precision: bool = False,
            gram: torch.Tensor | None = None, zs: torch.Tensor | None = None):
    """Minimise sum_n logloss(w^T Z + b) + lam/2 ||w||^2 for every group of Z [g, N, D] at once (b unpenalised).

    Each step costs the Hessian (bf16 when `low_precision`, see the module docstring) and two fp passes
    over Z (gradient, Z @ step); the line search is free because the logits move linearly along the step.
    Groups that have converged are dropped from the working set. A group stops when its gradient is below
    `tol` (per row) or when the Newton decrement says the remaining gain is below floating-point
    resolution of the objective (float32 cannot resolve a 1e-6 gradient on some heads).
    `zs`: bf16 scratch [2, >= g, N, D] (low precision only; made here if not given): a bf16 copy of Z
    and its row-scaled copy.
    `gram`: Z^T Z per group, if the caller has it. At w = 0 every row has the same weight, so the first
    Hessian is exactly that Gram matrix times the weight.
    Returns (w, b, n_iter)."""
    g, N, D = Z.shape
    dt, dev = Z.dtype, Z.device
    Zl = None  # bf16 copy of the working set's Z, made at the first bf16 Hessian
    eps = torch.finfo(dt).eps
    prior = y.mean().clamp(1e-6, 1 - 1e-6)
    w_out = torch.zeros(g, D, dtype=dt, device=dev)
    b_out = torch.full((g,), float(torch.log(prior / (1 - prior))), dtype=dt, device=dev)
    n_iter = torch.zeros(g, dtype=torch.long)
    idx = torch.arange(g, device=dev)  # groups of the working set -> rows of the outputs
    w, b = w_out.clone(), b_out.clone()
    z = b[:, None].expand(g, N).clone()  # logits, kept in step with (w, b)
    f = (F.softplus(z) - y * z).sum(1)
    exact = torch.full((g,), not low_precision, dtype=torch.bool, device=dev)
    live = torch.ones(g, dtype=torch.bool, device=dev)  # not yet retired
    gprev = torch.full((g,), float("inf"), dtype=dt, device=dev)
    lam_eye = torch.eye(D, dtype=dt, device=dev) * lam
    for k in range(max_iter):
        p = torch.sigmoid(z)
        r = p - y
        s = (p * (1 - p)).clamp_min_(1e-12)
        # one pass over Z for the gradient (exact) and the w-b block of the Hessian
        gh = torch.bmm(torch.stack([r, s], 1), Z)
        gw, h_wb = gh[:, 0].add_(w, alpha=lam), gh[:, 1]
        grad = torch.cat([gw, r.sum(1, keepdim=True)], 1)
        gmax = grad.abs().amax(1) / N
        active = (gmax > tol) & live
        if low_precision and k >= 2:  # an approximate Hessian that stalls: exact from now on
            exact |= gmax > 0.5 * gprev
        H = torch.empty(len(idx), D + 1, D + 1, dtype=dt, device=dev)
        first_exact = k == 0 and gram is not None
        if first_exact:
            H[:, :D, :D] = gram * s[:, :1, None]
        elif low_precision:
            if k < _REFRESH:
                # a bf16 copy of Z once, then each Hessian is one bf16 -> bf16 row scaling and a bf16
                # product (a mixed fp32 -> bf16 multiply goes through an fp32 temporary: 5x slower)
                if Zl is None:
                    if zs is None:
                        zs = torch.empty((2, *Z.shape), dtype=torch.bfloat16, device=dev)
                    Zl = zs[0, : len(idx)].copy_(Z)
                ZS = torch.mul(Zl, s.to(torch.bfloat16).unsqueeze(-1), out=zs[1, : len(idx)])
                H[:, :D, :D] = torch.bmm(ZS.transpose(1, 2), Zl)
            else:  # later steps reuse the last Hessian, with a BFGS update for the step just taken
                _bfgs_update(H_lp, grad - grad_prev, dwb)
                H.copy_(H_lp)
        if bool(exact.any()) and not first_exact:
            ex = exact.nonzero().squeeze(1)
            Ze, se = (Z, s) if len(ex) == len(idx) else (Z[ex], s[ex])
            H[ex, :D, :D] = torch.bmm((Ze * se.unsqueeze(-1)).transpose(1, 2), Ze)
            del Ze
        used_exact = exact | first_exact
        if not low_precision or k < _REFRESH:
            H[:, :D, :D] += lam_eye
            H[:, :D, D] = h_wb
            H[:, D, :D] = h_wb
            H[:, D, D] = s.sum(1)
            if low_precision:
                H_lp = H.clone()
        elif bool(exact.any()):
            H[ex, :D, :D] += lam_eye
            H[ex, :D, D] = h_wb[ex]
            H[ex, D, :D] = h_wb[ex]
            H[ex, D, D] = s[ex].sum(1)
        step = torch.linalg.solve(H, grad.unsqueeze(-1)).squeeze(-1)
        decrease = (grad * step).sum(1)  # Newton decrement^2 ~ 2 (f - f*)
        reg = 0.5 * lam * (w * w).sum(1)
        at_floor = 0.5 * decrease.abs() <= 8 * eps * (f + reg).abs().clamp_min(1.0)
        if low_precision:  # an approximate decrement can be too small: confirm with the exact Hessian
            exact |= at_floor & active & ~used_exact
            at_floor &= used_exact
        # the remaining gain is below float resolution of the objective, so a line search cannot judge
        # the step: we are in the quadratic region and the full exact Newton step is the last one
        polish = at_floor & active
        if bool(polish.any()):
            w = torch.where(polish[:, None], w - step[:, :D], w)
            b = torch.where(polish, b - step[:, D], b)
        active &= ~at_floor
        if low_precision:  # an inexact Hessian can (rarely) give a non-descent step: redo exactly next time
            bad = active & (decrease <= 0)
            exact |= bad
            step = torch.where(bad[:, None], torch.zeros_like(step), step)
        # retire converged groups, then shrink the working set when it has halved
        done = ~active
        if bool((done & live).any()):
            w_out[idx[done]], b_out[idx[done]] = w[done], b[done]
        live &= active
        if not bool(active.any()):
            break
        if int(active.sum()) <= len(idx) // 2:
            keep = active.nonzero().squeeze(1)
            idx, Z = idx[keep], _compact(Z, keep)
            if Zl is not None:
                Zl = _compact(Zl, keep)
            w, b, z, f, reg, step, decrease = w[keep], b[keep], z[keep], f[keep], reg[keep], step[keep], decrease[keep]
            grad = grad[keep]
            used_exact = used_exact[keep]
            if low_precision:
                H_lp = H_lp[keep]
            exact, gmax, active, live = exact[keep], gmax[keep], active[keep], live[keep]
        step = step * active[:, None]
        sw, sb = step[:, :D], step[:, D]
        dz = torch.empty(len(idx), N, dtype=dt, device=dev)
        for j in range(len(idx)):  # one gemv per group: ~3x faster than a bmm with a [D, 1] operand
            torch.mv(Z[j], sw[j], out=dz[j])
        dz.add_(sb[:, None])
        wsq, wstep, ssq = (w * w).sum(1), (w * sw).sum(1), (sw * sw).sum(1)
        # along the step the objective is sum softplus(z - t dz) - y.(z - t dz) + penalty(t): one
        # softplus pass per trial; the accepted t per group is applied once at the end
        yz, ydz = z @ y, dz @ y
        t = torch.ones(len(idx), dtype=dt, device=dev)
        t_acc = torch.zeros_like(t)
        accepted = ~active
        for _ in range(40):
            z_new = torch.addcmul(z, t[:, None], dz, value=-1)
            f_new = F.softplus(z_new).sum(1) - yz + t * ydz
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
        dwb, grad_prev = step * -t_acc[:, None], grad  # for the BFGS update of the next reused Hessian
        z = torch.addcmul(z, t_acc[:, None], dz, value=-1)
        if low_precision and k > 0:  # backtracking after the first (global) step: the bf16 step was poor
            exact |= active & (t < 1)
        n_iter[idx.cpu()] += active.cpu().long()
        stalled = active & ~accepted  # a stalled line search means we are at the precision limit
        if bool(stalled.any()):
            if low_precision:
                # an approximate step may stall where an exact one would not: retry exactly once
                retry = stalled & ~used_exact
                exact |= retry
                stalled &= ~retry
            w_out[idx[stalled]], b_out[idx[stalled]] = w[stalled], b[stalled]
            live &= ~stalled
            keep = (~stalled).nonzero().squeeze(1)
            if len(keep) == 0:
                break
            if len(keep) < len(idx):
                idx, Z, w, b, z, f, exact, gmax, live = idx[keep], _compact(Z, keep), w[keep], b[keep], z[keep], f[keep], exact[keep], gmax[keep], live[keep]
                dwb, grad_prev = dwb[keep], grad_prev[keep]
                if low_precision:
                    H_lp = H_lp[keep]
                if Zl is not None:
                    Zl = _compact(Zl, keep)

        gprev = gmax
    else:
        w_out[idx], b_out[idx] = w, b
    return w_out, b_out, n_iter


def _bfgs_update(H: torch.Tensor, yv: torch.Tensor, sv: torch.Tensor) -> None:
    """In place: H += y y^T / (y.s) - (H s)(H s)^T / (s.H s) per group, skipped where a curvature
    product is not positive (a group that did not move). The objective is strictly convex (lam > 0), so
    y.s > 0 for any real step and the update keeps H positive definite."""
    Hs = torch.bmm(H, sv.unsqueeze(-1)).squeeze(-1)
    ys, sHs = (yv * sv).sum(1), (sv * Hs).sum(1)
    ok = (ys > 0) & (sHs > 0)
    if not bool(ok.any()):
        return
    ys, sHs = torch.where(ok, ys, 1.0), torch.where(ok, sHs, 1.0)
    upd = yv.unsqueeze(-1) * (yv / ys[:, None]).unsqueeze(1) - Hs.unsqueeze(-1) * (Hs / sHs[:, None]).unsqueeze(1)
    H.add_(upd * ok[:, None, None])


def _compact(T: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """T[keep] for increasing `keep`, moved down within T's own memory: no new allocation (whose page
    faults cost more than the copy) and only the groups that move are copied."""
    for i, j in enumerate(keep.tolist()):
        if i != j:
            T[i].copy_(T[j])
    return T[: len(keep)]
