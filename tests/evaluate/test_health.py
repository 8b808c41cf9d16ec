"""Generation health reaches every answer set: the driver's fold metrics and summary, ITI validate's fold
metrics (experiments.iti_validate), and equals health.generation_health of the answers computed by hand."""

from __future__ import annotations

import pytest

from veracity.data.truthfulqa import load_truthfulqa
from veracity.evaluate import health
from veracity.experiments import truthfulqa as driver
from veracity.evaluate.judges import CallableJudge


@pytest.fixture(scope="module")
def items(data_dir):
    return load_truthfulqa(data_dir)[:4]


def test_driver_fold_health_equals_hand(tiny_llama, items):
    j = CallableJudge(lambda q, a: [0.7] * len(a), "info")
    res = driver.evaluate_fold(tiny_llama, items, [0, 1, 2], metrics=["judge"], info_judge=j, max_new_tokens=12,
                               batch_size=2)
    answers = [q.answer for q in res.questions]
    want = health.generation_health(answers)
    assert res.metrics.health == want and want["n"] == 3
    for k in driver.HEALTH_KEYS:
        assert getattr(res.metrics, k) == want[k]
    # by hand for one figure: mean word tokens
    assert want["mean_words"] == sum(len(health.answer_tokens(a)) for a in answers) / 3
    s = driver.summarize([res.metrics])
    assert all(s[k] == want[k] for k in driver.HEALTH_KEYS if want[k] is not None)
    assert "refusals" in driver.summary_line(s)


def test_iti_validate_fold_metrics_carry_health(tiny_llama, items, monkeypatch):
    from veracity.methods.fold import FoldEvalConfig, evaluate_intervention, summarise

    r = evaluate_intervention(tiny_llama, items[:2], None, FoldEvalConfig(judge="none"))
    assert "refusal_rate" not in r["metrics"]  # no answers generated, no health
    from veracity.evaluate import judges as jg

    monkeypatch.setattr(jg, "get_judge", lambda spec, kind, *a, **k: CallableJudge(lambda q, a: [0.2] * len(a), kind))
    r = evaluate_intervention(tiny_llama, items[:2], None, FoldEvalConfig(judge="local"))
    assert {"refusal_rate", "distinct_2", "mean_longest_repeat", "mean_words", "degenerate_rate"} <= set(r["metrics"])
    want = health.generation_health([a["answer"] for a in r["answers"]])
    assert r["metrics"]["mean_words"] == want["mean_words"]
    assert summarise([r["metrics"]])["degenerate_rate"] == want["degenerate_rate"]
