"""Fitting a residual steer (every vector points from false towards true, so alpha > 0 steers towards truth):
class-mean differences (CAA / DiffMean), paired differences, LAT's first principal component, and the same from
a labelled capture store. The scaling conventions (`normalize`): the package docstring. Every fit also records
its layers' steerability predictors (`veracity.steer.steerability.predictors`: the pair differences' cosine
agreement, the classes' separability along the difference-of-means line) in provenance["steerability"],
{str(layer): {...}}, so sweeps and comparisons can read them before any generation."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..steerability import predictors
from .vectors import ResidualSteer

NORMALIZE = ("raw", "sigma", "unit")


def _per_layer(acts: Any, layers: Sequence[int] | None, act_layers: Sequence[int] | None) -> dict[int, torch.Tensor]:
    """{layer: [N, D] float64} from a dict {layer: [N, D]} or a tensor [N, L, D] whose axis 1 holds the
    layers `act_layers` (default 0..L-1, i.e. every decoder layer)."""
    if isinstance(acts, Mapping):
        avail = {int(k): v for k, v in acts.items()}
    else:
        T = acts if isinstance(acts, torch.Tensor) else torch.as_tensor(np.asarray(acts))
        if T.dim() == 2:
            T = T[:, None]
        if T.dim() != 3:
            raise ValueError(f"activations must be a dict of [N, D] or a tensor [N, L, D], got {tuple(T.shape)}")
        ids = list(range(T.shape[1])) if act_layers is None else [int(l) for l in act_layers]
        if len(ids) != T.shape[1]:
            raise ValueError(f"{len(ids)} act_layers for {T.shape[1]} layers on axis 1")
        avail = {l: T[:, i] for i, l in enumerate(ids)}
    chosen = sorted(avail) if layers is None else [int(l) for l in layers]
    missing = [l for l in chosen if l not in avail]
    if missing:
        raise KeyError(f"no activations for layers {missing} (have {sorted(avail)})")
    if not chosen:
        raise ValueError("no layers to fit")
    out = {}
    for l in chosen:
        x = torch.as_tensor(avail[l]).detach().to("cpu", torch.float64)
        if x.dim() != 2:
            raise ValueError(f"layer {l}: expected [N, D] activations, got {tuple(x.shape)}")
        out[l] = x
    return out


def _check_normalize(normalize: str | bool) -> str:
    if normalize is True:
        return "unit"
    if normalize is False:
        return "raw"
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    return normalize


def _scaled(u: torch.Tensor, mean_diff: torch.Tensor, rows: torch.Tensor, normalize: str) -> tuple[torch.Tensor, float]:
    """(vector, scale) for unit direction u: see the module docstring for the three conventions."""
    if normalize == "raw":
        s = float(mean_diff @ u)
    elif normalize == "sigma":
        s = float((rows @ u).std(unbiased=False))
    else:
        s = 1.0
    return u * s, s


def _labels(labels: Any, n: int) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).flatten()
    if y.numel() != n:
        raise ValueError(f"{y.numel()} labels for {n} rows")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels must be 0 (false) or 1 (true)")
    y = y.bool()
    if bool(y.all()) or not bool(y.any()):
        raise ValueError("both classes (true and false rows) are needed to fit a steering vector")
    return y


def _make(method: str, layers: list[int], vecs: list[torch.Tensor], scales: list[float], normalize: str,
          alpha: float, provenance: dict | None, extra: dict) -> ResidualSteer:
    prov = {"method": method, "normalize": normalize, "scales": scales, **extra, **(provenance or {})}
    return ResidualSteer(layers, torch.stack(vecs).float(), alpha=alpha, method=method, provenance=prov)


def fit_diff_means(acts: Any, labels: Any, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
                   act_layers: Sequence[int] | None = None, alpha: float = 1.0,
                   provenance: dict | None = None, groups: Sequence[Any] | None = None,
                   seed: int = 0) -> ResidualSteer:
    """CAA / DiffMean: v_l = mean(true rows) - mean(false rows) of layer l's activations (scaled by `normalize`).

    acts: {layer: [N, D]} or [N, L, D] (axis 1 = `act_layers`, default every layer); labels: [N] 0/1,
    1 = true. layers: which to fit (default: all given). groups: each row's group (a question), which pairs a
    true and a false row of a group (`pair_by_group` with `seed`) for the pair-difference agreement among the
    steerability predictors; None: only the classes' separability is recorded (the vector never uses pairs)."""
    normalize = _check_normalize(normalize)
    per = _per_layer(acts, layers, act_layers)
    n = next(iter(per.values())).shape[0]
    y = _labels(labels, n)
    pairs = None
    if groups is not None:
        try:
            pairs = pair_by_group(y.long(), groups, seed=seed)
        except ValueError:  # no group holds both classes: separability only
            pairs = None
        if pairs is not None and len(pairs[0]) < 2:
            pairs = None
    vecs, scales, steer = [], [], {}
    for l, X in per.items():
        if X.shape[0] != n:
            raise ValueError(f"layer {l} has {X.shape[0]} rows, expected {n}")
        diff = X[y].mean(0) - X[~y].mean(0)
        nrm = diff.norm()
        if float(nrm) == 0:
            raise ValueError(f"layer {l}: the class means are identical; no direction to steer along")
        v, s = _scaled(diff / nrm, diff, X, normalize)
        vecs.append(v)
        scales.append(s)
        steer[str(l)] = ({**predictors(X[pairs[0]], X[pairs[1]]), **predictors(X[y], X[~y], paired=False)}
                         if pairs is not None else predictors(X[y], X[~y], paired=False))
    return _make("caa", list(per), vecs, scales, normalize, alpha, provenance,
                 {"fit": "diff-means", "n_true": int(y.sum()), "n_false": int((~y).sum()), "steerability": steer})


def _pairs(pos: Any, neg: Any, layers, act_layers) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    P = _per_layer(pos, layers, act_layers)
    Q = _per_layer(neg, list(P), act_layers)
    for l in P:
        if P[l].shape != Q[l].shape:
            raise ValueError(f"layer {l}: pos and neg differ in shape: {tuple(P[l].shape)} vs {tuple(Q[l].shape)}")
    if next(iter(P.values())).shape[0] < 2:
        raise ValueError("at least two contrast pairs are needed")
    return P, Q


def fit_contrast_pairs(pos: Any, neg: Any, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
                       act_layers: Sequence[int] | None = None, alpha: float = 1.0,
                       provenance: dict | None = None) -> ResidualSteer:
    """CAA from contrast pairs: v_l = mean_i(pos_i - neg_i); row i of pos and of neg form a pair (pos = true)."""
    normalize = _check_normalize(normalize)
    P, Q = _pairs(pos, neg, layers, act_layers)
    vecs, scales, steer = [], [], {}
    for l in P:
        steer[str(l)] = predictors(P[l], Q[l])
        diff = (P[l] - Q[l]).mean(0)
        nrm = diff.norm()
        if float(nrm) == 0:
            raise ValueError(f"layer {l}: the mean paired difference is zero; no direction to steer along")
        v, s = _scaled(diff / nrm, diff, torch.cat([P[l], Q[l]]), normalize)
        vecs.append(v)
        scales.append(s)
    return _make("caa", list(P), vecs, scales, normalize, alpha, provenance,
                 {"fit": "contrast-pairs", "n_pairs": int(next(iter(P.values())).shape[0]), "steerability": steer})


def lat_signs(n: int, seed: int) -> torch.Tensor:
    """The +-1 order of each of n pairs used by `fit_lat` (a seeded torch generator, so tests can redo it)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1


def lat_differences(pos: torch.Tensor, neg: torch.Tensor, seed: int) -> torch.Tensor:
    """[N, D] float64: s_i (pos_i - neg_i), s_i = +-1 from `lat_signs` (RepE's shuffled pair order)."""
    pos, neg = torch.as_tensor(pos).double(), torch.as_tensor(neg).double()
    return (pos - neg) * lat_signs(pos.shape[0], seed)[:, None]


def fit_lat(pos: Any, neg: Any, seed: int = 0, layers: Sequence[int] | None = None, normalize: str | bool = "raw",
            act_layers: Sequence[int] | None = None, alpha: float = 1.0,
            provenance: dict | None = None) -> ResidualSteer:
    """LAT reading vector: the first principal component of the (randomly ordered, centred) paired
    differences, sign fixed so that pos (true) projects above neg on most training pairs; see the module
    docstring for the convention. Also records `explained_variance_ratio` per layer in provenance."""
    normalize = _check_normalize(normalize)
    P, Q = _pairs(pos, neg, layers, act_layers)
    vecs, scales, evr, agree, steer = [], [], [], [], {}
    for l in P:
        steer[str(l)] = predictors(P[l], Q[l])  # the unshuffled differences: true minus false
        Dm = lat_differences(P[l], Q[l], seed)
        Dc = Dm - Dm.mean(0)
        _, S, Vh = torch.linalg.svd(Dc, full_matrices=False)
        u = Vh[0]
        d = P[l] - Q[l]
        votes = d @ u
        frac = float((votes > 0).double().mean())
        if frac < 0.5 or (frac == 0.5 and float(votes.sum()) < 0):  # most pairs: true above false
            u, votes = -u, -votes
        v, s = _scaled(u, d.mean(0), torch.cat([P[l], Q[l]]), normalize)
        vecs.append(v)
        scales.append(s)
        evr.append(float(S[0] ** 2 / (S ** 2).sum().clamp_min(1e-300)))
        agree.append(float((votes > 0).double().mean()))
    return _make("lat", list(P), vecs, scales, normalize, alpha, provenance,
                 {"fit": "lat-pca", "seed": int(seed), "n_pairs": int(next(iter(P.values())).shape[0]),
                  "explained_variance_ratio": evr, "train_pair_accuracy": agree, "steerability": steer})


def pair_by_group(labels: Any, groups: Sequence[Any], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_idx, neg_idx): contrast pairs from labelled rows, a true and a false row of the same group
    (e.g. two answers to one TruthfulQA question). Per group both sides are shuffled (seeded) and zipped,
    so a group with t true and f false rows gives min(t, f) pairs and no row is used twice."""
    y = torch.as_tensor(np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)).flatten().bool()
    groups = list(groups)
    if len(groups) != y.numel():
        raise ValueError(f"{len(groups)} groups for {y.numel()} labels")
    rng = np.random.default_rng(int(seed))
    by: dict[Any, tuple[list[int], list[int]]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, ([], []))[0 if bool(y[i]) else 1].append(i)
    pos, neg = [], []
    for g in by:
        t, f = (rng.permutation(np.asarray(s, dtype=np.int64)) for s in by[g])
        m = min(len(t), len(f))
        pos.extend(t[:m].tolist())
        neg.extend(f[:m].tolist())
    if not pos:
        raise ValueError("no group has both a true and a false row: no contrast pairs")
    return torch.tensor(pos), torch.tensor(neg)


def fit_residual_from_store(store, method: str = "caa", layers: Sequence[int] | None = None,
                            normalize: str = "raw", seed: int = 0, alpha: float = 1.0) -> ResidualSteer:
    """A residual steer fitted on any labelled capture store with ``resid`` sites at the last token
    (true/false statements, Geometry of Truth, TruthfulQA answers, sycophancy pairs): `caa` from the class
    means, `lat` from the first principal component of paired differences (a true and a false row of the
    same group: the store's groups, else all rows, paired by `pair_by_group` with `seed`). `store`: an
    `Activations` or its path; `layers`: absolute or negative decoder layers (default: every captured one)."""
    from ...capture import Activations

    acts = Activations.open(store) if not hasattr(store, "stack") else store
    if acts.labels is None:
        raise ValueError(f"{acts.root or 'the store'} has no labels; capture a labelled data set")
    captured = sorted({int(s.split(".")[1]) for s in acts.sites if s.startswith("resid.")})
    if not captured:
        raise ValueError("the store has no resid.* sites; capture with --sites resid")
    n_layers = acts.n_layers
    want = captured if layers is None else [l + n_layers if l < 0 else int(l) for l in layers]
    missing = [l for l in want if l not in captured]
    if missing:
        raise ValueError(f"layers {missing} are not in the store (captured: {captured})")
    X = acts.stack("resid", want).float()  # [N, len(want), D]
    y = torch.as_tensor(np.asarray(acts.labels)).long()
    prov = {"store": str(acts.root or ""), "dataset": (acts.manifest or {}).get("dataset", {}).get("name"),
            "model_fingerprint": (acts.manifest or {}).get("model", {}).get("fingerprint"), "seed": int(seed)}
    groups = list(acts.groups) if acts.groups is not None else ["all"] * len(y)
    if method == "caa":
        return fit_diff_means(X, y, normalize=normalize, act_layers=want, alpha=alpha, provenance=prov,
                              groups=groups, seed=seed)
    if method == "lat":
        pos, neg = pair_by_group(y, groups, seed=seed)
        return fit_lat(X[pos], X[neg], seed=seed, normalize=normalize, act_layers=want, alpha=alpha, provenance=prov)
    raise ValueError(f"method must be caa or lat, got {method!r}")
