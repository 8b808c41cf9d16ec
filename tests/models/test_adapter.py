"""`ModelAdapter` against plain one-sequence forwards (no padding, no cache), on two tiny architectures."""

from __future__ import annotations

import pytest
import torch

from veracity.models import load
from veracity.models.adapter import ModelAdapter
from veracity.models.scoring import score_requests_reference

SEQS = [[5, 17, 99, 30, 41], [20, 3], [42, 42, 100, 8, 9, 11, 12], [7]]


def _plain(model, seq: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0].float(), -1)


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gemma3"])
def lm(request):
    return load(request.param, device="cpu")


def test_next_token_logprobs_equal_unpadded_forwards(lm):
    got = lm.adapter.next_token_logprobs(SEQS, batch_size=3)  # left padding across two batches
    assert got.shape == (len(SEQS), lm.model.config.vocab_size) and got.dtype == torch.float32
    for i, s in enumerate(SEQS):
        torch.testing.assert_close(got[i], _plain(lm.model, s)[-1], atol=1e-5, rtol=0)


def test_position_logprobs_equal_unpadded_forwards(lm):
    start = [2, 1, 4, 1]
    got = lm.adapter.position_logprobs(SEQS, start, batch_size=2)  # right padding, longest first
    for g, s, k in zip(got, SEQS, start):
        torch.testing.assert_close(g, _plain(lm.model, s)[k - 1:], atol=1e-5, rtol=0)


def test_loglik_equals_the_one_forward_reference(lm):
    reqs = [(s[:2] or s, s[2:]) for s in SEQS] + [([5, 17], [99]), ([5, 17], [])]
    got = lm.adapter.loglik(reqs, batch_size=2)
    want = score_requests_reference(lm.model, reqs)
    assert got == pytest.approx(want, abs=1e-4)
    by_hand = float(_plain(lm.model, [5, 17, 99, 30, 41])[1:4].gather(1, torch.tensor([[99], [30], [41]])).sum())
    assert got[0] == pytest.approx(by_hand, abs=1e-4)


def test_pad_and_generate_follow_the_pad_rule(lm):
    a = lm.adapter
    assert isinstance(a, ModelAdapter) and a.pad_id == lm.tokenizer.pad_token_id
    ids, mask, pos = a.pad([[1, 2, 3], [4]], side="left")
    assert ids[1].tolist() == [a.pad_id, a.pad_id, 4] and pos[1].tolist() == [0, 0, 0] and mask[1].tolist() == [0, 0, 1]
    new = a.generate([[5, 17, 99], [20, 3]], max_new_tokens=4, batch_size=2)
    for s, n in zip([[5, 17, 99], [20, 3]], new):  # batched greedy = one prompt at a time
        one = lm.model.generate(input_ids=torch.tensor([s]), max_new_tokens=4, do_sample=False,
                                pad_token_id=a.pad_id)[0, len(s):].tolist()
        eos = lm.tokenizer.eos_token_id
        assert n == (one[:one.index(eos)] if eos in one else one)
