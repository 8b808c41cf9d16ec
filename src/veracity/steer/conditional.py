"""Conditional steering (CAST-style, Lee et al. 2024): another residual-stream steer applied only where a
condition probe fires.

The condition is a linear veracity probe (`veracity.probes.make_probe`: logistic by default, or mass-mean)
fitted on the same training rows as the steer (the resid activations at the last token, label 1 = a true
answer) at the steer's first layer c. In a forward call, at every position (or only the last real token with
positions "last"), the probe reads layer c's *unsteered* output h_c and fires where P(false | h_c) > threshold;
the inner steer (caa, lat or ace) then changes the output of each of its layers at exactly those positions and
nowhere else. Each forward call decides for its own positions, so in generation every new token is checked.

Fire rates (the share of rows where the probe fires) are recorded in the provenance: on the training rows and on
the held-out questions' rows, split into target rows (false answers: where steering should happen) and control
rows (true answers: where it should not). Not bakeable (`veracity.steer.layerwise`)."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from .ace import AceSteer
from .angular import AngularSteer
from .apply import last_token_mask
from .layerwise import LayerwiseSteer, training_rows
from .residual.vectors import ResidualSteer

PROBES = ("logistic", "mass-mean")
#: the families a conditional steer fits as its inner steer: those whose strength is the residual alpha (angular
#: steering's angle is its own parameter, so a conditional angular steer is read back (INNER) but not fitted)
INNER_FITS = ("caa", "lat", "ace")
INNER = {"caa": ResidualSteer, "lat": ResidualSteer, "ace": AceSteer, "angular": AngularSteer,
         "angular-adaptive": AngularSteer}


@dataclass
class ConditionalSteer(LayerwiseSteer):
    """inner: the steer applied where the probe fires (its layers are this steer's); probe_w [D], probe_b: the
    probe's true-vs-false logit h.w + b at the inner steer's first layer; threshold: fire where
    P(false) = sigmoid(-(h.w + b)) > threshold; alpha: the inner steer's strength (kept equal to it)."""

    inner: object
    probe_w: torch.Tensor
    probe_b: float
    threshold: float = 0.5
    alpha: float | None = None
    method: str = "conditional"
    provenance: dict = field(default_factory=dict)

    SHAPES = {"probe_w": ("D",)}
    METHODS = ("conditional",)

    def __post_init__(self) -> None:
        if not isinstance(self.inner, (ResidualSteer, AceSteer, AngularSteer)):
            raise ValueError(f"a conditional steer wraps a residual-stream steer, got {type(self.inner).__name__}")
        if not 0 < float(self.threshold) < 1:
            raise ValueError(f"threshold must be a probability in (0, 1), got {self.threshold}")
        self.threshold = float(self.threshold)
        if self.alpha is None:
            self.alpha = self.inner.alpha
        self.alpha = float(self.alpha)
        if self.inner.alpha != self.alpha:
            self.inner = self.inner.with_alpha(self.alpha)
        self.probe_w = torch.as_tensor(self.probe_w).detach().to("cpu", torch.float32).reshape(-1)
        self.probe_b = float(self.probe_b)
        if self.probe_w.numel() != self.hidden_size:
            raise ValueError(f"probe has width {self.probe_w.numel()}, the steer {self.hidden_size}")

    @property
    def layers(self) -> list[int]:
        """The inner steer's layers; the probe reads the first (lowest) of them."""
        return list(self.inner.layers)

    @property
    def hidden_size(self) -> int:
        """The model width the steer was fitted for."""
        return int(self.inner.hidden_size)

    def fires(self, h: torch.Tensor) -> torch.Tensor:
        """[...] bool: where the probe on h [..., D] (layer `min(layers)`'s unsteered output) says P(false) >
        threshold."""
        z = h.float() @ self.probe_w.to(h.device) + self.probe_b
        return torch.sigmoid(-z) > self.threshold

    def transform(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """The inner steer's map at layer `layers[i]`, everywhere (the hooks restrict it to where the probe fires)."""
        if isinstance(self.inner, ResidualSteer):
            return h + self.alpha * self.inner.vectors[i].to(h.device, h.dtype)
        return self.inner.transform(i, h)

    @contextlib.contextmanager
    def hooks(self, model, arch, positions: str) -> Iterator[None]:
        """The probe reads the first steered layer's output before it is changed; every steered layer then applies
        the inner map where it fired (and, with positions "last", only at the last real token)."""
        state: dict = {"mask": None, "fire": None}
        first = min(self.layers)

        def make_hook(i: int, layer: int):
            def hook(module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                if layer == first:
                    fire = self.fires(h)
                    if positions == "last" and h.dim() == 3 and h.shape[-2] > 1:
                        fire = fire & last_token_mask(h, state["mask"])
                    state["fire"] = fire
                new = torch.where(state["fire"][..., None], self.transform(i, h.float()).to(h.dtype), h)
                return (new, *output[1:]) if isinstance(output, tuple) else new
            return hook

        def record_mask(module, args, kwargs):
            state["mask"] = kwargs.get("attention_mask")

        handles = [model.register_forward_pre_hook(record_mask, with_kwargs=True)]
        try:
            for i, l in enumerate(self.layers):
                handles.append(arch.layer(model, l).register_forward_hook(make_hook(i, l)))
            yield
        finally:
            for h in handles:
                h.remove()

    def with_alpha(self, alpha: float) -> "ConditionalSteer":
        """A copy whose inner steer has strength `alpha`."""
        return dataclasses.replace(self, alpha=float(alpha), provenance=dict(self.provenance))

    def check_finite(self) -> None:
        """The inner steer's checks and a finite probe."""
        from ..validation import BadInput

        self.inner.check_finite()
        if not bool(torch.isfinite(self.probe_w).all()) or not np.isfinite(self.probe_b):
            raise BadInput("the condition probe holds NaN or inf")

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors `save` writes (safetensors), by name."""
        inner = ({"vectors": self.inner.vectors} if isinstance(self.inner, ResidualSteer) else self.inner.tensors())
        return {"probe_w": self.probe_w, **{f"inner.{k}": v for k, v in inner.items()}}

    def meta(self) -> dict:
        return {"probe_b": self.probe_b, "threshold": self.threshold,
                "inner": {"method": self.inner.method, "provenance": self.inner.provenance}}

    @classmethod
    def from_files(cls, meta: dict, tensors: dict) -> "ConditionalSteer":
        """The steer from its saved JSON metadata and tensors (what `load` reads through the safe reader)."""
        im = meta["inner"]["method"]
        if im not in INNER:
            raise ValueError(f"inner steer {im!r} is not one of {', '.join(INNER)}")
        t = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("inner.")}
        prov = meta["inner"].get("provenance") or {}
        if INNER[im] is ResidualSteer:
            inner = ResidualSteer(meta["layers"], t["vectors"], meta["alpha"], im, prov)
        else:
            inner = INNER[im].from_files({"layers": meta["layers"], "alpha": meta["alpha"], "method": im,
                                          "provenance": prov}, t)
        return cls(inner, tensors["probe_w"], meta["probe_b"], meta["threshold"], meta["alpha"], meta["method"],
                   meta.get("provenance") or {})


def linear_probe(X: torch.Tensor, y: torch.Tensor, method: str = "logistic", seed: int = 0) -> tuple[torch.Tensor, float]:
    """(w [D], b): a registered linear probe fitted on X [n, D] with labels y (1 = true), as the logit h.w + b of
    its own `decision_function` (a mass-mean probe's temperature folded in)."""
    from ..probes import make_probe

    if method not in PROBES:
        raise ValueError(f"condition probe must be one of {', '.join(PROBES)}, got {method!r}")
    X = torch.as_tensor(X).float()
    p = make_probe(method, seed=seed).fit(X, torch.as_tensor(y).long())
    w = torch.as_tensor(p.coef_).double().reshape(-1)
    b = float(torch.as_tensor(p.intercept_).double().reshape(-1)[0])
    T = float(torch.as_tensor(getattr(p, "temperature_", 1.0)).reshape(-1)[0])
    w, b = w / T, b / T
    ref = torch.as_tensor(p.decision_function(X)).double().reshape(-1)
    if not torch.allclose(X.double() @ w + b, ref, atol=1e-3, rtol=1e-3):  # pragma: no cover - a non-linear probe
        raise ValueError(f"probe {method!r} is not linear in the activations")
    return w.float(), b


def fire_rates(fires: torch.Tensor, y: torch.Tensor) -> dict:
    """{"target": share of false rows where it fires, "control": share of true rows, "n_target", "n_control"}."""
    y = torch.as_tensor(y).bool()
    rate = (lambda m: float(fires[m].double().mean()) if bool(m.any()) else None)
    return {"target": rate(~y), "control": rate(y), "n_target": int((~y).sum()), "n_control": int(y.sum())}


def held_out_fire_metrics(steer) -> dict:
    """A conditional steer's fire rates on its fold's held-out rows (recorded by `fit_conditional`) as the
    registered metrics `fire_rate_target` / `fire_rate_control`; {} for a steer without them."""
    got = ((getattr(steer, "provenance", None) or {}).get("fire_rate") or {}).get("held_out") or {}
    return {f"fire_rate_{k}": float(got[k]) for k in ("target", "control") if got.get(k) is not None}


def fit_conditional(inner, X: torch.Tensor, y: torch.Tensor, probe: str = "logistic", threshold: float = 0.5,
                    seed: int = 0, held_out: tuple | None = None, provenance: dict | None = None) -> ConditionalSteer:
    """Wrap `inner` with a probe fitted on the training rows X [n, D] (its first layer) and labels y; fire rates on
    those rows and, when given, on `held_out` = (X_test, y_test) (measured, never fitted on)."""
    w, b = linear_probe(X, y, probe, seed)
    steer = ConditionalSteer(inner, w, b, threshold, provenance={"probe": probe, **(provenance or {})})
    rates = {"train": fire_rates(steer.fires(torch.as_tensor(X).float()), y)}
    if held_out is not None and len(held_out[1]):
        rates["held_out"] = fire_rates(steer.fires(torch.as_tensor(held_out[0]).float()), held_out[1])
    steer.provenance["fire_rate"] = rates
    return steer


def fit_conditional_for_fold(lm, inner, train_questions: Sequence[int], test_questions: Sequence[int] = (),
                             probe: str = "logistic", threshold: float = 0.5, seed: int = 0, data_dir=None,
                             limit: int | None = None, acts: str | Path | None = None, fold: int = 0,
                             revision: str = "2021") -> ConditionalSteer:
    """`fit_conditional` on this model's cached resid rows (caa's rows) at `inner`'s first layer: the probe on the
    training questions' rows, fire rates also on the held-out questions' rows."""
    from .residual_tqa import default_dataset, load_residual_data

    data = load_residual_data(lm, data_dir=data_dir, limit=limit, acts=acts, dataset=default_dataset(revision))
    layer = min(inner.layers)
    X, y, _, prov = training_rows(data, train_questions, [layer], seed, fold)
    rows = np.flatnonzero(np.isin(data.question, np.asarray(list(test_questions))))
    held = (data.X[torch.as_tensor(rows)][:, layer].float(), data.labels[torch.as_tensor(rows)].bool())
    prov = {k: v for k, v in prov.items() if k not in ("n_true", "n_false")} | {"probe_layer": layer}
    for key in ("steerability", "layer_select"):  # the inner fit's predictors and layer choice, where it has them
        if key in inner.provenance:
            prov[key] = inner.provenance[key]
    return fit_conditional(inner, X[:, 0], y, probe, threshold, seed, held, prov)
