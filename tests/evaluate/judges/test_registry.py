"""The judge registry: specs resolve through one table, a new kind is one `register_judge` call."""

from __future__ import annotations

import numpy as np
import pytest

from veracity.evaluate import judges as jg


def test_builtin_specs_resolve_through_the_registry(tmp_path):
    assert set(jg.JUDGES) >= {"local", "hf", "openai", "openai-chat"}
    assert jg.get_judge("none", "truth") is None
    j = jg.get_judge("openai-chat:gpt-x-{kind}@http://localhost:9/v1", "info")
    assert isinstance(j, jg.OpenAIJudge) and j.kind == "info" and "gpt-x-info" in j.describe()["name"]
    with pytest.raises(ValueError, match="unknown judge 'magic:x'"):
        jg.get_judge("magic:x", "truth")
    with pytest.raises(ValueError, match="hf:<model id"):
        jg.get_judge("hf:", "truth")


def test_register_a_judge_kind(monkeypatch):
    monkeypatch.setattr(jg.registry, "JUDGES", dict(jg.registry.JUDGES))  # leave the table as it was

    class Length(jg.Judge):
        def __init__(self, kind, cap):
            self.kind, self.name, self.cap = kind, f"length<{cap}", cap

        def score(self, questions, answers):
            return np.asarray([1.0 if len(a) < self.cap else 0.0 for a in answers])

    jg.registry.register_judge("length", lambda spec, kind, **_: Length(kind, int(spec.split(":")[1])))
    j = jg.registry.get_judge("length:5", "truth")
    assert j.describe() == {"kind": "truth", "name": "length<5"}
    assert j.score(["q", "q"], ["ok", "too long"]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="already registered"):
        jg.registry.register_judge("length", lambda *a, **k: None)
