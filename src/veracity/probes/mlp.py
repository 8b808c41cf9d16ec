"""MLP probe (SAPLMA-style), batched over groups: G independent networks trained as one.

Named sizes (hidden widths, ReLU between, one sigmoid output):
- `tiny`:   (32,)            - a single small hidden layer;
- `small`:  (128, 64);
- `medium`: (256, 128, 64)   - SAPLMA's probe (Azaria & Mitchell 2023: Adam, 5 epochs, batch 32).
A tuple of widths is accepted too. Every group's network has its own weights; stacking them as
[G, d_in, d_out] tensors makes one Adam step train all G (Adam is elementwise, so this is exactly G
independent optimisations).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .base import BatchedProbe, as_batched, as_labels, generator

MLP_SIZES: dict[str, tuple[int, ...]] = {"tiny": (32,), "small": (128, 64), "medium": (256, 128, 64)}


def stratified_holdout(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) with `fraction` of each class held out, seeded."""
    g = generator(seed)
    tr, va = [], []
    for c in (0, 1):
        idx = torch.nonzero(y.cpu() == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(fraction * len(idx)))
        va.append(idx[:k])
        tr.append(idx[k:])
    return torch.cat(tr).sort().values, torch.cat(va).sort().values


class MLPProbe(BatchedProbe):
    """Parameters: `size` (name in `MLP_SIZES` or widths), `epochs` (maximum), `batch_size`, `lr` (Adam),
    `validation_fraction` of the training rows held out (stratified) for early stopping: each group
    keeps the weights of its epoch with the lowest validation loss and stops after `patience` epochs
    without improvement (0 disables the hold-out); `standardize` inputs with training mean/std.

    Learned: `coefs_`, `intercepts_` (per layer, group axis first), `mean_`, `scale_`, `best_epoch_`,
    `direction_` (unit mean input gradient of the logit over the training rows, in raw input space)."""

    def __init__(self, size: str | Sequence[int] = "medium", epochs: int = 5, batch_size: int = 32,
                 lr: float = 1e-3, validation_fraction: float = 0.1, patience: int = 2,
                 standardize: bool = True, seed: int = 0):
        self.size = size
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.standardize = standardize
        self.seed = seed

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden layer widths of `size` (a named size from `MLP_SIZES`, or the widths given)."""
        return MLP_SIZES[self.size] if isinstance(self.size, str) else tuple(self.size)

    def _forward(self, Z: torch.Tensor, Ws: list[torch.Tensor], bs: list[torch.Tensor]) -> torch.Tensor:
        """Z [G, B, D] -> logits [G, B]."""
        h = Z
        for i, (W, b) in enumerate(zip(Ws, bs)):
            h = torch.baddbmm(b, h, W)
            if i < len(Ws) - 1:
                h = F.relu(h)
        return h.squeeze(-1)

    def fit(self, X: Any, y: Any) -> "MLPProbe":
        """Train one MLP per group in one batched loop, each keeping the weights of its best validation epoch (early
        stopping)."""
        if isinstance(self.size, str) and self.size not in MLP_SIZES:
            raise ValueError(f"unknown MLP size {self.size!r}; choose from {sorted(MLP_SIZES)}")
        Xb, self._single = as_batched(X)
        N, G, D = Xb.shape
        dt, dev = Xb.dtype, Xb.device
        self._device = dev
        yt = as_labels(y, N, dev)
        if self.validation_fraction > 0:
            tr, va = stratified_holdout(yt, self.validation_fraction, self.seed)
            tr, va = tr.to(dev), va.to(dev)
        else:
            tr, va = torch.arange(N, device=dev), None
        Xtr = Xb[tr].transpose(0, 1).contiguous()  # [G, Ntr, D]
        if self.standardize:
            var, mean = torch.var_mean(Xtr, dim=1, unbiased=False)
            scale = var.sqrt()
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        else:
            mean, scale = torch.zeros(G, D, dtype=dt, device=dev), torch.ones(G, D, dtype=dt, device=dev)
        Xtr = (Xtr - mean[:, None]) / scale[:, None]
        ytr = yt[tr]
        Xva = ((Xb[va].transpose(0, 1) - mean[:, None]) / scale[:, None]) if va is not None else None
        yva = yt[va] if va is not None else None

        gen = generator(self.seed)
        dims = (D, *self.widths, 1)
        Ws, bs = [], []
        for din, dout in zip(dims[:-1], dims[1:]):
            bound = 1.0 / din ** 0.5  # nn.Linear's default init
            Ws.append(((torch.rand(G, din, dout, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_())
            bs.append(((torch.rand(G, 1, dout, generator=gen, dtype=torch.float64) * 2 - 1) * bound).to(dev, dt).requires_grad_())
        params = Ws + bs
        opt = torch.optim.Adam(params, lr=self.lr)
        best = [p.detach().clone() for p in params]
        best_loss = torch.full((G,), float("inf"), dtype=dt, device=dev)
        best_epoch = torch.zeros(G, dtype=torch.long)
        stale = torch.zeros(G, dtype=torch.long)
        ntr = Xtr.shape[1]
        for epoch in range(self.epochs):
            perm = torch.randperm(ntr, generator=gen).to(dev)
            for start in range(0, ntr, self.batch_size):  # every minibatch, the last partial one included
                idx = perm[start:start + self.batch_size]
                logits = self._forward(Xtr[:, idx], Ws, bs)
                loss = F.binary_cross_entropy_with_logits(logits, ytr[idx].expand_as(logits), reduction="none").mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if Xva is None:
                continue
            with torch.no_grad():
                lv = F.binary_cross_entropy_with_logits(self._forward(Xva, Ws, bs), yva.expand(G, -1), reduction="none").mean(1)
                better = lv < best_loss - 1e-6
                for b_, p in zip(best, params):
                    b_.copy_(torch.where(better.view(-1, *[1] * (p.dim() - 1)), p.detach(), b_))
                best_loss = torch.where(better, lv, best_loss)
                best_epoch[better.cpu()] = epoch + 1
                stale = torch.where(better.cpu(), torch.zeros_like(stale), stale + 1)
            if bool((stale > self.patience).all()):
                break
        final = best if Xva is not None else [p.detach() for p in params]
        Ws_f, bs_f = final[:len(Ws)], final[len(Ws):]
        self.coefs_ = [self._out(W) for W in Ws_f]
        self.intercepts_ = [self._out(b) for b in bs_f]
        self._Ws, self._bs = Ws_f, bs_f
        self.mean_, self.scale_ = self._out(mean), self._out(scale)
        self.best_epoch_ = self._out(best_epoch if Xva is not None else torch.full((G,), self.epochs))
        self.best_val_loss_ = self._out(best_loss) if Xva is not None else None
        # direction: mean input gradient of the logit over the training rows, mapped back to raw X
        Zg = Xtr.clone().requires_grad_()
        self._forward(Zg, Ws_f, bs_f).sum().backward()
        grad = Zg.grad.mean(1) / scale
        self.direction_ = self._out(F.normalize(grad, dim=-1))
        self._mean_b, self._scale_b = mean, scale
        return self

    @torch.no_grad()
    def decision_function(self, X: Any) -> torch.Tensor:
        """The MLP's output logit per row (and group), on standardised inputs."""
        Xb = self._in(X)
        Z = (Xb.transpose(0, 1) - self._mean_b[:, None].to(Xb.dtype)) / self._scale_b[:, None].to(Xb.dtype)
        z = self._forward(Z, [W.to(Xb.dtype) for W in self._Ws], [b.to(Xb.dtype) for b in self._bs]).transpose(0, 1)
        return z.squeeze(1) if self._single else z
