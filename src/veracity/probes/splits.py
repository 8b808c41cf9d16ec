"""Train/test splits for probe experiments, and aggregation over seeds.

A probe's accuracy on a random split of one data set mostly measures memorised topic cues; the
leave-one-topic-out and transfer splits ask whether the direction generalises. Every split kind
takes a seed so experiments can be repeated; `aggregate` keeps mean, std and max over seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPLIT_KINDS = ("random", "kfold", "leave-one-topic-out", "transfer")


@dataclass
class Split:
    """One train/test partition. `name` identifies it across seeds (e.g. the held-out topic)."""

    name: str
    train_idx: np.ndarray
    test_idx: np.ndarray
    seed: int = 0


@dataclass
class SeedStats:
    """A score summarised over seeds (mean, std, max, min, count) with the values themselves."""
    mean: float
    std: float
    max: float
    min: float
    n: int
    values: list[float]


def question_blocks(questions: Sequence[int], n_folds: int, seed: int = 0, contiguous: bool = False,
                    min_folds: int = 2) -> list[np.ndarray]:
    """Question-level folds: a seeded shuffle of `questions` (numpy's default_rng(seed) permutation) cut
    into n_folds near-equal blocks by ``np.array_split``, or (contiguous) consecutive blocks in the given
    order, as ITI's original ``np.array_split(np.arange(n), k)``. Blocks keep the drawn order (ITI's
    original within-fold split depends on it); `question_folds` sorts them."""
    q = np.asarray(list(questions))
    if n_folds < min_folds or n_folds > max(min_folds, len(q)):
        raise ValueError(f"need {min_folds} <= folds <= {len(q)} questions, got {n_folds}")
    if not contiguous:
        q = q[np.random.default_rng(seed).permutation(len(q))]
    return np.array_split(q, n_folds)


def question_folds(questions: Sequence[int], n_folds: int, seed: int = 0, contiguous: bool = False,
                   min_folds: int = 2) -> list[np.ndarray]:
    """The test questions of each fold, sorted (`question_blocks`): every study's k folds of TruthfulQA."""
    return [np.sort(b) for b in question_blocks(questions, n_folds, seed, contiguous, min_folds)]


def held_out_groups(groups: Sequence, frac: float, seed: int = 0, draw: str = "python") -> set:
    """A seeded `frac` of the distinct `groups` (cities, questions) to hold out: at least one, never all.
    The sorted distinct values are shuffled by `draw`: "python" (``random.Random(seed).shuffle``, the
    demo's cities) or "numpy" (``np.random.default_rng(seed).shuffle``, the local judges' questions); both
    are kept so the figures published with each stay reproducible."""
    import random

    uniq = sorted(set(groups))
    if len(uniq) < 2:
        raise ValueError("need at least two distinct groups to hold some out")
    if draw == "python":
        random.Random(seed).shuffle(uniq)
    elif draw == "numpy":
        np.random.default_rng(seed).shuffle(uniq)
    else:
        raise ValueError(f"draw must be 'python' or 'numpy', got {draw!r}")
    return set(uniq[:min(len(uniq) - 1, max(1, int(round(frac * len(uniq)))))])


def aggregate(values: Sequence[float]) -> SeedStats:
    """Mean, std (ddof=0), max and min of one quantity over seeds."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        nan = math.nan
        return SeedStats(nan, nan, nan, nan, 0, [])
    return SeedStats(float(v.mean()), float(v.std()), float(v.max()), float(v.min()), int(v.size), v.tolist())


def stratified_split(labels: Sequence[int], test_size: float = 0.2, seed: int = 0) -> Split:
    """Random split keeping the class balance in train and test."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: int(round(test_size * len(idx)))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return Split("random", train_idx, test_idx, seed)


def kfold_splits(labels: Sequence[int], k: int = 5, seed: int = 0) -> list[Split]:
    """Stratified k-fold: each row is in exactly one test fold."""
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % k
    return [Split(f"fold{i}", np.flatnonzero(fold != i), np.flatnonzero(fold == i), seed) for i in range(k)]


def leave_one_group_out(groups: Sequence[str], seed: int = 0) -> list[Split]:
    """Train on every topic but one, test on the held-out topic (one split per topic). Deterministic;
    the seed is recorded and varies only the probe's own randomness."""
    g = np.asarray([str(x) for x in groups])
    return [Split(t, np.flatnonzero(g != t), np.flatnonzero(g == t), seed) for t in sorted(set(g.tolist()))]


def transfer_split(n_train: int, n_test: int, name: str = "transfer", seed: int = 0) -> Split:
    """Rows [0, n_train) are data set X (train), the next n_test are data set Y (test): concatenate X and
    Y's activations in that order."""
    return Split(name, np.arange(n_train), np.arange(n_train, n_train + n_test), seed)


def make_splits(kind: str, labels: Sequence[int], groups: Sequence[str] | None = None, seed: int = 0,
                test_size: float = 0.2, k: int = 5, n_train: int | None = None) -> list[Split]:
    """The splits of one kind for one seed."""
    if kind == "random":
        return [stratified_split(labels, test_size, seed)]
    if kind == "kfold":
        return kfold_splits(labels, k, seed)
    if kind == "leave-one-topic-out":
        if groups is None or len(set(groups)) < 2:
            raise ValueError("leave-one-topic-out needs at least two topics (groups) in the data")
        return leave_one_group_out(groups, seed)
    if kind == "transfer":
        if n_train is None:
            raise ValueError("transfer needs n_train (rows of the training data set, first in order)")
        return [transfer_split(n_train, len(labels) - n_train, seed=seed)]
    raise ValueError(f"unknown split {kind!r}; choose from {', '.join(SPLIT_KINDS)}")
