"""Probe experiments: every method x every layer x every split x every seed, from one [N, G, D] tensor.

All layers (or (layer, head) pairs) of one method train in a single batched fit per split and seed.
Deterministic methods (logistic, mass-mean) are fitted once per distinct training set and reused
across seeds, since refitting would reproduce the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

from .base import accuracy_per_group
from .ccs import CCSProbe
from .geometry import GeometryResult, compare_directions
from .logistic import LogisticProbe
from .mass_mean import MassMeanProbe
from .mlp import MLPProbe
from .random import RandomProbe
from .splits import Split, aggregate, make_splits, stratified_split
from .ttpd import TTPDProbe

METHODS = ("logistic", "mlp-tiny", "mlp-small", "mlp-medium", "mass-mean", "mass-mean-cov", "random", "ttpd")
DETERMINISTIC = ("logistic", "mass-mean", "mass-mean-cov", "ttpd")
POLARITY_METHODS = ("ttpd",)  # fit(X, y, polarity=..., topics=...): need every row's polarity (+1 / -1)


def make_probe(method: str, seed: int = 0, C: float = 1.0, **mlp_kwargs: Any):
    """A fresh estimator for a method name (see METHODS)."""
    if method == "logistic":
        return LogisticProbe(C=C)
    if method.startswith("mlp-"):
        return MLPProbe(size=method[4:], seed=seed, **mlp_kwargs)
    if method == "mass-mean":
        return MassMeanProbe()
    if method == "mass-mean-cov":
        return MassMeanProbe(covariance=True)
    if method == "random":
        return RandomProbe(seed=seed)
    if method == "ttpd":
        return TTPDProbe(C=C)
    raise ValueError(f"unknown probe method {method!r}; choose from {', '.join(METHODS)}")


# ---------------------------------------------------------------- inputs from a capture store

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


# ---------------------------------------------------------------- records

@dataclass
class ProbeScore:
    """Accuracy of one method at one layer on one split and seed."""

    method: str
    layer: int | str
    split: str
    seed: int
    accuracy: float
    n_train: int
    n_test: int


@dataclass
class ProbeCell:
    """One (method, layer): the split-averaged accuracy of each seed, aggregated over seeds."""

    method: str
    layer: int | str
    mean: float
    std: float
    max: float
    min: float
    per_seed: list[float]


@dataclass
class ProbeExperiment:
    split: str
    methods: list[str]
    layers: list[int | str]
    seeds: list[int]
    scores: list[ProbeScore]
    cells: list[ProbeCell]
    geometry: dict[str, dict[str, GeometryResult]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def table(self, stat: str = "mean") -> list[list]:
        """Rows = methods, columns = layers, value = `stat` (mean, max, std, min) over seeds."""
        by = {(c.method, c.layer): getattr(c, stat) for c in self.cells}
        return [[m] + [by[(m, l)] for l in self.layers] for m in self.methods]


def run_probe_experiment(X: torch.Tensor, labels: Sequence[int], groups: Sequence[str] | None = None,
                         layers: Sequence[int | str] | None = None, methods: Sequence[str] = ("logistic",),
                         split: str = "leave-one-topic-out", seeds: int | Sequence[int] = 5, test_size: float = 0.2,
                         k: int = 5, n_train: int | None = None, C: float = 1.0, device: str | None = None,
                         mlp_kwargs: dict | None = None,
                         progress: Callable[[str], None] | None = None,
                         polarity: Sequence[int] | None = None) -> ProbeExperiment:
    """Train and test every method on X [N, G, D] (G = layers) over the splits of `split` for each seed.

    Per seed the accuracy is averaged over that seed's splits (e.g. the six held-out topics); cells keep
    mean, std, max and min over seeds. Geometry compares each (method, layer)'s directions across the
    splits of the first seed (or across seeds when a seed has a single split)."""
    t0 = time.time()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    X = torch.as_tensor(X)
    X = X.to(device or X.device, torch.float32)
    if X.dim() == 2:
        X = X.unsqueeze(1)
    N, G, D = X.shape
    y = torch.as_tensor(np.asarray(labels)).long()
    layer_names = list(layers) if layers is not None else list(range(G))
    if len(layer_names) != G:
        raise ValueError(f"{len(layer_names)} layer names for {G} groups")
    for m in methods:
        make_probe(m)  # validate names before any work
    pol = None
    if polarity is not None:
        pol = np.asarray(polarity)
        if len(pol) != N:
            raise ValueError(f"{len(pol)} polarities for {N} rows")
    elif any(m in POLARITY_METHODS for m in methods):
        raise ValueError(f"{', '.join(m for m in methods if m in POLARITY_METHODS)} needs the polarity of every "
                         "statement (+1 affirmative, -1 negated): pass polarity= (from the command line: "
                         "`veracity probe-polarity`)")
    scores: list[ProbeScore] = []
    dirs: dict[str, list[tuple[str, torch.Tensor]]] = {m: [] for m in methods}
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for seed in seed_list:
        splits = make_splits(split, y.tolist(), groups, seed=seed, test_size=test_size, k=k, n_train=n_train)
        for sp in splits:
            tr = torch.as_tensor(sp.train_idx)
            te = torch.as_tensor(sp.test_idx)
            Xtr, Xte = X[tr], X[te]
            for m in methods:
                key = (m, sp.name, hash(sp.train_idx.tobytes()), hash(sp.test_idx.tobytes()))
                if m in DETERMINISTIC and key in cache:
                    acc, d = cache[key]
                else:
                    probe = make_probe(m, seed=seed, C=C, **(mlp_kwargs or {}) if m.startswith("mlp-") else {})
                    if m in POLARITY_METHODS:
                        probe.fit(Xtr, y[tr], polarity=pol[sp.train_idx],
                                  topics=None if groups is None else np.asarray(groups)[sp.train_idx])
                    else:
                        probe.fit(Xtr, y[tr])
                    acc = accuracy_per_group(probe.predict(Xte), y[te].to(X.device))
                    d = probe.direction_.detach().cpu() if hasattr(probe, "direction_") else None
                    if m in DETERMINISTIC:
                        cache[key] = (acc, d)
                for gi, lname in enumerate(layer_names):
                    scores.append(ProbeScore(m, lname, sp.name, seed, float(acc[gi]), len(tr), len(te)))
                if d is not None and (seed == seed_list[0] or len(splits) == 1):
                    dirs[m].append((sp.name if len(splits) > 1 else f"seed{seed}", d))
                if progress:
                    progress(f"seed {seed} split {sp.name} {m}: " + " ".join(f"{a:.3f}" for a in acc.tolist()))
    cells = []
    for m in methods:
        for lname in layer_names:
            per_seed = []
            for seed in seed_list:
                vals = [s.accuracy for s in scores if s.method == m and s.layer == lname and s.seed == seed]
                per_seed.append(float(np.mean(vals)))
            st = aggregate(per_seed)
            cells.append(ProbeCell(m, lname, st.mean, st.std, st.max, st.min, st.values))
    geometry: dict[str, dict[str, GeometryResult]] = {}
    for m, lst in dirs.items():
        if len(lst) < 2:
            continue
        geometry[m] = {}
        for gi, lname in enumerate(layer_names):
            geometry[m][str(lname)] = compare_directions(torch.stack([d[gi] for _, d in lst]), [n for n, _ in lst])
    return ProbeExperiment(split, list(methods), layer_names, seed_list, scores, cells, geometry, time.time() - t0)


# ---------------------------------------------------------------- per-head probes (used by ITI)

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


# ---------------------------------------------------------------- CCS experiment

@dataclass
class CCSLayerResult:
    layer: int
    ccs_accuracy: float  # sign fixed on the training labels
    ccs_accuracy_either_sign: float  # max(acc, 1 - acc) on the test rows: optimistic, as in the CCS paper
    ccs_loss: float
    logistic_accuracy: float  # supervised ceiling: logistic regression on x+ - x-
    random_accuracy: float  # random direction on x+ - x-, threshold and sign from train


@dataclass
class CCSExperiment:
    layers: list[CCSLayerResult]
    zero_shot: dict[str, float] | None
    n_train: int
    n_test: int
    seed: int
    elapsed_s: float = 0.0


def run_ccs_experiment(X_pos: torch.Tensor, X_neg: torch.Tensor, labels: Sequence[int], layers: Sequence[int],
                       test_size: float = 0.4, seed: int = 0, n_restarts: int = 10, epochs: int = 1000,
                       lr: float = 1e-3, weight_decay: float = 0.01, zero_shot_scores: torch.Tensor | None = None,
                       C: float = 1.0, device: str | None = None) -> CCSExperiment:
    """CCS per layer (all layers as one batched fit) vs logistic and random baselines on the same split.
    X_pos / X_neg: [N, G, D] (G = layers); labels: 1 when the "Yes" side is true."""
    from .zero_shot import zero_shot_accuracy

    t0 = time.time()
    y = torch.as_tensor(np.asarray(labels)).long()
    sp = stratified_split(y.tolist(), test_size, seed)
    tr, te = torch.as_tensor(sp.train_idx), torch.as_tensor(sp.test_idx)
    P = torch.as_tensor(X_pos).to(device or X_pos.device, torch.float32)
    Q = torch.as_tensor(X_neg).to(P.device, torch.float32)
    if P.dim() == 2:
        P, Q = P.unsqueeze(1), Q.unsqueeze(1)
    ccs = CCSProbe(n_restarts=n_restarts, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
    ccs.fit(P[tr], Q[tr], y[tr])
    acc = ccs.score(P[te], Q[te], y[te])
    acc_any = ccs.score_either_sign(P[te], Q[te], y[te])
    diff = P - Q
    lr_acc = LogisticProbe(C=C).fit(diff[tr], y[tr]).score(diff[te], y[te])
    rnd_acc = RandomProbe(seed=seed).fit(diff[tr], y[tr]).score(diff[te], y[te])
    rows = [CCSLayerResult(int(l), float(acc[i]), float(acc_any[i]), float(ccs.loss_[i]), float(lr_acc[i]),
                           float(rnd_acc[i])) for i, l in enumerate(layers)]
    zs = zero_shot_accuracy(zero_shot_scores[te], y[te].tolist()) if zero_shot_scores is not None else None
    return CCSExperiment(rows, zs, len(tr), len(te), seed, time.time() - t0)
