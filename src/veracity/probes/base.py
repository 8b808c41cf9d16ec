"""Shared machinery for batched probes.

Every probe follows the scikit-learn contract (hyperparameters in `__init__`, `fit(X, y) -> self`,
learned state in trailing-underscore attributes) but is trained in torch on the device of `X`, and
is *batched*: `X` of shape [N, D] fits one probe, `X` of shape [N, G, D] fits G independent probes
at once (every layer, or every (layer, head) flattened). Batching is what makes a probe per head of
a 7B model a single call instead of thousands of scikit-learn fits.

Learned attributes keep the group axis when the probe was fitted on [N, G, D] (e.g. `coef_` is
[G, D]) and drop it for [N, D] (`coef_` is [D]); prediction takes X in the same layout as `fit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_tensor(X: Any, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Tensor from a tensor, numpy array or list; fp16/bf16 activations are upcast to float32 for fitting."""
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    if dtype is None:
        dtype = torch.float64 if X.dtype == torch.float64 else torch.float32
    return X.to(device=device if device is not None else X.device, dtype=dtype)


def as_batched(X: Any, device: torch.device | str | None = None) -> tuple[torch.Tensor, bool]:
    """([N, G, D] float tensor, single) where `single` says X was [N, D]."""
    X = as_tensor(X, device=device)
    if X.dim() == 2:
        return X.unsqueeze(1), True
    if X.dim() != 3:
        raise ValueError(f"expected X of shape [N, D] or [N, G, D], got {tuple(X.shape)}")
    return X, False


def as_labels(y: Any, n: int, device: torch.device) -> torch.Tensor:
    """Binary labels as a float tensor [N] on `device`; anything outside {0, 1} is an error."""
    y = torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)).to(device).flatten()
    if y.numel() != n:
        raise ValueError(f"{y.numel()} labels for {n} rows")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0 or 1")
    if y.min() == y.max():
        raise ValueError("both classes must be present in the training labels")
    return y.float()


def standardize_stats(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group, per-feature mean and std (ddof=0, as StandardScaler; zero std -> 1). X: [N, G, D]."""
    mean = X.mean(0)
    scale = X.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return mean, scale


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded torch generator on `device`, so a probe's random draws depend on its seed only."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


class BatchedProbe:
    """Base class: `decision_function` (logit) is what subclasses provide; the rest is shared."""

    _single: bool = False

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters and their values, as scikit-learn's `get_params` (for cloning and records)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> "BatchedProbe":
        """scikit-learn's contract: set constructor parameters by name, refuse unknown ones."""
        valid = self.get_params()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; valid: {', '.join(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "direction_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        """Drop the group axis (axis 0 of learned state) when fitted on [N, D]."""
        return t.squeeze(0) if self._single else t

    def _in(self, X: Any) -> torch.Tensor:
        """X in the fit layout -> [N, G, D] on the probe's device."""
        self._check_fitted()
        Xb, single = as_batched(X, device=self._device)
        if single != self._single:
            raise ValueError("predict with X in the layout used for fit ([N, D] vs [N, G, D])")
        return Xb

    def decision_function(self, X: Any) -> torch.Tensor:  # pragma: no cover - abstract
        """The logit per row ([N], or [N, G] for a grouped fit): what every subclass computes; probabilities and
        labels follow from it."""
        raise NotImplementedError

    def predict_proba(self, X: Any) -> torch.Tensor:
        """P(label = 1): [N] for a single probe, [N, G] for batched probes."""
        return torch.sigmoid(self.decision_function(X))

    def predict(self, X: Any) -> torch.Tensor:
        """0/1 labels per row: 1 where the logit is positive."""
        return (self.decision_function(X) > 0).long()

    def score(self, X: Any, y: Any) -> float | torch.Tensor:
        """Accuracy: a float for a single probe, a CPU tensor [G] for batched probes."""
        pred = self.predict(X)
        y = torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)).to(pred.device).long()
        acc = (pred == (y if pred.dim() == 1 else y[:, None])).double().mean(0).cpu()
        return float(acc) if self._single else acc



class PairedProbe(BatchedProbe):
    """Base class of probes on contrast pairs (CCS): `fit(X_pos, X_neg, y=None)`, then `predict_proba`,
    `predict` and `score` take both sides, `(X_pos, X_neg[, y])`, in the fit layout ([N, D] or [N, G, D]).
    Parameters, `repr`, `get_params` / `set_params` and the fitted check are `BatchedProbe`'s; subclasses
    provide `_pair_proba(X_pos, X_neg) -> [N, G]`, P(the "Yes" side is true)."""

    def _pair_proba(self, X_pos: Any, X_neg: Any) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """The logit of `predict_proba` (clamped away from 0 and 1)."""
        p = self.predict_proba(X_pos, X_neg).double().clamp(1e-12, 1 - 1e-12)
        return torch.log(p) - torch.log1p(-p)

    def predict_proba(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        self._check_fitted()
        p = self._pair_proba(X_pos, X_neg)
        return p.squeeze(1) if self._single else p

    def predict(self, X_pos: Any, X_neg: Any) -> torch.Tensor:
        """0/1 labels per pair: 1 where the "Yes" side is judged true with probability above one half."""
        return (self.predict_proba(X_pos, X_neg) > 0.5).long()

    def score(self, X_pos: Any, X_neg: Any, y: Any) -> float | torch.Tensor:
        """Accuracy: a float for a single probe, a CPU tensor [G] for batched probes."""
        p = self.predict_proba(X_pos, X_neg)
        acc = accuracy_per_group((p if p.dim() == 2 else p[:, None]) > 0.5,
                                 torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)).flatten())
        return float(acc) if self._single else acc


class ScaledLinearProbe(BatchedProbe):
    """A probe whose logit is (X @ coef_ + intercept_) / temperature_: the fitted direction is not a
    likelihood model, so the projection is scaled by its training std to give usable probabilities."""

    def decision_function(self, X: Any) -> torch.Tensor:
        Xb = self._in(X)
        G = Xb.shape[1]
        z = torch.einsum("ngd,gd->ng", Xb, self.coef_.reshape(G, -1).to(Xb.dtype)) + self.intercept_.reshape(G).to(Xb.dtype)
        z = z / self.temperature_.reshape(G).to(Xb.dtype)
        return z.squeeze(1) if self._single else z

def accuracy_per_group(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """pred [N, G] (0/1), y [N] -> accuracy [G] on CPU."""
    return (pred.long() == y.long().to(pred.device)[:, None]).double().mean(0).cpu()
