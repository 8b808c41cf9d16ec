"""Steerability: will a fitted direction steer, and did it?

Before any generation (Braun et al. 2025, "Understanding (Un)Reliability of Steering Vectors in Language
Models", report both as predictors of how reliably a vector steers), per fitted layer:

- directional agreement of the training pairs' activation differences d_i = pos_i - neg_i (pos = true):
  ``pair_cosine`` = the mean cosine over all pairs i != j, cos(d_i, d_j) (1: every pair points the same way,
  ~0: the differences share no direction); ``cosine_to_mean`` = the mean cos(d_i, mean_j d_j), the
  agreement of each pair with the CAA vector itself.
- separability of the two classes along the difference-of-means line u = (mean(pos) - mean(neg)) / norm:
  ``d_prime`` = (mean(pos.u) - mean(neg.u)) / sqrt((var(pos.u) + var(neg.u)) / 2) (population variances)
  and ``auroc`` = P(pos.u > neg.u) + P(tie) / 2 over all (pos, neg) row pairs.

After steering (Tan et al. 2024, "Analyzing the Generalization and Reliability of Steering Vectors"): per
held-out item, the change of its target margin under the steer against the unsteered model;
``item_steerable`` = the share of items that move the intended way, ``anti_steerable`` = the share that
move the other way (ties count for neither). Over several strengths, `item_slopes` gives Tan et al.'s
per-item steerability (the least-squares slope of margin on strength); a negative slope is anti-steerable.

Whether the predictors foretold the outcome across cells (methods, layers): `rank_agreement` (Spearman's rho
with a percentile bootstrap interval over cells). Whether one steer beat another (or a prompt) on the same
held-out items: `paired_difference` (the per-item difference with a bootstrap interval over items)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

#: the before-steering predictors `predictors` returns, in the order tables show them
PREDICTORS = ("pair_cosine", "cosine_to_mean", "d_prime", "auroc")
#: the after-steering outcomes `item_steerability` returns
OUTCOMES = ("item_steerable", "anti_steerable")


def _rows(x: Any) -> np.ndarray:
    a = np.asarray(x.detach().cpu().double() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected [N, D] activations, got shape {a.shape}")
    return a


def directional_agreement(diffs: Any) -> dict:
    """{"pair_cosine", "cosine_to_mean"} of the rows of `diffs` [N, D] (N >= 2 pair differences); a zero
    row has no direction and is refused. The mean over i != j of cos(d_i, d_j) is computed in O(N D) as
    (|sum_i u_i|^2 - N) / (N (N - 1)) with u_i = d_i / |d_i|."""
    d = _rows(diffs)
    n = d.shape[0]
    if n < 2:
        raise ValueError("directional agreement needs at least two pair differences")
    norms = np.linalg.norm(d, axis=1)
    if not np.all(norms > 0):
        raise ValueError("a pair difference is zero: it has no direction")
    u = d / norms[:, None]
    s = u.sum(0)
    mean = d.mean(0)
    mn = np.linalg.norm(mean)
    return {"pair_cosine": float((s @ s - n) / (n * (n - 1))),
            "cosine_to_mean": float((u @ mean).mean() / mn) if mn > 0 else 0.0}


def auroc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """P(a pos score > a neg score) + P(tie) / 2 (the Mann-Whitney U / (n_pos n_neg)), from mid-ranks."""
    p, q = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    if not len(p) or not len(q):
        raise ValueError("AUROC needs scores of both classes")
    r = _midranks(np.concatenate([p, q]))[:len(p)]
    return float((r.sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(q)))


def separability(pos: Any, neg: Any) -> dict:
    """{"d_prime", "auroc"} of pos [N, D] against neg [M, D] projected on their unit difference-of-means
    direction (pos above neg by construction, so both are >= their chance levels 0 and 0.5 in-sample); d' is
    inf where both projections have zero spread."""
    P, Q = _rows(pos), _rows(neg)
    diff = P.mean(0) - Q.mean(0)
    nrm = np.linalg.norm(diff)
    if nrm == 0:
        raise ValueError("the class means are identical: no difference-of-means line")
    u = diff / nrm
    a, b = P @ u, Q @ u
    gap, spread = a.mean() - b.mean(), math.sqrt((a.var() + b.var()) / 2)
    return {"d_prime": float(gap / spread) if spread > 0 else math.inf, "auroc": auroc(a, b)}


def predictors(pos: Any, neg: Any, paired: bool = True) -> dict:
    """Every before-steering predictor of one layer: separability of pos [N, D] (true rows) against neg
    [M, D] and, where row i of each is a contrast pair (`paired`, N == M), the directional agreement of the
    differences pos_i - neg_i. Values are plain floats (JSON-ready)."""
    P, Q = _rows(pos), _rows(neg)
    out = separability(P, Q)
    if paired:
        if P.shape != Q.shape:
            raise ValueError(f"paired rows differ in shape: {P.shape} vs {Q.shape}")
        out = {**directional_agreement(P - Q), **out}
    return out


def layer_predictors(X: Any, y: Any, layers: Sequence[int], pairs: tuple | None = None) -> dict:
    """{str(layer): `predictors`} of training rows X [n, len(layers), D] with labels y [n] (1 = true): what a
    fit records in provenance["steerability"] (caa, lat, ace, angular, conditional). `pairs` = (pos rows,
    neg rows) indices of contrast pairs (two or more) for the directional agreement; None: separability only."""
    A = np.asarray(X.detach().cpu().double() if hasattr(X, "detach") else X, dtype=np.float64)
    t = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y).astype(bool)
    if A.ndim != 3 or A.shape[1] != len(layers) or A.shape[0] != len(t):
        raise ValueError(f"expected [{len(t)}, {len(layers)}, D] rows, got shape {A.shape}")
    usable = pairs is not None and len(pairs[0]) >= 2
    out = {}
    for i, l in enumerate(layers):
        sep = predictors(A[t, i], A[~t, i], paired=False)
        out[str(int(l))] = ({**predictors(A[np.asarray(pairs[0]), i], A[np.asarray(pairs[1]), i]), **sep}
                            if usable else sep)
    return out


def item_steerability(unsteered: Sequence[float], steered: Sequence[float], sign: int = 1) -> dict:
    """{"item_steerable", "anti_steerable", "n"}: of the n items, the share whose margin moved the intended
    way (sign * (steered - unsteered) > 0) and the share that moved the other way; item i of both lists is
    the same held-out item. Items with a missing (None / NaN) margin are left out."""
    if len(unsteered) != len(steered):
        raise ValueError(f"{len(unsteered)} unsteered and {len(steered)} steered margins: not the same items")
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    pairs = [(float(a), float(b)) for a, b in zip(unsteered, steered) if _num(a) and _num(b)]
    if not pairs:
        return {"item_steerable": None, "anti_steerable": None, "n": 0}
    move = sign * (np.array([b for _, b in pairs]) - np.array([a for a, _ in pairs]))
    return {"item_steerable": float((move > 0).mean()), "anti_steerable": float((move < 0).mean()),
            "n": len(pairs)}


def item_slopes(strengths: Sequence[float], margins: Any) -> np.ndarray:
    """Per item, the least-squares slope of its margin on the steering strength (Tan et al.'s per-item
    steerability): `margins` [len(strengths), n_items], row s = every item's margin at strengths[s]."""
    x = np.asarray(strengths, dtype=np.float64)
    Y = np.asarray(margins, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] != len(x):
        raise ValueError(f"margins must be [{len(x)} strengths, items], got shape {Y.shape}")
    xc = x - x.mean()
    if not (xc @ xc) > 0:
        raise ValueError("slopes need at least two different strengths")
    return xc @ (Y - Y.mean(0)) / (xc @ xc)


def paired_items(base: Sequence[Mapping], steered: Sequence[Mapping], key: str = "mc2",
                 by: str = "index") -> tuple[list, list]:
    """(unsteered, steered) margins `key` of the items in both lists, matched by `by` (a question's
    index), in `steered`'s order: the stored per-question rows of two evaluations of one fold."""
    ref = {r[by]: r.get(key) for r in base if by in r}
    got = [(ref[r[by]], r.get(key)) for r in steered if r.get(by) in ref]
    return [a for a, _ in got], [b for _, b in got]


def paired_difference(a: Mapping, b: Mapping, n_boot: int = 4000, level: float = 0.95, seed: int = 0) -> dict:
    """The mean per-item difference a[i] - b[i] over the items both map to a finite value (two runs' per-question
    scores of the same held-out questions, keyed by question index), with its percentile bootstrap interval
    (items resampled with replacement, seeded) and the shares of items that went up / down (ties count for
    neither). Pairing by item removes the between-question spread that swamps the fold means' s.d.: {"n",
    "difference", "low", "high", "up", "down"}; fewer than two shared items: the difference (or None) and no
    interval."""
    keys = sorted(k for k in a if k in b and _num(a[k]) and _num(b[k]))  # one order, whatever the maps' order
    d = np.array([float(a[k]) - float(b[k]) for k in keys], dtype=np.float64)
    moved = item_steerability([b[k] for k in keys], [a[k] for k in keys])  # up: a above b
    out = {"n": len(d), "difference": float(d.mean()) if len(d) else None, "low": None, "high": None,
           "up": moved["item_steerable"], "down": moved["anti_steerable"]}
    if len(d) >= 2:
        rng = np.random.default_rng(int(seed))
        boot = np.array([d[rng.integers(0, len(d), len(d))].mean() for _ in range(int(n_boot))])
        tail = (1 - level) / 2
        out["low"], out["high"] = float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))
    return out


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the mid-ranks; None where either side is constant."""
    rx, ry = _midranks(np.asarray(x, dtype=np.float64)), _midranks(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry / den) if den > 0 else None


def rank_agreement(rows: Sequence[Mapping], predictor: str, outcome: str, n_boot: int = 2000, level: float = 0.95,
                   seed: int = 0) -> dict:
    """Did `predictor` foretell `outcome` across cells? {"predictor", "outcome", "n", "spearman", "low",
    "high"}: Spearman's rho over the rows that carry both, and its percentile bootstrap interval (cells
    resampled with replacement, seeded; resamples with a constant side are skipped). Fewer than three
    cells, or a constant side: rho and the interval are None."""
    pts = [(float(r[predictor]), float(r[outcome])) for r in rows
           if _num(r.get(predictor)) and _num(r.get(outcome))]
    out = {"predictor": predictor, "outcome": outcome, "n": len(pts), "spearman": None, "low": None, "high": None}
    if len(pts) < 3:
        return out
    x, y = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    out["spearman"] = spearman(x, y)
    if out["spearman"] is None:
        return out
    rng = np.random.default_rng(int(seed))
    boot = [r for idx in rng.integers(0, len(pts), size=(int(n_boot), len(pts)))
            if (r := spearman(x[idx], y[idx])) is not None]
    if boot:
        tail = (1 - level) / 2
        out["low"], out["high"] = float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))
    return out


def cell_steerability(base_folds: Sequence[Sequence[Mapping]], steered_folds: Sequence[Sequence[Mapping]],
                      predictor_folds: Sequence[Mapping | None] = (), key: str = "mc2") -> dict:
    """One sweep cell's steerability over its folds: the fold means of the fitted layer's predictors (those
    every fold has) and `item_steerability` of the held-out items of every fold pooled, each item's `key`
    (its per-question MC2 by default) steered against the plain model on the same fold (`paired_items`).
    Fold lists are aligned (fold f of each); an empty fold list contributes nothing."""
    out: dict = {}
    preds = [p for p in predictor_folds if p]
    if preds and len(preds) == len(predictor_folds):
        for name in PREDICTORS:
            vals = [p.get(name) for p in preds]
            if all(_num(v) for v in vals):
                out[name] = float(np.mean(vals))
    before, after = [], []
    for b, s in zip(base_folds, steered_folds):
        x, y = paired_items(b, s, key)
        before += x
        after += y
    if before:
        got = item_steerability(before, after)
        out.update({k: got[k] for k in OUTCOMES}, steer_items=got["n"])
    return out
