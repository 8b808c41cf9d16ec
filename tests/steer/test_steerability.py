"""Steerability predictors and outcomes (`steer.steerability`) against hand computations, scikit-learn and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from veracity.steer.steerability import (auroc, directional_agreement, item_slopes, item_steerability,
                                         paired_difference, paired_items, predictors, rank_agreement, separability,
                                         spearman)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_directional_agreement_by_hand():
    # differences (1, 0), (0, 1), (1, 1): pairwise cosines 0, 1/sqrt2, 1/sqrt2 -> mean sqrt2/3
    d = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    got = directional_agreement(d)
    assert got["pair_cosine"] == pytest.approx(math.sqrt(2) / 3)
    m = d.mean(0)  # (2/3, 2/3): cosines 1/sqrt2, 1/sqrt2, 1
    assert got["cosine_to_mean"] == pytest.approx((2 / math.sqrt(2) + 1) / 3)
    # the O(N D) closed form against the explicit double loop on random rows
    rng = np.random.default_rng(0)
    r = rng.normal(size=(9, 6))
    loop = np.mean([_cos(r[i], r[j]) for i, j in itertools.permutations(range(9), 2)])
    assert directional_agreement(r)["pair_cosine"] == pytest.approx(loop)
    assert directional_agreement(r)["cosine_to_mean"] == pytest.approx(np.mean([_cos(x, r.mean(0)) for x in r]))
    # parallel differences agree perfectly; opposite pairs cancel
    assert directional_agreement([[1.0, 2.0], [2.0, 4.0]])["pair_cosine"] == pytest.approx(1.0)
    assert directional_agreement([[1.0, 0.0], [-1.0, 0.0]])["pair_cosine"] == pytest.approx(-1.0)
    assert m.shape == (2,)


def test_directional_agreement_refuses():
    with pytest.raises(ValueError, match="two"):
        directional_agreement([[1.0, 0.0]])
    with pytest.raises(ValueError, match="zero"):
        directional_agreement([[1.0, 0.0], [0.0, 0.0]])


def test_separability_by_hand_and_sklearn():
    # pos (2, 0), (4, 0); neg (0, 0), (0, 2)... mean diff (3, -1) / sqrt10
    pos = np.array([[2.0, 0.0], [4.0, 0.0]])
    neg = np.array([[0.0, 0.0], [0.0, 2.0]])
    u = np.array([3.0, -1.0]) / math.sqrt(10)
    a, b = pos @ u, neg @ u
    want_d = (a.mean() - b.mean()) / math.sqrt((a.var() + b.var()) / 2)
    got = separability(pos, neg)
    assert got["d_prime"] == pytest.approx(want_d)
    assert got["auroc"] == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    P, Q = rng.normal(0.3, 1, size=(40, 5)), rng.normal(0, 1, size=(30, 5))
    diff = P.mean(0) - Q.mean(0)
    proj = np.concatenate([P, Q]) @ (diff / np.linalg.norm(diff))
    assert separability(P, Q)["auroc"] == pytest.approx(roc_auc_score([1] * 40 + [0] * 30, proj))
    with pytest.raises(ValueError, match="identical"):
        separability(P, P)


def test_auroc_ties_count_half():
    assert auroc([1.0, 2.0], [1.0, 0.0]) == pytest.approx(roc_auc_score([1, 1, 0, 0], [1.0, 2.0, 1.0, 0.0]))
    assert auroc([1.0], [1.0]) == 0.5


def test_predictors_paired_and_not():
    rng = np.random.default_rng(2)
    P, Q = rng.normal(size=(6, 4)) + 1.0, rng.normal(size=(6, 4))
    both = predictors(P, Q)
    assert both == {**directional_agreement(P - Q), **separability(P, Q)}
    assert set(predictors(P, Q[:4], paired=False)) == {"d_prime", "auroc"}
    with pytest.raises(ValueError, match="shape"):
        predictors(P, Q[:4])


def test_item_steerability_by_hand():
    before = [0.2, 0.5, 0.5, 0.9, None]
    after = [0.4, 0.5, 0.1, 1.0, 0.3]
    # moves: +0.2, 0, -0.4, +0.1 (the fifth has no unsteered margin): 2 of 4 up, 1 of 4 down
    assert item_steerability(before, after) == {"item_steerable": 0.5, "anti_steerable": 0.25, "n": 4}
    # steering meant to lower the margin swaps the two
    assert item_steerability(before, after, sign=-1) == {"item_steerable": 0.25, "anti_steerable": 0.5, "n": 4}
    assert item_steerability([], [])["item_steerable"] is None
    with pytest.raises(ValueError, match="same items"):
        item_steerability([0.1], [0.2, 0.3])


def test_item_slopes_against_polyfit():
    s = [0.0, 1.0, 2.0, 4.0]
    rng = np.random.default_rng(3)
    M = rng.normal(size=(4, 5))
    want = [np.polyfit(s, M[:, i], 1)[0] for i in range(5)]
    np.testing.assert_allclose(item_slopes(s, M), want)
    with pytest.raises(ValueError, match="different strengths"):
        item_slopes([1.0, 1.0], np.zeros((2, 3)))


def test_paired_items_matches_by_index():
    base = [{"index": 3, "mc2": 0.1}, {"index": 5, "mc2": 0.6}]
    steered = [{"index": 5, "mc2": 0.7}, {"index": 9, "mc2": 0.2}, {"index": 3, "mc2": 0.0}]
    assert paired_items(base, steered) == ([0.6, 0.1], [0.7, 0.0])


def test_paired_difference_by_hand_and_a_literal_bootstrap():
    a = {3: 0.5, 1: 0.9, 7: 0.2, 4: 0.4, 8: None}
    b = {1: 0.6, 3: 0.5, 7: 0.4, 4: 0.1, 9: 0.3}
    got = paired_difference(a, b, n_boot=500, seed=2)
    d = np.array([0.9 - 0.6, 0.4 - 0.1, 0.5 - 0.5, 0.2 - 0.4])  # items 1, 3, 4, 7 by hand (sorted; 8 has no score)
    d = d[[0, 2, 1, 3]]  # the order of sorted indices 1, 3, 4, 7
    assert got["n"] == 4 and got["difference"] == pytest.approx(d.mean())
    assert (got["up"], got["down"]) == (0.5, 0.25)  # item 3 ties
    rng = np.random.default_rng(2)  # the percentile bootstrap written out: items resampled with replacement
    boot = [d[rng.integers(0, 4, 4)].mean() for _ in range(500)]
    assert (got["low"], got["high"]) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert got == paired_difference(dict(reversed(list(a.items()))), b, n_boot=500, seed=2)  # order-free
    one = paired_difference({1: 0.3}, {1: 0.1})
    assert one["difference"] == pytest.approx(0.2) and one["low"] is None
    assert paired_difference({1: 0.3}, {2: 0.1})["n"] == 0


def test_spearman_against_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=12), rng.normal(size=12)
    y[3] = y[5]  # a tie
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman([1, 2, 3], [5, 5, 5]) is None


def test_rank_agreement_with_bootstrap():
    rows = [{"p": float(i), "o": float(i) ** 2} for i in range(8)] + [{"p": 1.0}, {"p": None, "o": 2.0}]
    got = rank_agreement(rows, "p", "o", n_boot=200, seed=0)
    assert got["n"] == 8 and got["spearman"] == pytest.approx(1.0)
    assert got["low"] == pytest.approx(1.0) and got["high"] == pytest.approx(1.0)  # monotone in every resample
    rng = np.random.default_rng(5)
    noisy = [{"p": float(a), "o": float(b)} for a, b in rng.normal(size=(30, 2))]
    r = rank_agreement(noisy, "p", "o", n_boot=300, seed=1)
    assert r["low"] <= r["spearman"] <= r["high"]
    assert r == rank_agreement(noisy, "p", "o", n_boot=300, seed=1)  # seeded
    assert rank_agreement(rows[:2], "p", "o")["spearman"] is None  # too few cells


def test_cell_steerability_pools_folds_and_averages_predictors():
    from veracity.steer.steerability import cell_steerability

    base = [[{"index": 0, "mc2": 0.2}, {"index": 1, "mc2": 0.5}], [{"index": 2, "mc2": 0.4}]]
    steered = [[{"index": 1, "mc2": 0.6}, {"index": 0, "mc2": 0.1}], [{"index": 2, "mc2": 0.7}]]
    preds = [{"pair_cosine": 0.2, "d_prime": 1.0, "auroc": 0.7}, {"pair_cosine": 0.4, "d_prime": 3.0, "auroc": 0.9}]
    got = cell_steerability(base, steered, preds)
    # items 1 and 2 rose, item 0 fell; the predictors' fold means (cosine_to_mean is in no fold)
    assert got == pytest.approx({"pair_cosine": 0.3, "d_prime": 2.0, "auroc": 0.8, "item_steerable": 2 / 3,
                                 "anti_steerable": 1 / 3, "steer_items": 3})
    assert cell_steerability(base, steered, [preds[0], None]) == pytest.approx(
        {"item_steerable": 2 / 3, "anti_steerable": 1 / 3, "steer_items": 3})  # a fold without predictors
    assert cell_steerability([[]], [[]]) == {}
