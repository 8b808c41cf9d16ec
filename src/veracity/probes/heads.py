"""One logistic probe per attention head, fitted in one batched call: the head ranking ITI uses."""

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from .base import accuracy_per_group
from .logistic import LogisticProbe
from .splits import stratified_split


class HeadProbes(NamedTuple):
    """`accuracy` [L, H] validation accuracy of a logistic probe per (layer, head); `probe` the fitted
    batched `LogisticProbe` over G = L * H groups (row-major: layer, then head)."""

    accuracy: torch.Tensor
    probe: LogisticProbe
    layers: list[int]

    @property
    def directions(self) -> torch.Tensor:
        """Unit probe weights in raw head space, [L, H, head_dim]."""
        L, H = self.accuracy.shape
        return self.probe.direction_.reshape(L, H, -1)

    @property
    def coef(self) -> torch.Tensor:
        """Probe weights per (layer, head), [L, H, head_dim], not normalised (`directions` are the unit ones)."""
        L, H = self.accuracy.shape
        return self.probe.coef_.reshape(L, H, -1)


def head_accuracy_matrix(acts_or_tensor: Any, labels: Sequence[int] | torch.Tensor | None = None,
                         train_idx: Sequence[int] | None = None, val_idx: Sequence[int] | None = None,
                         layers: Sequence[int] | None = None, C: float = 1.0, standardize: bool = True,
                         device: str | None = None, seed: int = 0, val_size: float = 0.2) -> HeadProbes:
    """Fit one logistic probe per (layer, head) in one batched call and score it on the validation rows.

    acts_or_tensor: an `Activations` store with heads.* sites, or a tensor [N, L, H, head_dim].
    labels default to the store's labels; train/val default to a stratified `val_size` split by `seed`
    (ITI should pass its own question-level split)."""
    if isinstance(acts_or_tensor, torch.Tensor):
        T = acts_or_tensor
        layer_ids = list(range(T.shape[1])) if layers is None else list(layers)
        if layers is not None:
            T = T[:, layer_ids]
    else:
        acts = acts_or_tensor
        n_layers = acts.n_layers
        layer_ids = acts.layers("heads") if layers is None else [l + n_layers if l < 0 else l for l in layers]
        T = acts.stack("heads", layer_ids)
        if labels is None:
            labels = acts.labels
    if labels is None:
        raise ValueError("labels are required (the store has none)")
    N, L, H, hd = T.shape
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).long()
    if train_idx is None or val_idx is None:
        sp = stratified_split(y.tolist(), val_size, seed)
        train_idx, val_idx = sp.train_idx, sp.test_idx
    tr = torch.as_tensor(np.asarray(train_idx)).long()
    va = torch.as_tensor(np.asarray(val_idx)).long()
    dev = device or T.device
    Xtr = T[tr].reshape(len(tr), L * H, hd).to(dev, torch.float32)
    probe = LogisticProbe(C=C, standardize=standardize).fit(Xtr, y[tr])
    del Xtr
    Xva = T[va].reshape(len(va), L * H, hd).to(dev, torch.float32)
    acc = accuracy_per_group(probe.predict(Xva), y[va]).reshape(L, H)
    return HeadProbes(acc, probe, layer_ids)
