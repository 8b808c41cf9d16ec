"""The fold evaluator's kept detector (`FoldPlan.detector`, `--detector`): the belief it reports for a method's
answers equals the detector's formula on the hidden states of a plain second forward over the same prompt and
answer under the same hooks; judged answers do not change; a detector of another model or a bad path is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def make_detector(lm, seed: int = 0, threshold: float = 0.0):
    """A seeded random three-component detector of `lm` (layers 0 and 1, three positions)."""
    from veracity.evaluate.detector import Detector

    g = np.random.default_rng(seed)
    d = lm.arch.hidden_size
    return Detector([0, 1, 1], ["pre", "answer_last", "answer_mean"], g.normal(size=(3, d)) / np.sqrt(d),
                    g.normal(size=3) * 0.1, g.normal(size=(3, d)) * 0.1, g.uniform(0.5, 2.0, size=(3, d)),
                    g.uniform(0.5, 1.5, size=3), 0.1, threshold, {"method": "platt", "a": 1.3, "b": -0.2},
                    lm.fingerprint, "test")


def _cut(tok, new: list[int], stop) -> list[int]:
    """Tokens up to EOS and up to the first prefix the stop rule accepts (what the answer is)."""
    if tok.eos_token_id in new:
        new = new[:new.index(tok.eos_token_id)]
    for k in range(1, len(new) + 1):
        if stop(tok.decode(new[:k], skip_special_tokens=True)):
            return new[:k]
    return new


def reference_beliefs(pm, questions, det, max_new_tokens: int, stop) -> tuple[list[float], list[float], list[str]]:
    """Independent of `capture.generation`: plain `generate()` answers (`generate_greedy`), then one forward of
    prompt + answer per question under the method's hooks, layer outputs read by fresh hooks, the positions
    picked by hand and the detector's formula written out (standardise, dot, stack, Platt)."""
    from veracity.capture.generation import char_to_token_span
    from veracity.data.qa import answer_span
    from veracity.methods.scoring import generation_prompts
    from veracity.models.generate import generate_greedy

    lm, tok, fac = pm.lm, pm.lm.tokenizer, pm.factory()
    enc = generation_prompts(pm, questions)
    news = generate_greedy(lm, enc, max_new_tokens=max_new_tokens, batch_size=1, intervention=fac, stop=stop)
    scores, probs, spans = [], [], []
    for prompt, new in zip(enc, news):
        new = _cut(tok, new, stop)
        text = tok.decode(new, skip_special_tokens=True)
        cs, ce, _ = answer_span(text, [])
        a0, a1 = char_to_token_span(tok, new, cs, ce)
        keep: dict[int, torch.Tensor] = {}
        with fac("generate"):
            hs = [lm.arch.layer(lm.model, i).register_forward_hook(
                lambda m, a, o, i=i: keep.__setitem__(i, (o[0] if isinstance(o, tuple) else o)[0].float()))
                for i in range(lm.arch.n_layers)]
            try:
                with torch.no_grad():
                    lm.model(torch.tensor([prompt + new]))
            finally:
                for h in hs:
                    h.remove()
        P = len(prompt)
        at = {"pre": [P - 1], "answer_last": [P + a1 - 1], "answer_mean": list(range(P + a0, P + a1))}
        s = det.stack_bias
        for k, (layer, pos) in enumerate(zip(det.layers, det.positions)):
            x = keep[layer][at[pos]].double().mean(0).numpy()
            s += det.stack_weights[k] * (((x - det.means[k]) / det.scales[k]) @ det.weights[k] + det.biases[k])
        scores.append(float(s))
        probs.append(float(1 / (1 + np.exp(-(det.calibration["a"] * s + det.calibration["b"])))))
        spans.append(text[cs:ce])
    return scores, probs, spans


@pytest.fixture(scope="module")
def steered(tiny_llama):
    """tiny-llama under a seeded residual steer at layer 0, every position steered (so a full forward matches)."""
    from veracity.methods.fold import as_method
    from veracity.steer.residual import ResidualSteer

    g = torch.Generator().manual_seed(3)
    steer = ResidualSteer([0], torch.randn(1, tiny_llama.arch.hidden_size, generator=g), 2.0)
    return as_method(tiny_llama, steer, generate_positions="all")


@pytest.mark.parametrize("judged", [False, True], ids=["short-answers", "judged-answers"])
def test_belief_equals_the_detector_on_a_second_forward(steered, data_dir, judged):
    from veracity.data import load_truthfulqa
    from veracity.data.qa import first_line_done
    from veracity.evaluate.generation import answer_ended
    from veracity.methods.fold import FoldPlan, evaluate

    items = load_truthfulqa(data_dir)[:5]
    det = make_detector(steered.lm)
    plan = FoldPlan(measures=("judge",) if judged else ("mc",), max_new_tokens=10, detector_tokens=8, batch_size=3,
                    detector=det)
    ev = evaluate(steered, items, plan)
    tokens, stop = (10, answer_ended) if judged else (8, first_line_done)
    scores, probs, spans = reference_beliefs(steered, [it.question for it in items], det, tokens, stop)
    recs = [ev.verdicts[it.index] for it in items]
    assert [r["detector_answer"] for r in recs] == spans
    np.testing.assert_allclose([r["detector_score"] for r in recs], scores, rtol=0, atol=1e-4)
    np.testing.assert_allclose([r["detector_belief"] for r in recs], probs, rtol=0, atol=1e-5)
    m = ev.metrics()
    assert m["detector_belief"] == pytest.approx(np.mean(probs), abs=1e-5)
    assert m["detector_flagged"] == pytest.approx(np.mean(np.asarray(scores) < det.threshold))
    assert [r["detector_flagged"] for r in recs] == [s < det.threshold for s in scores]
    answers = [q.answer for q in ev.result.questions]
    if judged:  # the judged answers are the plain generation's, detector or not
        plain = evaluate(steered, items, FoldPlan(measures=("judge",), max_new_tokens=10, batch_size=3))
        assert answers == [q.answer for q in plain.result.questions]
        assert "detector_belief" not in plain.metrics() and not plain.verdicts
    else:
        assert answers == [None] * len(items)  # short answers are the detector's, not judged ones


def test_detect_score_and_the_fold_share_one_verdict(tiny_llama):
    """`detect-score`'s per-answer verdict and the fold's come from `Detector.verdicts`: scores, P(correct) and
    the flag at the threshold, checked against the formula."""
    det = make_detector(tiny_llama, threshold=0.05)
    feats = torch.randn(4, 5, tiny_llama.arch.n_layers, tiny_llama.arch.hidden_size, generator=torch.Generator().manual_seed(0))
    s, p, f = det.verdicts(feats)
    np.testing.assert_allclose(s, det.score_features(feats))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-(1.3 * s - 0.2))))
    assert list(f) == [x < 0.05 for x in s]


def test_a_detector_of_another_model_or_a_bad_path_is_refused(tiny_llama, tmp_path):
    from veracity.evaluate.detector import load_detector_for
    from veracity.methods.fold import FoldPlan
    from veracity.models import load
    from veracity.validation import BadInput

    make_detector(tiny_llama).save(tmp_path / "det")
    assert load_detector_for(tmp_path / "det", tiny_llama).identity() == make_detector(tiny_llama).identity()
    assert load_detector_for(None, tiny_llama) is None
    with pytest.raises(BadInput, match="fingerprint"):
        load_detector_for(tmp_path / "det", load("tiny-qwen2", device="cpu"))
    with pytest.raises(BadInput, match="--detector"):
        load_detector_for(tmp_path / "nosuch")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.safetensors").write_bytes(b"x")
    with pytest.raises(BadInput, match="--detector"):
        load_detector_for(tmp_path / "bad")
    with pytest.raises(BadInput, match="detector"):
        FoldPlan(detector=str(tmp_path / "det"))  # a path is the study's to load, once
    assert make_detector(tiny_llama, seed=1).identity() != make_detector(tiny_llama).identity()
