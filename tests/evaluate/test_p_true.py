"""P(True): the two continuation log-probs against a hand-written full forward, batch-independent."""

from __future__ import annotations

import math

import pytest
import torch

from veracity.evaluate.p_true import CHOICES, p_true_prompt, p_true_scores


def by_hand(lm, prompt: str, word: str) -> float:
    tok = lm.tokenizer
    pre = tok(prompt)["input_ids"]
    cont = tok(word, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([pre + cont])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(float(lp[len(pre) - 1 + k, t]) for k, t in enumerate(cont))


def test_p_true_equals_a_full_forward(tiny_llama, one_thread):
    qs = ["Which country is Lyon in?", "What is the chemical symbol of gold?", "Who wrote Emma?"]
    ans = ["France", "Ag", "Jane Austen, in 1815"]
    got = p_true_scores(tiny_llama, qs, ans, batch_size=2)
    for q, a, g in zip(qs, ans, got):
        prompt = p_true_prompt(q, a)
        assert q in prompt and a in prompt and prompt.endswith("The proposed answer is:")
        lt, lf = by_hand(tiny_llama, prompt, CHOICES[0]), by_hand(tiny_llama, prompt, CHOICES[1])
        assert g.logp_true == pytest.approx(lt, abs=1e-4) and g.logp_false == pytest.approx(lf, abs=1e-4)
        assert g.score == pytest.approx(lt - lf, abs=2e-4)
        assert g.p_true == pytest.approx(math.exp(lt) / (math.exp(lt) + math.exp(lf)), abs=1e-4)
    one = [p_true_scores(tiny_llama, [q], [a], batch_size=1)[0] for q, a in zip(qs, ans)]
    assert [o.score for o in one] == pytest.approx([g.score for g in got], abs=1e-5)


def test_p_true_rejects_unpaired_lists(tiny_llama):
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        p_true_scores(tiny_llama, ["a?", "b?"], ["x"])
