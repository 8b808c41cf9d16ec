"""Detector metrics (veracity.evaluate.detection) against scikit-learn and hand computations: AUROC/AUPRC and their
bootstrap, the threshold at a fixed false-positive rate, calibration and ECE, risk-coverage / AURC / PRR, selective
and best-of-N accuracy, the log-prob baselines and the single-layer spike flag."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score

from veracity import metrics as M
from veracity.evaluate import detection as D

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None)


@st.composite
def scored(draw, min_size=2, max_size=40):
    """Scores on a coarse grid (many ties) and 0/1 labels with both classes present."""
    n = draw(st.integers(min_size, max_size))
    s = draw(st.lists(st.integers(-4, 4), min_size=n, max_size=n))
    y = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)))
    return np.array(s, dtype=float) / 2, np.array(y)


@FUZZ
@given(scored())
def test_auroc_and_auprc_equal_sklearn_ties_included(data):
    s, y = data
    assert D.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert D.auprc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert D.auprc(s, y, positive=0) == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)


def test_auroc_chance_and_missing_class():
    y = np.array([1, 0, 1, 0, 1, 0])
    assert D.auroc(np.zeros(6), y) == 0.5  # a constant score: every pair ties
    assert D.auprc(np.zeros(6), y) == pytest.approx(y.mean())  # AUPRC's chance is the positives' share
    assert math.isnan(D.auroc([0.1, 0.2], [1, 1]))
    with pytest.raises(ValueError, match="0 .wrong answer. or 1"):
        D.auroc([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="positive must be"):
        D.auprc([0.1, 0.2], [1, 0], positive=2)
    with pytest.raises(ValueError, match="one label per score"):
        D.auroc([0.1, 0.2], [1])


def test_bootstrap_intervals_equal_a_plain_resampling_loop():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(y + rng.normal(0, 1, 60), 1)  # rounded: ties
    n_boot, seed = 300, 11
    draws = np.random.default_rng(seed).integers(0, 60, (n_boot, 60))  # resampled answers, one row per resample
    for fn, ref in ((D.auroc_ci, roc_auc_score), (D.auprc_ci, average_precision_score)):
        vals = [ref(y[i], s[i]) for i in draws if 0 < y[i].sum() < len(i)]
        lo, hi = np.percentile(vals, [2.5, 97.5])
        ci = fn(s, y, n_boot=n_boot, seed=seed)
        assert ci.value == pytest.approx(ref(y, s)) and ci.low == pytest.approx(lo) and ci.high == pytest.approx(hi)
        assert ci.low <= ci.value <= ci.high
    assert D.auroc_ci(s, y, n_boot=50, seed=1) == D.auroc_ci(s, y, n_boot=50, seed=1)  # seeded
    with pytest.raises(ValueError, match="level"):
        D.auroc_ci(s, y, level=95)


def test_threshold_at_fpr_by_hand():
    correct = np.arange(1, 11) / 10  # 0.1 .. 1.0
    wrong = np.array([0.05, 0.15, 0.5])
    s, y = np.r_[correct, wrong], np.r_[np.ones(10), np.zeros(3)]
    # 1% of 10 correct answers: none may be flagged, so the lowest correct score (flag strictly below it)
    assert D.threshold_at_fpr(s, y, 0.01) == 0.1
    assert D.threshold_at_fpr(s, y, 0.1) == 0.2  # one correct answer (0.1) may be flagged
    assert D.threshold_at_fpr(s, y, 0.25) == 0.3  # floor(2.5) = 2
    assert D.threshold_at_fpr(s, y, 1.0) == math.inf
    # ties at the cut are not flagged: the rate stays at or under the target
    assert D.threshold_at_fpr([0.2, 0.2, 0.2, 0.9], [1, 1, 1, 1], 0.5) == 0.2
    r = D.flag_at_threshold(s, y, 0.2)  # flags 0.1 (correct), 0.05 and 0.15 (wrong)
    assert (r.recall, r.fpr, r.n_wrong, r.n_correct) == (2 / 3, 0.1, 3, 10)
    assert r.balanced_accuracy == pytest.approx((2 / 3 + 0.9) / 2)
    with pytest.raises(ValueError, match="no correct answer"):
        D.threshold_at_fpr([0.1], [0], 0.01)


@FUZZ
@given(scored(), st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.5]))
def test_threshold_is_the_highest_that_keeps_the_rate(data, fpr):
    s, y = data
    t = D.threshold_at_fpr(s, y, fpr)
    assert (s[y == 1] < t).mean() <= fpr + 1e-12
    above = s[(y == 1) & (s > t)]
    if above.size:  # the next candidate (the next correct score) would flag too many
        assert (s[y == 1] < above.min()).mean() > fpr


def test_reliability_bins_equal_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(0, 1, 200), [0.0, 0.1, 0.2, 0.5, 0.7, 1.0]]  # values on bin edges too
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    for n_bins in (5, 10, 15):
        true, pred, count = D.reliability_bins(p, y, n_bins)
        ref_true, ref_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
        np.testing.assert_allclose(true, ref_true)
        np.testing.assert_allclose(pred, ref_pred)
        assert count.sum() == p.size
        assert D.expected_calibration_error(p, y, n_bins) == pytest.approx(
            (count * np.abs(ref_true - ref_pred)).sum() / p.size)


def test_ece_by_hand():
    # bin [0, .5]: predicted 0.2, 0.4 -> mean 0.3, one correct of two (0.5); bin (.5, 1]: 0.9 x2, both correct
    p, y = [0.2, 0.4, 0.9, 0.9], [1, 0, 1, 1]
    assert D.expected_calibration_error(p, y, n_bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.1)
    assert D.expected_calibration_error([0.0, 1.0], [0, 1], n_bins=10) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        D.expected_calibration_error([1.2], [1])


def _noisy(n, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, n)
    return s, (rng.uniform(0, 1, n) < 1 / (1 + np.exp(-s / scale))).astype(int)  # P(correct) = sigmoid(s / 3)


def test_platt_without_smoothing_is_unpenalised_logistic_regression():
    s, y = _noisy(300, 1)
    cal = D.fit_calibrator(s, y, "platt", smooth=False)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(s[:, None], y)
    assert cal.a == pytest.approx(ref.coef_[0, 0], rel=1e-5) and cal.b == pytest.approx(ref.intercept_[0], abs=1e-5)
    np.testing.assert_allclose(cal(s), ref.predict_proba(s[:, None])[:, 1], atol=1e-7)


def test_platt_with_smoothing_meets_its_first_order_conditions_and_stays_finite():
    s, y = _noisy(200, 2)
    cal = D.fit_calibrator(s, y)
    t = np.where(y == 1, (y.sum() + 1) / (y.sum() + 2), 1 / ((1 - y).sum() + 2))
    r = cal(s) - t  # gradient of the cross-entropy in (a, b)
    assert abs((r * s).sum()) < 1e-7 and abs(r.sum()) < 1e-7
    sep = D.fit_calibrator([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1])  # separable: unsmoothed would diverge
    assert math.isfinite(sep.a) and 0 < sep([1.0])[0] < 1


def test_calibration_on_validation_lowers_the_test_ece():
    (vs, vy), (ts, ty) = _noisy(2000, 3), _noisy(2000, 4)
    raw = D.expected_calibration_error(1 / (1 + np.exp(-ts)), ty)  # sigmoid(s) is overconfident
    for method in ("platt", "isotonic"):
        assert D.calibrated_ece(vs, vy, ts, ty, method) < raw / 2
    iso = D.fit_calibrator(vs, vy, "isotonic")
    out = iso(np.sort(np.r_[ts, -100.0, 100.0]))
    assert (np.diff(out) >= 0).all() and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="unknown calibration"):
        D.fit_calibrator(vs, vy, "beta")


def test_risk_coverage_aurc_and_prr_by_hand():
    s, y = [0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]
    cov, risk = D.risk_coverage_curve(s, y)
    np.testing.assert_allclose(cov, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0, 1 / 2, 1 / 3, 1 / 2])
    assert D.aurc(s, y) == pytest.approx(1 / 3)
    assert D.random_aurc(y) == 0.5 and D.oracle_aurc(y) == pytest.approx((0 + 0 + 1 / 3 + 1 / 2) / 4)
    assert D.prediction_rejection_ratio(s, y) == pytest.approx((1 / 2 - 1 / 3) / (1 / 2 - 5 / 24))  # = 4/7
    assert D.prediction_rejection_ratio([4, 3, 2, 1], [1, 1, 0, 0]) == pytest.approx(1.0)  # the oracle
    assert D.prediction_rejection_ratio([1, 2, 3, 4], [1, 1, 0, 0]) < 0  # worse than chance
    assert D.prediction_rejection_ratio([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.0)  # one tie: chance
    assert math.isnan(D.prediction_rejection_ratio([1, 2], [1, 1]))
    # a tie of two with one error: the expected risk over both orders
    np.testing.assert_allclose(D.risk_coverage_curve([0.9, 0.5, 0.5], [1, 1, 0])[1], [0, 0.25, 1 / 3])
    assert D.selective_accuracy(s, y, 0.5) == 0.5 and D.selective_accuracy(s, y, 0.75) == pytest.approx(2 / 3)
    assert D.selective_accuracy(s, y, 1.0) == 0.5 and D.selective_accuracy(s, y, 0.01) == 1.0
    assert D.selective_at_threshold(s, y, 0.7) == (0.75, pytest.approx(2 / 3))
    assert D.selective_at_threshold(s, y, 5)[0] == 0 and math.isnan(D.selective_at_threshold(s, y, 5)[1])


@FUZZ
@given(st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.integers(0, 1)), min_size=1, max_size=30,
                unique_by=lambda t: t[0]))
def test_risk_curve_with_distinct_scores_is_the_sorted_running_error(rows):
    s, y = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    err = 1 - y[np.argsort(-s)]
    want = np.cumsum(err) / np.arange(1, len(s) + 1)
    np.testing.assert_allclose(D.risk_coverage_curve(s, y)[1], want)
    assert D.aurc(s, y) == pytest.approx(want.mean())


def test_best_of_n_by_hand():
    det = [[0.1, 0.9, 0.2], [0.8, 0.1, 0.3], [0.5, 0.5, 0.1]]
    lp = [[-1.0, -3.0, -2.0], [-2.0, -1.0, -3.0], [-1.0, -2.0, -3.0]]
    ok = [[0, 1, 0], [0, 1, 1], [1, 0, 0]]
    clusters = [[0, 1, 0], [0, 1, 1], [0, 1, 2]]
    greedy = [0, 1, 1]
    r = D.best_of_n(det, lp, ok, clusters, greedy, n_boot=200, seed=0)
    assert r.picks == {"greedy": [-1, -1, -1], "detector": [1, 0, 0], "max_logprob": [0, 1, 0],
                       "majority": [0, 1, 0], "oracle": [1, 1, 0]}
    want = {"greedy": 2 / 3, "detector": 2 / 3, "max_logprob": 2 / 3, "majority": 2 / 3, "oracle": 1.0}
    assert {k: v.value for k, v in r.accuracy.items()} == pytest.approx(want)
    assert r.detector_minus["oracle"].value == pytest.approx(-1 / 3) and "detector" not in r.detector_minus
    for v in r.accuracy.values():
        assert 0 <= v.low <= v.value <= v.high <= 1
    assert r.accuracy["oracle"].low == r.accuracy["oracle"].high == 1.0  # right on every question: no spread
    assert set(r.metrics()) <= set(M.metrics_in("selective"))
    with pytest.raises(ValueError, match="question 0"):
        D.best_of_n([[0.1]], [[-1.0, -2.0]], [[1]], [[0]], [1])


def test_best_of_n_intervals_resample_questions_in_pairs():
    rng = np.random.default_rng(5)
    q, n = 40, 4
    det, lp = rng.normal(size=(q, n)), rng.normal(size=(q, n))
    ok, greedy = rng.integers(0, 2, (q, n)), rng.integers(0, 2, q)
    r = D.best_of_n(det, lp, ok, [[0] * n] * q, greedy, n_boot=300, seed=7)
    pick = ok[np.arange(q), det.argmax(1)].astype(float)
    draws = np.random.default_rng(7).integers(0, q, (300, q))
    diffs = [(pick - greedy)[i].mean() for i in draws]
    assert r.detector_minus["greedy"][1:] == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))
    assert r.accuracy["majority"].value == pytest.approx(ok[:, 0].mean())  # one cluster: its first sample


def test_majority_pick_ties_go_to_the_cluster_seen_first():
    assert D.majority_pick([2, 1, 1, 2, 3]) == 0 and D.majority_pick([0, 1, 1]) == 1 and D.majority_pick([5]) == 0


def test_logprob_baselines():
    mean, low = D.logprob_scores([[-0.5, -1.5], [-0.1], [-3.0, 0.0, -0.3]])
    np.testing.assert_allclose(mean, [-1.0, -0.1, -1.1])
    np.testing.assert_allclose(low, [-1.5, -0.1, -3.0])
    with pytest.raises(ValueError, match="no tokens"):
        D.logprob_scores([[-1.0], []])


def test_layer_spike_flags_a_lone_peak_only():
    spike = D.layer_spike([0.60, 0.62, 0.80, 0.61, 0.60], margin=0.05)
    assert spike.spike and spike.best_layer == 2 and spike.neighbours_mean == pytest.approx(0.615)
    assert not D.layer_spike([0.60, 0.70, 0.75, 0.72], margin=0.05).spike
    assert not D.layer_spike([0.60, 0.62, 0.80, 0.61, 0.60], margin=0.2).spike
    edge = D.layer_spike({4: 0.9, 8: 0.7, 12: 0.6})  # neighbours in layer order; the first layer has one
    assert edge.best_layer == 4 and edge.neighbours_mean == pytest.approx(0.7) and edge.spike
    wide = D.layer_spike([0.5, 0.79, 0.8, 0.5, 0.5], radius=2)  # (0.5 + 0.79 + 0.5 + 0.5) / 4 away
    assert wide.neighbours_mean == pytest.approx(0.5725) and wide.spike
    single = D.layer_spike({3: 0.9})
    assert not single.spike and math.isnan(single.neighbours_mean)


def test_detector_report_gathers_the_registered_metrics():
    (cs, cy), (vs, vy), (ts, ty) = _noisy(300, 10), _noisy(300, 11), _noisy(300, 12)
    rep = D.detector_report(ts, ty, control=(cs, cy), validation=(vs, vy), n_boot=100, seed=1)
    m = rep.metrics()
    assert set(m) == set(M.metrics_in("detect")) | {n for n in M.metrics_in("selective") if n.startswith("selective")}
    assert m["detect_auroc"] == pytest.approx(roc_auc_score(ty, ts))
    assert m["detect_auprc_wrong"] == pytest.approx(average_precision_score(1 - ty, -ts))
    assert m["detect_recall_at_fpr"] == D.flag_at_threshold(ts, ty, D.threshold_at_fpr(cs, cy, 0.01)).recall
    assert m["detect_ece"] == D.calibrated_ece(vs, vy, ts, ty)
    assert m["selective_accuracy_100"] == pytest.approx(ty.mean())
    assert m["detect_prr"] == pytest.approx(D.prediction_rejection_ratio(ts, ty)) and m["detect_prr"] > 0
    bare = D.detector_report(ts, ty, n_boot=10).metrics()  # no control or validation split
    assert "detect_ece" not in bare and "detect_recall_at_fpr" not in bare and "detect_auroc" in bare


def test_detector_metrics_are_registered_with_directions_and_chance():
    assert M.METRICS["detect_auroc"].chance == 0.5 and M.METRICS["detect_prr"].chance == 0.0
    assert M.lower_is_better("detect_ece") and M.lower_is_better("detect_aurc")
    assert not M.lower_is_better("detect_auroc") and "detect_auroc" in M.headlines("detect")
    assert M.fmt("detect_prr", 0.5714) == "0.571" and M.fmt("detect_auroc", 0.75, percent=True) == "75.00"


def test_bootstrap_resamples_do_not_depend_on_the_chunk_size():
    """Large inputs are resampled in chunks (bounded memory); the resamples are the same as in one piece."""
    whole = np.concatenate(list(D._bootstrap_counts(50, 10, 3)))
    chunked = np.concatenate(list(D._bootstrap_counts(50, 10, 3, max_cells=150)))  # 3 resamples a chunk
    assert np.array_equal(whole, chunked) and (whole.sum(1) == 50).all()


def test_separation_by_hand_and_scale_free():
    # correct 3, 5 (mean 4, var 1); wrong 0, 2 (mean 1, var 1): pooled sd 1, d' = 3
    s, y = np.array([3.0, 5.0, 0.0, 2.0]), np.array([1, 1, 0, 0])
    assert D.separation(s, y) == pytest.approx(3.0)
    assert D.separation(10 * s - 7, y) == pytest.approx(3.0)  # a probe's scale and offset do not matter
    assert D.separation(-s, y) == pytest.approx(-3.0)
    assert D.separation([1.0, 1.0, 0.0, 0.0], y) == math.inf  # constant classes, apart
    assert math.isnan(D.separation([1.0, 2.0], [1, 1]))
