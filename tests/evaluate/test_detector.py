"""The kept detector (`evaluate.detector`): its files round-trip, a damaged file or another model is refused, its
score is the logistic regression it was built from, and `Detector.watch` scores the answers of a plain
`generate()` call as `veracity detect-score` does, with its hooks gone on exit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from veracity.artifacts import ArtifactError
from veracity.capture.generation import POSITIONS
from veracity.evaluate.detector import Detector, load_detector, score_answers
from veracity.validation import BadInput


def _detector(lm, layers=(0, 1), positions=("answer_last", "pre"), seed=0) -> Detector:
    """A two-component detector of random weights for `lm`, a threshold in the middle of its scores' range."""
    rng = np.random.default_rng(seed)
    d, k = lm.arch.hidden_size, len(layers)
    return Detector(list(layers), list(positions), rng.normal(size=(k, d)), rng.normal(size=k),
                    rng.normal(size=(k, d)), rng.uniform(0.5, 2.0, size=(k, d)), rng.normal(size=k), 0.3, 0.0,
                    {"method": "platt", "a": 0.7, "b": -0.2}, lm.fingerprint, "hand-made", {"test": True})


def _questions(n=4):
    from veracity.data.qa import QAItem

    return [QAItem(f"q{i}", f"What is item number {i}?", "zzqx", ("zzqx",), "file") for i in range(n)]


def test_save_and_load_round_trip(tiny_llama, tmp_path):
    det = _detector(tiny_llama)
    det.save(tmp_path / "det")
    back = load_detector(tmp_path / "det.json")
    for name in ("weights", "biases", "means", "scales", "stack_weights"):  # stored as float32
        np.testing.assert_allclose(getattr(back, name), getattr(det, name).astype(np.float32), rtol=0, atol=0)
    assert (back.layers, back.positions, back.threshold, back.calibration, back.model_fingerprint, back.name,
            back.provenance) == (det.layers, det.positions, det.threshold, det.calibration, det.model_fingerprint,
                                 det.name, det.provenance)
    F = torch.randn(5, len(POSITIONS), tiny_llama.arch.n_layers, tiny_llama.arch.hidden_size)
    np.testing.assert_allclose(back.score_features(F), det.score_features(F), rtol=1e-5, atol=1e-5)


def test_score_is_the_fitted_logistic_regression(tiny_llama):
    """A one-component detector built from a scikit-learn pipeline (standardise, then logistic) gives its
    decision function, and P(correct) is the Platt formula by hand."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    n_layers, d = tiny_llama.arch.n_layers, tiny_llama.arch.hidden_size
    g = torch.Generator().manual_seed(1)
    F = torch.randn(40, len(POSITIONS), n_layers, d, generator=g)
    x = F[:, POSITIONS.index("answer_mean"), 1].double().numpy()
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    sc = StandardScaler().fit(x)
    lr = LogisticRegression(max_iter=1000).fit(sc.transform(x), y)
    det = Detector([1], ["answer_mean"], lr.coef_, lr.intercept_, sc.mean_[None], sc.scale_[None], np.ones(1), 0.0,
                   0.0, {"method": "platt", "a": 2.0, "b": 0.5}, tiny_llama.fingerprint)
    s = det.score_features(F)
    np.testing.assert_allclose(s, lr.decision_function(sc.transform(x)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(det.probability(s), 1 / (1 + np.exp(-(2.0 * s + 0.5))), rtol=1e-12)


def test_another_model_is_refused(tiny_llama):
    from veracity.models import load

    det = _detector(tiny_llama)
    other = load("tiny-qwen2", device="cpu")
    with pytest.raises(BadInput, match="fingerprint"):
        score_answers(other, det, _questions(1))
    with pytest.raises(BadInput, match="fingerprint"):
        with det.watch(other):
            pass


@pytest.mark.parametrize("damage", ["truncated tensors", "bad position", "wrong shape", "no calibration"])
def test_damaged_files_are_refused_by_the_safe_reader(tiny_llama, tmp_path, damage):
    det = _detector(tiny_llama)
    det.save(tmp_path / "det")
    js, st = tmp_path / "det.json", tmp_path / "det.safetensors"
    meta = json.loads(js.read_text())
    if damage == "truncated tensors":
        st.write_bytes(st.read_bytes()[:100])
    elif damage == "bad position":
        meta["positions"] = ["answer_last", "nowhere"]
    elif damage == "wrong shape":
        meta["hidden_size"] = det.hidden_size + 1
    else:
        meta["calibration"] = {"method": "platt"}
    if damage != "truncated tensors":
        js.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError):
        load_detector(tmp_path / "det")


def _plain_generate(lm, items, max_new_tokens):
    """Left-padded greedy `generate()` of the study's prompts (what a user of `watch` would write)."""
    from veracity.data.qa import qa_prompt
    from veracity.models.padding import pad_batch, pad_token_id

    tok = lm.tokenizer
    chat = bool(getattr(tok, "chat_template", None))
    prompts = [list(tok(qa_prompt(tok, it.question), add_special_tokens=not chat)["input_ids"]) for it in items]
    ids, mask, _ = pad_batch(prompts, pad_token_id(tok), "left", "cpu")
    with torch.no_grad():
        return lm.model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=pad_token_id(tok), temperature=None, top_p=None, top_k=None)


def _hook_count(lm) -> int:
    mods = [lm.model] + [lm.arch.layer(lm.model, i) for i in range(lm.arch.n_layers)]
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)


def test_watch_scores_equal_detect_score_and_hooks_go(tiny_llama):
    det = _detector(tiny_llama)
    items = _questions(4)
    before = _hook_count(tiny_llama)
    ref = score_answers(tiny_llama, det, items, max_new_tokens=6)
    with det.watch(tiny_llama, max_new_tokens=6) as w:
        assert _hook_count(tiny_llama) == before + 1 + len(set(det.layers))
        _plain_generate(tiny_llama, items, max_new_tokens=7)  # one token past the cut: every answer token is fed
    assert _hook_count(tiny_llama) == before
    got = w.scores
    assert [a.text for a in got] == [r.answer for r in ref]  # ScoredAnswer.answer: the generated text
    np.testing.assert_allclose([a.score for a in got], [r.score for r in ref], rtol=1e-4, atol=1e-4)
    assert [a.flagged for a in got] == [r.flagged for r in ref]
    np.testing.assert_allclose([a.p_correct for a in got], [r.p_correct for r in ref], rtol=1e-4, atol=1e-4)
    assert [(a.call, a.row) for a in got] == [(0, i) for i in range(4)]


def test_watch_removes_its_hooks_on_an_error(tiny_llama):
    det = _detector(tiny_llama)
    before = _hook_count(tiny_llama)
    with pytest.raises(RuntimeError, match="boom"):
        with det.watch(tiny_llama):
            raise RuntimeError("boom")
    assert _hook_count(tiny_llama) == before


def test_watch_keeps_calls_apart(tiny_llama):
    """Two generate calls inside one watch: each answer is scored from its own call's states, as if alone."""
    det = _detector(tiny_llama)
    items = _questions(3)
    with det.watch(tiny_llama, max_new_tokens=6) as both:
        _plain_generate(tiny_llama, items[:1], 7)
        _plain_generate(tiny_llama, items[1:], 7)
    with det.watch(tiny_llama, max_new_tokens=6) as alone:
        _plain_generate(tiny_llama, items[1:], 7)
    got = both.scores
    assert [(a.call, a.row) for a in got] == [(0, 0), (1, 0), (1, 1)]
    np.testing.assert_allclose([a.score for a in got[1:]], [a.score for a in alone.scores], rtol=1e-6, atol=1e-6)
