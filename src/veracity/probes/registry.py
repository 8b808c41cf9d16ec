"""The probe registry: every probe method by name (`PROBES`, `register_probe`, `make_probe`), which are
deterministic and which need each row's polarity, and `site_matrix`, the [N, G, D] input of one site kind of a capture store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from .logistic import LogisticProbe
from .mass_mean import MassMeanProbe
from .mlp import MLPProbe
from .random import RandomProbe
from .ttpd import TTPDProbe

@dataclass(frozen=True)
class ProbeSpec:
    """One registered probe method: `factory(seed=, C=, **kwargs)` returns a fresh estimator with the
    scikit-learn contract (fit / predict_proba / decision_function / score / get_params / set_params and, for
    linear probes, `direction_`). deterministic: refitting on the same rows gives the same probe (experiments
    fit it once per training set, not once per seed). needs_polarity: fit(X, y, polarity=...) (TTPD)."""

    name: str
    factory: Callable[..., Any]
    deterministic: bool = False
    needs_polarity: bool = False


PROBES: dict[str, ProbeSpec] = {}


def register_probe(name: str, factory: Callable[..., Any], *, deterministic: bool = False,
                   needs_polarity: bool = False, replace: bool = False) -> ProbeSpec:
    """Add a probe method (one line per probe; see docs/extending.md). Refuses to shadow a name unless
    `replace`."""
    if name in PROBES and not replace:
        raise ValueError(f"probe method {name!r} is already registered")
    PROBES[name] = spec = ProbeSpec(name, factory, deterministic, needs_polarity)
    return spec


register_probe("logistic", lambda seed=0, C=1.0, **_: LogisticProbe(C=C), deterministic=True)
for _size in ("tiny", "small", "medium"):
    register_probe(f"mlp-{_size}", lambda seed=0, C=1.0, _s=_size, **kw: MLPProbe(size=_s, seed=seed, **kw))
register_probe("mass-mean", lambda seed=0, C=1.0, **_: MassMeanProbe(), deterministic=True)
register_probe("mass-mean-cov", lambda seed=0, C=1.0, **_: MassMeanProbe(covariance=True), deterministic=True)
register_probe("random", lambda seed=0, C=1.0, **_: RandomProbe(seed=seed))
register_probe("ttpd", lambda seed=0, C=1.0, **_: TTPDProbe(C=C), deterministic=True, needs_polarity=True)

#: The built-in methods (CLI choices); `PROBES` also holds any registered later.
METHODS = tuple(PROBES)
DETERMINISTIC = tuple(n for n, s in PROBES.items() if s.deterministic)
POLARITY_METHODS = tuple(n for n, s in PROBES.items() if s.needs_polarity)


def is_deterministic(method: str) -> bool:
    """Whether probe `method` gives the same fit for every seed (then one seed suffices)."""
    return probe_spec(method).deterministic


def needs_polarity(method: str) -> bool:
    """Whether probe `method` needs each row's polarity (affirmative/negated) to fit, as TTPD does."""
    return probe_spec(method).needs_polarity


def probe_spec(method: str) -> ProbeSpec:
    """The registered spec of probe `method`; an unknown name raises ValueError naming the choices."""
    try:
        return PROBES[method]
    except KeyError:
        raise ValueError(f"unknown probe method {method!r}; choose from {', '.join(PROBES)}") from None


def make_probe(method: str, seed: int = 0, C: float = 1.0, **mlp_kwargs: Any):
    """A fresh estimator for a registered method name (`PROBES`); extra keyword arguments reach the
    factory (the MLP sizes take epochs, lr, ...)."""
    return probe_spec(method).factory(seed=seed, C=C, **mlp_kwargs)


def site_matrix(acts, site: str = "resid", layers: Sequence[int] | None = None) -> tuple[torch.Tensor, list[int]]:
    """([N, G, D] activations, absolute layer indices) for one site kind of an `Activations` store.
    `heads` sites are flattened to G = layers * heads, D = head_dim."""
    n_layers = acts.n_layers
    avail = acts.layers(site)
    if not avail:
        raise KeyError(f"no {site} sites in this store (it has {', '.join(acts.sites[:6])}...)")
    absl = avail if layers is None else [l + n_layers if l < 0 else l for l in layers]
    missing = [l for l in absl if l not in avail]
    if missing:
        raise KeyError(f"layers {missing} of {site} were not captured (captured: {avail})")
    X = acts.stack(site, absl)
    if site == "heads":
        X = X.flatten(1, 2)
    return X, absl
