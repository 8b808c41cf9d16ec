"""The metrics registry (veracity.metrics): True*Info defined once, fold aggregation by each metric's rule,
labels and directions for reports."""

from __future__ import annotations

import math

import pytest

from veracity import metrics as M
from veracity.validation import BadInput


def test_true_info_is_the_product_of_fold_means_not_the_mean_of_products():
    folds = [{"true": 0.2, "info": 1.0, "true_info": 0.2, "mc2": 0.4},
             {"true": 0.6, "info": 0.5, "true_info": 0.3, "mc2": 0.6}]
    s = M.aggregate_folds(folds)
    assert s["true"] == pytest.approx(0.4) and s["info"] == pytest.approx(0.75)
    assert s["true_info"] == pytest.approx(0.4 * 0.75)  # 0.30, not the mean of the fold products (0.25)
    assert s["mc2"] == pytest.approx(0.5)
    assert list(s) == ["true", "info", "true_info", "mc2"]  # the fold dicts' order is kept


def test_aggregate_keeps_only_keys_every_fold_has_as_numbers():
    s = M.aggregate_folds([{"kl": 1.0, "x": 2.0, "n": float("nan")}, {"kl": 3.0, "n": 1.0}])
    assert s == {"kl": 2.0}
    assert M.aggregate_folds([]) == {}
    assert M.aggregate_folds([{"true": 0.5}]) == {"true": 0.5}  # no info: no True*Info


def test_fold_sd_is_numpys_sample_sd_of_keys_every_fold_has():
    import numpy as np

    folds = [{"mc2": 0.4, "kl": 1.0, "x": 1.0, "n": float("nan")}, {"mc2": 0.7, "kl": 3.0, "n": 1.0},
             {"mc2": 0.5, "kl": 2.0, "x": 3.0, "n": 2.0}]
    s = M.fold_sd(folds)
    assert s == {"mc2_sd": pytest.approx(np.std([0.4, 0.7, 0.5], ddof=1)), "kl_sd": pytest.approx(1.0)}
    assert list(M.fold_sd(folds, ["kl"])) == ["kl_sd"] and M.fold_sd(folds[:1]) == {}


def test_compare_interventions_summary_is_the_registry_rule_with_its_spread():
    from veracity.experiments.interventions import summarise_method

    rows = [{"metrics": {"true": 0.2, "info": 1.0, "true_info": 0.2, "mc2": 0.4}, "costs": {"infer_s": 3.0}},
            {"metrics": {"true": 0.6, "info": 0.5, "true_info": 0.3, "mc2": 0.6}, "costs": {"infer_s": 5.0}}]
    s = summarise_method(rows)
    assert s["true_info"] == pytest.approx(0.4 * 0.75) and s["infer_s"] == 4.0 and "infer_s_sd" not in s
    assert s["mc2_sd"] == pytest.approx(math.sqrt(0.02))
    assert list(s)[:4] == ["info", "info_sd", "mc2", "mc2_sd"]  # each metric beside its spread, costs last


def test_registry_labels_directions_and_chance():
    assert M.label("true_info") == "True*Info" and M.label("unknown_key") == "unknown_key"
    assert M.lower_is_better("kl") and M.lower_is_better("ce_loss") and not M.lower_is_better("mc2")
    assert M.METRICS["binary_ab_average"].chance == 0.5
    with pytest.raises(ValueError, match="already registered"):
        M.register_metric(M.Metric("mc1", "x", "fraction", True))
    assert M.true_info(None, 0.5) is None and math.isclose(M.true_info(0.5, 0.5), 0.25)


def test_iti_summarise_is_the_registry_rule():
    from veracity.methods.fold import summarise

    folds = [{"true": 0.3, "info": 0.9, "true_info": 0.27, "kl": 1.0},
             {"true": 0.1, "info": 0.7, "true_info": 0.07, "kl": 2.0}]
    s = summarise(folds)
    assert s["true_info"] == pytest.approx(0.2 * 0.8) and s["kl"] == pytest.approx(1.5)
    assert list(s)[0] == "true_info"  # the summary keys' order, as before


def test_sweeps_rank_every_metric_in_the_registrys_direction():
    """The ITI sweep used its own ("kl", "ce_loss") list and ranked degenerate_rate, sycophancy flips and
    HONEST backwards; every rankable metric now picks the better of two cells by its registered direction."""
    from veracity.experiments.iti_sweep import pick_best
    from veracity.metrics import METRICS, better_sign, rankable_metrics

    assert set(rankable_metrics()) == {n for n, m in METRICS.items() if m.higher_is_better is not None}
    for name in rankable_metrics():
        grid = {(1.0, 8): {name: 0.2}, (2.0, 8): {name: 0.6}}
        want = (2.0, 8) if METRICS[name].higher_is_better else (1.0, 8)
        assert pick_best(grid, name) == want, name
        assert better_sign(name) == (1 if METRICS[name].higher_is_better else -1)
    for bad in ("nosuch", "mean_words"):  # unknown; descriptive (no direction)
        with pytest.raises(BadInput, match="--metric"):
            pick_best({(1.0, 8): {bad: 0.1}}, bad)


def test_pareto_front_by_hand_directions_from_the_registry():
    # mc2 higher is better, kl lower is better
    pts = [{"mc2": 0.30, "kl": 0.0},   # plain model: nothing cheaper
           {"mc2": 0.35, "kl": 0.1},   # front
           {"mc2": 0.33, "kl": 0.2},   # dominated by the second
           {"mc2": 0.40, "kl": 0.5},   # front (best mc2)
           {"mc2": 0.40, "kl": 0.5},   # an equal point is on it too
           {"mc2": 0.50},              # no kl: never on the front, dominates nothing
           {"mc2": 0.20, "kl": 0.0}]   # dominated by the plain model (same cost, lower mc2)
    assert M.pareto_front(pts, ("mc2", "kl")) == [True, True, False, True, True, False, False]
    # a broken model's point (half its answers degenerate) is never on the front and dominates nothing
    broke = [{"mc2": 0.30, "kl": 0.0, "degenerate_rate": 0.1}, {"mc2": 0.50, "kl": 0.0, "degenerate_rate": 0.95},
             {"mc2": 0.45, "kl": 0.3, "degenerate_rate": 0.1}]
    assert M.pareto_front(broke, ("mc2", "kl")) == [True, False, True]
    rows = M.gain_cost_table(broke, gains=["mc2"], costs=["kl"])
    assert [r["broken"] for r in rows] == [None, "degenerate_rate 0.95 >= 0.5", None]
    # boolq is higher-better: with kl the trade-off flips which points win
    assert M.pareto_front([{"boolq_accuracy": 0.6, "kl": 0.1}, {"boolq_accuracy": 0.5, "kl": 0.05},
                           {"boolq_accuracy": 0.4, "kl": 0.2}], ("boolq_accuracy", "kl")) == [True, True, False]
    with pytest.raises(BadInput):
        M.pareto_front(pts, ("mc2", "mean_words"))  # no direction: cannot rank


def test_gain_cost_table_long_rows():
    pts = [{"series": "plain", "label": "plain", "reference": "plain model", "mc2": 0.3, "kl": 0.0, "ce_loss": 2.0},
           {"series": "caa L3", "label": "a=1", "reference": None, "mc2": 0.35, "mc2_sd": 0.01, "kl": 0.1,
            "ce_loss": 1.9, "refusal_rate": 0.1},
           {"series": "caa L3", "label": "a=2", "reference": None, "mc2": 0.32, "kl": 0.3, "ce_loss": 2.1}]
    assert M.gain_axes(pts) == ["mc2"]
    assert M.cost_axes(pts) == ["ce_loss", "kl"]  # refusal rate has no direction: not a cost axis
    rows = M.gain_cost_table(pts)
    assert len(rows) == 6
    kl = [r for r in rows if r["cost_metric"] == "kl"]
    assert [r["pareto"] for r in kl] == [True, True, False]
    assert [r["gain_sd"] for r in kl] == [None, 0.01, None]
    ce = [r for r in rows if r["cost_metric"] == "ce_loss"]
    assert [r["pareto"] for r in ce] == [False, True, False]  # the second point is better on both
    assert ce[1] == {"series": "caa L3", "label": "a=1", "reference": None, "gain_metric": "mc2", "gain": 0.35,
                     "gain_sd": 0.01, "cost_metric": "ce_loss", "cost": 1.9, "pareto": True, "broken": None}
