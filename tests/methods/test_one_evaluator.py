"""Every study's fold evaluation against numbers pinned before the evaluators were merged into one
(`make_pins.py` wrote them): MC, CE, KL and every other float to 1e-6; answers, judge labels, choices and
record layouts exactly. On the tiny model and on smollm2's first questions."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("make_pins", Path(__file__).with_name("make_pins.py"))
make_pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pins)

pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def assert_same(got, want, path: str = "") -> None:
    """`got` equals the pinned `want`: floats to 1e-6, everything else (text, labels, keys, lengths) exactly."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {len(got)} items, pinned {len(want)}"
        for i, (a, b) in enumerate(zip(got, want)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), f"{path}: {got!r} is not a number"
        assert math.isclose(got, want, rel_tol=0, abs_tol=1e-6), f"{path}: {got} != pinned {want}"
    else:
        assert type(got) is type(want) and got == want, f"{path}: {got!r} != pinned {want!r}"


def _check(lm, name: str, data_dir) -> None:
    pins = json.loads(make_pins.PINS.read_text())[name]
    got = json.loads(json.dumps(make_pins.cases(lm, name, data_dir)))  # the same JSON round trip as the pins
    assert sorted(got) == sorted(pins)
    for case in pins:
        assert_same(got[case], pins[case], case)


def test_assert_same_is_strict():
    assert_same({"a": [1.0, "x", True]}, {"a": [1.0 + 5e-7, "x", True]})
    for got in ({"a": [1.0 + 2e-6, "x", True]}, {"a": [1.0, "y", True]}, {"a": [1.0, "x", 1]}, {"a": [1.0, "x"]},
                {"b": [1.0, "x", True]}):
        with pytest.raises(AssertionError):
            assert_same(got, {"a": [1.0, "x", True]})


def test_every_study_matches_its_pins_on_the_tiny_model(tiny_llama, data_dir):
    _check(tiny_llama, "tiny-llama", data_dir)


def test_every_study_matches_its_pins_on_smollm2(smollm2, data_dir):
    _check(smollm2, "smollm2", data_dir)


def test_a_method_without_prompt_scores_as_the_protocol_reference(tiny_llama, data_dir):
    # the evaluator's one MC path, posed in the protocol's own prompt, against evaluate.truthfulqa.score_mc;
    # and the few-shot prompt, which is lm-eval's context, against the protocol's own lm-eval prompt
    from veracity.data import load_truthfulqa
    from veracity.evaluate.truthfulqa import score_mc
    from veracity.methods.fold import FoldPlan, as_method, evaluate
    from veracity.methods.prepare import PreparedMethod, parse_method

    items = load_truthfulqa(data_dir)[:3]
    for proto in ("truthfulqa", "lm-eval"):
        ev = evaluate(as_method(tiny_llama), items, FoldPlan(proto, ("mc",)))
        ref = score_mc(tiny_llama, items, proto)
        assert [r.scores for r in ev.mc] == [pytest.approx(r.scores, abs=1e-6) for r in ref.results]
        assert ev.metrics() == {"mc1": pytest.approx(ref.mc1, abs=1e-9), "mc2": pytest.approx(ref.mc2, abs=1e-9)}
    few = evaluate(PreparedMethod(parse_method("few-shot"), tiny_llama), items, FoldPlan("lm-eval", ("mc",)))
    assert [r.scores for r in few.mc] == [pytest.approx(r.scores, abs=1e-5) for r in ev.mc]
    assert few.prompt_tokens == pytest.approx(ev.prompt_tokens)


def test_legacy_mc_start_needs_iti(tiny_llama, data_dir):
    from veracity.data import load_truthfulqa
    from veracity.methods.fold import FoldPlan, as_method, evaluate

    plan = FoldPlan(measures=("mc",), mc_shift_from="legacy")
    with pytest.raises(ValueError, match="ITI"):
        evaluate(as_method(tiny_llama, make_pins.residual_steer(tiny_llama)), load_truthfulqa(data_dir)[:1], plan)
