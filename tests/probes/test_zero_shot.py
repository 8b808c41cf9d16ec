"""Zero-shot contrast scores against a per-text, unpadded reference computed in the test."""

from __future__ import annotations

import pytest
import torch

from veracity.probes.zero_shot import contrast_scores, zero_shot_accuracy

PAIRS = [("Question: Is the sky blue?\nAnswer: Yes", "Question: Is the sky blue?\nAnswer: No"),
         ("Question: Can fish fly?\nAnswer: Yes", "Question: Can fish fly?\nAnswer: No"),
         ("Passage text here.\n\nQuestion: is water wet?\nAnswer: Yes", "Passage text here.\n\nQuestion: is water wet?\nAnswer: No")]


def _ref_logprob(lm, text: str, k: int) -> float:
    ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(input_ids=ids).logits.float(), -1)[0]
    return sum(float(lp[t - 1, ids[0, t]]) for t in range(k, ids.shape[1]))


def _check(lm):
    xp, xm = [p for p, _ in PAIRS], [m for _, m in PAIRS]
    got = contrast_scores(lm, xp, xm, batch_size=2)
    for i, (a, b) in enumerate(PAIRS):
        ia, ib = lm.tokenizer(a)["input_ids"], lm.tokenizer(b)["input_ids"]
        k = next(j for j in range(min(len(ia), len(ib))) if ia[j] != ib[j])
        ref = _ref_logprob(lm, a, k) - _ref_logprob(lm, b, k)
        assert abs(float(got[i]) - ref) < 1e-3, (i, float(got[i]), ref)
    return got


def test_multi_token_answers_on_tiny_llama(tiny_llama):
    _check(tiny_llama)  # byte tokenizer: " Yes"/" No" span several tokens -> full-text path


@pytest.mark.real
def test_single_token_answers_on_smollm2(smollm2):
    got = _check(smollm2)  # " Yes"/" No" are single tokens -> one forward of the stem
    assert got.shape == (3,)


def test_zero_shot_accuracy_raw_and_calibrated():
    s = torch.tensor([2.0, 1.0, 0.5, 3.0])  # the model always prefers "Yes"
    r = zero_shot_accuracy(s, [1, 0, 0, 1])
    assert r["accuracy"] == 0.5 and r["accuracy_calibrated"] == 1.0
