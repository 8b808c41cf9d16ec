"""`score_requests`' one-token path against plain unpadded forwards, one request at a time."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from veracity.models import load
from veracity.models.scoring import SharedPrefix, score_requests, score_requests_reference

HEAD = (1, 5, 17, 99)  # a shared head most prefixes start with (the instruction + primer in real use)
ONE = [(HEAD + (30,), [41]), (HEAD + (30,), [8]), (HEAD + (30, 41, 8, 9), [11]), (HEAD, [12]),
       (HEAD + (7, 7), [40]), ((20, 3, 7), [9]), ((20, 3, 7), [10]), ((42,), [5]), ((42, 42, 100, 8, 9, 11, 12), [3])]
OTHER = [(HEAD + (7, 7), [40, 41]),  # one prefix with a one-token and a longer continuation: the cached path
         ((20, 3, 7), []), ((50, 60), [70, 80, 90])]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def lm(request):
    return load(request.param, device="cpu")


def _shift(model):
    """An intervention factory that moves every token's embedding, unevenly across dimensions (a layer norm would
    undo a constant), so it changes what the last position reads."""
    @contextlib.contextmanager
    def f(phase):
        h = model.get_input_embeddings().register_forward_hook(lambda m, i, o: o + torch.linspace(-1, 1, o.shape[-1]))
        try:
            yield
        finally:
            h.remove()
    return f


def _last_lp(model, prefix, intervention=None) -> torch.Tensor:
    with (intervention("mc") if intervention else contextlib.nullcontext()), torch.no_grad():
        return torch.log_softmax(model(input_ids=torch.tensor([list(prefix)])).logits[0, -1].float(), -1)


@pytest.mark.parametrize("head", [False, True], ids=["left-padded-whole", "right-padded-after-head"])
@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "intervention"])
def test_one_token_batched_read_equals_one_forward_per_request(lm, head, hooked):
    model = lm.model
    iv = _shift(model) if hooked else None
    reqs = ONE + OTHER
    got = score_requests(model, reqs, batch_size=3, intervention=iv, intervene_prompt=True, pad_id=7,
                         shared=SharedPrefix(HEAD) if head else None)
    for (p, c), g in zip(ONE, got):
        assert g == pytest.approx(float(_last_lp(model, p, iv)[c[0]]), abs=1e-5)
    # the other requests keep today's path: the one-forward reference (the prompt under the hook too)
    assert got[len(ONE):] == pytest.approx(score_requests_reference(model, OTHER, intervention=iv), abs=1e-4)
    assert got[len(ONE) + 1] == 0.0
    if hooked:  # the hook acts on the prompt: the numbers move
        plain = score_requests(model, ONE, batch_size=3, shared=SharedPrefix(HEAD) if head else None)
        assert max(abs(a - b) for a, b in zip(plain, got)) > 1e-3


def test_one_token_read_without_intervene_prompt_ignores_the_hook(lm):
    """As today: the intervention enters the continuation forwards only, and a one-token continuation has none."""
    got = score_requests(lm.model, ONE, batch_size=4, intervention=_shift(lm.model))
    for (p, c), g in zip(ONE, got):
        assert g == pytest.approx(float(_last_lp(lm.model, p)[c[0]]), abs=1e-5)


def test_one_token_prefixes_share_forwards_and_per_token(lm):
    """Seven distinct one-token prefixes, three per forward: three forwards in all (no prefix runs alone), and
    per_token gives each request its one-element fp32 array."""
    calls = []
    h = lm.model.register_forward_pre_hook(lambda m, a, k: calls.append(1), with_kwargs=True)
    try:
        got = score_requests(lm.model, ONE, batch_size=3, per_token=True)
    finally:
        h.remove()
    prefixes = {p for p, _ in ONE}
    assert len(calls) == -(-len(prefixes) // 3)
    for (p, c), g in zip(ONE, got):
        assert g.dtype == np.float32 and g.shape == (1,)
        assert float(g[0]) == pytest.approx(float(_last_lp(lm.model, p)[c[0]]), abs=1e-5)


LONG = [(HEAD + (30,), [41, 8, 9, 11]), (HEAD + (30,), [12]), (HEAD + (30,), [40, 41]),
        (HEAD + (30,), [3, 4, 5, 6, 7, 8, 9]), ((20, 3, 7), [9, 10, 11]), ((20, 3, 7), [12, 13])]


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2", "tiny-gemma3-softcap"])
def test_head_at_reads_the_plain_logits_at_the_gathered_positions(alias):
    """Only the gathered positions go through the LM head, and what comes back is the full forward's logits
    there, the model's own post-head code included (Gemma-2-style soft-capping set on a tiny Gemma 3)."""
    from veracity.models.scoring import head_at
    from veracity.models.tiny import build_tiny

    model, _ = build_tiny(alias.replace("-softcap", ""))
    if alias.endswith("softcap"):
        model.config.final_logit_softcapping = 2.0  # small, so the capping visibly bends the logits
    ids = torch.tensor([[5, 17, 30, 41, 8, 9], [5, 17, 99, 12, 0, 0]])
    rows, cols = [0, 0, 0, 1, 1], [0, 2, 5, 1, 3]
    with torch.no_grad():
        full = model(input_ids=ids).logits
        with head_at(model, rows, cols) as hit:
            got = model(input_ids=ids).logits
    assert hit == [True] and got.shape == (1, len(rows), full.shape[-1])
    torch.testing.assert_close(got[0], full[rows, cols], atol=1e-5, rtol=1e-5)
    if alias.endswith("softcap"):
        assert float(full.abs().max()) <= 2.0


@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "intervention"])
def test_cached_continuations_equal_one_forward_per_request(lm, hooked):
    """Several multi-token continuations per prefix (the MC case), one-token ones beside them: the gathered head
    gives each the one-forward reference's log-probability, per token too."""
    iv = _shift(lm.model) if hooked else None
    for shared in (None, SharedPrefix(HEAD)):
        got = score_requests(lm.model, LONG, batch_size=3, intervention=iv, intervene_prompt=True, pad_id=7,
                             shared=shared, per_token=True)
        ref = score_requests_reference(lm.model, LONG, per_token=True, intervention=iv)
        for g, r, (_, c) in zip(got, ref, LONG):
            assert g.shape == (len(c),)
            np.testing.assert_allclose(g, r, atol=1e-4)


def test_head_at_falls_back_when_the_forward_skips_the_output_embeddings(lm, monkeypatch):
    """A model whose forward never calls what get_output_embeddings returns: the flag stays False and the
    caller indexes the full logits, so the numbers are unchanged."""
    reqs = LONG
    want = score_requests(lm.model, reqs, batch_size=4)
    monkeypatch.setattr(type(lm.model), "get_output_embeddings", lambda self: torch.nn.Identity())
    got = score_requests(lm.model, reqs, batch_size=4)
    assert got == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_labelled_logprobs_equal_the_full_forward_and_the_models_own_loss(alias):
    """The trainers' answer likelihoods with the head on labelled positions only: equal to the log-softmax of the
    full logits at those positions, summed per row (a row with no label sums to 0), the mean equal to the model's
    own `labels=` loss, and the gradient through a vector added to the embeddings equal too."""
    from veracity.finetune.train import lm_loss
    from veracity.models.scoring import labelled_logprob_sums
    from veracity.models.tiny import build_tiny

    model, _ = build_tiny(alias)
    ids = torch.tensor([[5, 17, 30, 41, 8, 9, 0], [5, 17, 99, 12, 13, 0, 0], [5, 6, 7, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    labels = torch.full_like(ids, -100)
    labels[0, 3:6] = ids[0, 3:6]
    labels[1, 2:5] = ids[1, 2:5]  # row 2: nothing labelled
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    v = torch.zeros(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.n_embd,
                    requires_grad=True)
    h = model.get_input_embeddings().register_forward_hook(lambda m, i, o: o + v)
    try:
        got = labelled_logprob_sums(model, batch)
        (g_got,) = torch.autograd.grad(got.sum(), [v])
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        tgt = labels[:, 1:]
        want = (lp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)).sum(-1)
        (g_want,) = torch.autograd.grad(want.sum(), [v])
    finally:
        h.remove()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
    assert float(got[2].detach()) == 0.0
    torch.testing.assert_close(g_got, g_want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        own = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        assert float(lm_loss(model, batch)) == pytest.approx(float(own), abs=1e-5)
