"""Semantic entropy (veracity.evaluate.semantic_entropy) against hand examples: the clustering, the discrete and
the probability-weighted entropy, and the binarisation of semantic-entropy probes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veracity.evaluate.answer_match import match_rule
from veracity.evaluate.semantic_entropy import (binarise_entropy, cluster_answers, discrete_semantic_entropy,
                                                semantic_entropies, semantic_entropy)

SAMPLES = ["Paris", "paris.", "The Paris", "Lyon", "Marseille", "lyon"]


def test_clusters_by_the_normalised_match_rule():
    assert cluster_answers(SAMPLES) == [0, 0, 0, 1, 2, 1]
    assert cluster_answers(["USA", "United States of America", "Canada", "the usa"]) == [0, 1, 2, 0]
    merged = cluster_answers(["USA", "United States of America", "Canada", "the usa"],
                             match_rule(["United States", "USA"]))
    assert merged == [0, 0, 1, 0]
    assert cluster_answers(["a", "b", "c"], lambda x, y: True) == [0, 0, 0]  # any equivalence can be passed
    assert cluster_answers([]) == []


def test_discrete_semantic_entropy_by_hand():
    # clusters of 3, 2 and 1 samples out of 6
    want = -(0.5 * math.log(0.5) + (1 / 3) * math.log(1 / 3) + (1 / 6) * math.log(1 / 6))
    assert discrete_semantic_entropy(cluster_answers(SAMPLES)) == pytest.approx(want)
    assert discrete_semantic_entropy([0, 0, 0]) == 0.0
    assert discrete_semantic_entropy([0, 1, 2, 3]) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="at least one"):
        discrete_semantic_entropy([])


def test_weighted_semantic_entropy_by_hand():
    lp = np.log([0.2, 0.1, 0.1, 0.3, 0.2, 0.1])  # cluster masses 0.4 (Paris), 0.4 (Lyon), 0.2 (Marseille)
    want = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    ids = cluster_answers(SAMPLES)
    assert semantic_entropy(ids, lp) == pytest.approx(want)
    assert semantic_entropy(ids, lp - 500.0) == pytest.approx(want)  # normalised over the samples: no underflow
    assert semantic_entropy(ids, np.zeros(6)) == pytest.approx(discrete_semantic_entropy(ids))  # equal weights
    with pytest.raises(ValueError, match="one log-prob per sample"):
        semantic_entropy(ids, lp[:3])


def test_semantic_entropies_per_question():
    samples = [SAMPLES, ["USA", "United States", "Canada", "USA"]]
    lp = [np.log([0.2, 0.1, 0.1, 0.3, 0.2, 0.1]), np.log([0.25] * 4)]
    plain = semantic_entropies(samples)
    assert plain[0] == pytest.approx(discrete_semantic_entropy([0, 0, 0, 1, 2, 1]))
    assert plain[1] == pytest.approx(discrete_semantic_entropy([0, 1, 2, 0]))
    aliased = semantic_entropies(samples, lp, aliases=[["Paris"], ["United States", "USA"]])
    assert aliased[0] == pytest.approx(semantic_entropy([0, 0, 0, 1, 2, 1], lp[0]))
    assert aliased[1] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))  # USA x3, Canada
    with pytest.raises(ValueError, match="every question"):
        semantic_entropies(samples, lp[:1])


def test_binarise_best_split_and_median_by_hand():
    t, lab = binarise_entropy([0.0, 0.1, 1.5, 0.2, 1.6])
    assert t == pytest.approx(0.85) and lab.tolist() == [1, 1, 0, 1, 0]  # 1 = low entropy
    t, lab = binarise_entropy([0.0, 0.1, 1.5, 0.2, 1.6], method="median")
    assert t == 0.2 and lab.tolist() == [1, 1, 0, 0, 0]
    t, lab = binarise_entropy([0.0, 0.0, 0.0, 0.7], method="median")  # the median ties the minimum
    assert t == 0.7 and lab.tolist() == [1, 1, 1, 0]
    with pytest.raises(ValueError, match="all equal"):
        binarise_entropy([0.3, 0.3])
    with pytest.raises(ValueError, match="unknown binarisation"):
        binarise_entropy([0.1, 0.3], method="mean")


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(0, 12), min_size=2, max_size=25).filter(lambda v: len(set(v)) > 1))
def test_best_split_minimises_the_within_group_squared_error(raw):
    v = np.array(raw) / 4

    def sse(t):
        lo, hi = v[v < t], v[v >= t]
        return ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()

    u = np.unique(v)
    best = min(sse(t) for t in (u[:-1] + u[1:]) / 2)  # every split between distinct values, by brute force
    t, lab = binarise_entropy(v)
    assert sse(t) == pytest.approx(best, abs=1e-9) and lab.tolist() == (v < t).astype(int).tolist()
