"""Probe experiments: every method x every layer x every split x every seed, from one [N, G, D] tensor.

All layers (or (layer, head) pairs) of one method train in a single batched fit per split and seed.
Deterministic methods (logistic, mass-mean) are fitted once per distinct training set and reused
across seeds, since refitting would reproduce the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..probes.base import accuracy_per_group
from ..probes.ccs import CCSProbe
from ..probes.geometry import GeometryResult, compare_directions
from ..probes.logistic import LogisticProbe
from ..probes.random import RandomProbe
from ..probes.splits import aggregate, make_splits, stratified_split
from ..probes.registry import is_deterministic, make_probe, needs_polarity

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
    elif any(needs_polarity(m) for m in methods):
        raise ValueError(f"{', '.join(m for m in methods if needs_polarity(m))} needs the polarity of every "
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
                if is_deterministic(m) and key in cache:
                    acc, d = cache[key]
                else:
                    probe = make_probe(m, seed=seed, C=C, **(mlp_kwargs or {}) if m.startswith("mlp-") else {})
                    if needs_polarity(m):
                        probe.fit(Xtr, y[tr], polarity=pol[sp.train_idx],
                                  topics=None if groups is None else np.asarray(groups)[sp.train_idx])
                    else:
                        probe.fit(Xtr, y[tr])
                    acc = accuracy_per_group(probe.predict(Xte), y[te].to(X.device))
                    d = probe.direction_.detach().cpu() if hasattr(probe, "direction_") else None
                    if is_deterministic(m):
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
    from ..probes.zero_shot import zero_shot_accuracy

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
