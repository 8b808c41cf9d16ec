"""Semantic entropy of a question's N sampled answers, and its binarisation as a probe target.

Semantic entropy (Kuhn, Gal & Farquhar, ICLR 2023; Farquhar et al., Nature 2024) is the entropy, in nats, of the
distribution over meanings rather than strings: the samples are clustered by an equivalence (here the
normalised-match rule of `answer_match`, in place of the papers' bidirectional entailment) and the entropy taken
over clusters. High entropy: the model gives different answers each time, a sign it does not know. As a detector
score (higher = more likely correct) use minus the entropy.

Two estimates: `discrete_semantic_entropy` from the cluster frequencies alone (the Nature paper's "discrete"
variant, for when sequence probabilities are unavailable), and `semantic_entropy` weighting each cluster by the
summed probability of its samples, normalised over the clusters sampled (the papers' variant; they pass the
length-normalised log-prob, the mean token log-prob, of each sample; pass whichever the study records).

Semantic-entropy probes (Kossen et al., 2024) are trained to predict a binarised entropy from the hidden state at
the last prompt token: `binarise_entropy` gives the split and the labels, 1 = LOW entropy, so a probe trained on
them scores like every other detector here (higher = more likely correct).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .answer_match import match_rule


def cluster_answers(answers: Sequence[str], equivalent: Callable[[str, str], bool] | None = None) -> list[int]:
    """Cluster id of each answer (0, 1, ... in order of first appearance): each answer joins the first cluster whose
    first member it is `equivalent` to, else opens a new one (the papers' greedy clustering; for an equivalence
    relation it is the relation's classes). Default: the normalised-match rule without aliases (equal normalised
    strings); pass `answer_match.match_rule(aliases)` to merge every answer matching a gold alias."""
    equivalent = equivalent or match_rule()
    heads: list[str] = []
    ids = []
    for a in answers:
        for c, h in enumerate(heads):
            if equivalent(h, a):
                ids.append(c)
                break
        else:
            heads.append(a)
            ids.append(len(heads) - 1)
    return ids


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def discrete_semantic_entropy(cluster_ids: Sequence[int]) -> float:
    """Entropy (nats) of the clusters' frequencies among the samples: 0 when all samples agree, log N when all
    differ."""
    ids = np.asarray(cluster_ids)
    if ids.size == 0:
        raise ValueError("semantic entropy needs at least one sample")
    _, counts = np.unique(ids, return_counts=True)
    return _entropy(counts / counts.sum())


def semantic_entropy(cluster_ids: Sequence[int], log_probs: Sequence[float]) -> float:
    """Entropy (nats) of p(cluster) = sum of exp(log-prob) over the cluster's samples / the same sum over all
    samples (log-sum-exp, float64). A sample drawn twice counts twice, as in the papers' estimator."""
    ids, lp = np.asarray(cluster_ids), np.asarray(log_probs, dtype=np.float64)
    if ids.size == 0 or ids.shape != lp.shape:
        raise ValueError(f"need one log-prob per sample, got {ids.size} samples and {lp.size} log-probs")
    if not np.isfinite(lp).all():
        raise ValueError("every log-prob must be finite")
    w = np.exp(lp - lp.max())
    _, inv = np.unique(ids, return_inverse=True)
    return _entropy(np.bincount(inv, weights=w) / w.sum())


def semantic_entropies(samples: Sequence[Sequence[str]], log_probs: Sequence[Sequence[float]] | None = None,
                       aliases: Sequence[Sequence[str]] | None = None) -> np.ndarray:
    """One semantic entropy per question from its sampled answers, clustered by the normalised-match rule (with
    the question's gold `aliases`, when given, merging every answer that matches one): weighted by the samples'
    `log_probs` when given, else discrete. Minus it is the semantic-entropy baseline's score (belief correct)."""
    if any(x is not None and len(x) != len(samples) for x in (log_probs, aliases)):
        raise ValueError("need log-probs and aliases (when given) for every question")
    out = []
    for i, answers in enumerate(samples):
        ids = cluster_answers(answers, match_rule(aliases[i] if aliases is not None else ()))
        out.append(discrete_semantic_entropy(ids) if log_probs is None else semantic_entropy(ids, log_probs[i]))
    return np.array(out, dtype=np.float64)


def binarise_entropy(values: Sequence[float], method: str = "best_split") -> tuple[float, np.ndarray]:
    """(threshold, labels): labels 1 where the entropy is below the threshold (low entropy, "the model knows"), 0
    at or above it. "best_split" (Kossen et al. 2024): the threshold, a midpoint between two neighbouring distinct
    values, that minimises the summed squared deviation of each side from its own mean; "median": the median,
    every value below it labelled 1. A threshold that leaves one side empty is refused."""
    v = np.asarray(values, dtype=np.float64)
    u = np.unique(v)
    if u.size < 2:
        raise ValueError("cannot binarise entropies that are all equal (one class only)")
    if method == "median":
        t = float(np.median(v))
        if not (v < t).any():  # more than half the values tie at the minimum
            t = float(u[1])
    elif method == "best_split":
        s = np.sort(v)
        c1, c2 = np.cumsum(s), np.cumsum(s * s)
        k = np.arange(1, s.size)  # k values below the split, s.size - k above
        sse_lo = c2[:-1] - c1[:-1] ** 2 / k
        hi_sum, hi_sq = c1[-1] - c1[:-1], c2[-1] - c2[:-1]
        sse_hi = hi_sq - hi_sum ** 2 / (s.size - k)
        ok = s[1:] > s[:-1]  # only split between distinct values
        i = int(np.argmin(np.where(ok, sse_lo + sse_hi, np.inf)))
        t = float((s[i] + s[i + 1]) / 2)
    else:
        raise ValueError(f"unknown binarisation {method!r}; use best_split or median")
    return t, (v < t).astype(np.int64)
