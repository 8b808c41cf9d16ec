"""ITI hooks: exactness at alpha=0, effect on every scored token, padding invariance, clean removal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from veracity.capture import pad_batch
from veracity.models import load
from veracity.steer import Intervention, apply, intervention_factory

TEXTS = ["Q: Is the sky blue? A: Yes, on a clear day.", "Q: Hi? A: No.", "Q: What is 2+2? A: Four, of course it is."]


def make_iv(lm, alpha=4.0, seed=0, heads=((0, 1), (1, 0), (3, 2))) -> Intervention:
    a = lm.arch
    g = torch.Generator().manual_seed(seed)
    d = F.normalize(torch.randn(len(heads), a.head_dim, generator=g), dim=-1)
    return Intervention(list(heads), d, torch.rand(len(heads), generator=g) + 0.5, alpha, a.n_layers, a.n_heads,
                        a.head_dim, provenance={"test": True})


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def lm(request):
    return load(request.param, device="cpu")


def logits(lm, texts, side, iv=None, positions="all"):
    ids = [lm.tokenizer(t)["input_ids"] for t in texts]
    x, m, p = pad_batch(ids, lm.tokenizer.pad_token_id, side, "cpu")
    ctx = apply(lm, iv, positions=positions) if iv is not None else torch.no_grad()
    with torch.no_grad(), ctx:
        out = lm.model(input_ids=x, attention_mask=m, position_ids=p).logits
    # real tokens only, in each row's own order
    return [out[i][m[i].bool()] for i in range(len(texts))]


def test_alpha_zero_identical(lm):
    plain = logits(lm, TEXTS, "right")
    zero = logits(lm, TEXTS, "right", make_iv(lm, alpha=0.0))
    for a, b in zip(plain, zero):
        assert torch.equal(a, b)
    # alpha override on apply() too
    with torch.no_grad(), apply(lm, make_iv(lm), alpha=0.0) as used:
        assert used.alpha == 0.0


def test_alpha_changes_every_position(lm):
    plain = logits(lm, TEXTS, "right")
    shifted = logits(lm, TEXTS, "right", make_iv(lm))
    for a, b in zip(plain, shifted):
        # every position moves (not just the last one: the pyvene defect)
        assert ((a - b).abs().amax(-1) > 1e-4).all()


@pytest.mark.parametrize("positions", ["all", "last"])
def test_left_right_padding_agree(lm, positions):
    iv = make_iv(lm)
    left = logits(lm, TEXTS, "left", iv, positions)
    right = logits(lm, TEXTS, "right", iv, positions)
    for a, b in zip(left, right):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_last_shifts_only_last_real_token(lm):
    iv = make_iv(lm)
    plain = logits(lm, TEXTS, "right")
    last = logits(lm, TEXTS, "right", iv, "last")
    for a, b in zip(plain, last):
        torch.testing.assert_close(a[:-1], b[:-1], atol=1e-5, rtol=0)  # causal: earlier tokens untouched
        assert (a[-1] - b[-1]).abs().max() > 1e-4


def test_hooks_removed_even_after_exception(lm):
    iv = make_iv(lm)
    n_before = sum(len(m._forward_pre_hooks) for m in lm.model.modules())
    with pytest.raises(RuntimeError):
        with apply(lm, iv, positions="last"):
            assert sum(len(m._forward_pre_hooks) for m in lm.model.modules()) > n_before
            raise RuntimeError("boom")
    assert sum(len(m._forward_pre_hooks) for m in lm.model.modules()) == n_before
    torch.testing.assert_close(logits(lm, TEXTS[:1], "right")[0], logits(lm, TEXTS[:1], "right")[0])


def test_model_shape_checked(lm):
    iv = make_iv(lm)
    bad = Intervention(iv.heads, iv.directions, iv.sigmas, 1.0, iv.n_layers + 1, iv.n_heads, iv.head_dim)
    with pytest.raises(ValueError, match="fitted for"):
        with apply(lm, bad):
            pass


def test_shift_lands_in_selected_head_slice(tiny_llama):
    lm = tiny_llama
    iv = make_iv(lm, heads=((1, 2),))
    o = lm.arch.attn_out(lm.model, 1)
    seen: list[torch.Tensor] = []
    # a forward hook sees the o_proj input after every pre-hook (ours included) has run
    h = o.register_forward_hook(lambda m, a, out: seen.append(a[0].clone()))
    try:
        ids = torch.tensor([lm.tokenizer("abc")["input_ids"]])
        with torch.no_grad():
            lm.model(input_ids=ids)
            with apply(lm, iv):
                lm.model(input_ids=ids)
    finally:
        h.remove()
    diff = seen[1] - seen[0]
    hd = lm.arch.head_dim
    expect = iv.alpha * iv.sigmas[0] * iv.directions[0]
    torch.testing.assert_close(diff[..., 2 * hd:3 * hd], expect.expand_as(diff[..., 2 * hd:3 * hd]), atol=1e-5, rtol=0)
    assert diff[..., :2 * hd].abs().max() == 0 and diff[..., 3 * hd:].abs().max() == 0


def test_mc_answer_loglik_changes_with_driver_scoring(tiny_llama):
    """Through the evaluation fast path (prompt cached, answers scored with the factory): every answer
    token after the first changes (the first is predicted from the unshifted prompt)."""
    from veracity.evaluate.truthfulqa import make_requests, score_requests

    lm = tiny_llama
    reqs = make_requests(lm.tokenizer, "Q: Is it raining?\nA:", [" Yes it is.", " No, it is sunny."], "lm-eval")
    base = score_requests(lm.model, reqs, per_token=True)
    fac0 = intervention_factory(lm, make_iv(lm, alpha=0.0))
    zero = score_requests(lm.model, reqs, per_token=True, intervention=fac0)
    fac = intervention_factory(lm, make_iv(lm, alpha=4.0))
    iti = score_requests(lm.model, reqs, per_token=True, intervention=fac)
    for b, z, s in zip(base, zero, iti):
        assert (b == z).all()
        assert (abs(b[1:] - s[1:]) > 1e-4).all()
        assert b[0] == s[0]


def test_save_load_roundtrip(tmp_path, tiny_llama):
    lm = tiny_llama
    iv = make_iv(lm)
    iv.head_scores = torch.rand(lm.arch.n_layers, lm.arch.n_heads)
    js = iv.save(tmp_path / "iv")
    assert js.exists() and (tmp_path / "iv.safetensors").exists()
    back = Intervention.load(tmp_path / "iv.json")
    assert back.heads == iv.heads and back.alpha == iv.alpha and back.provenance == {"test": True}
    assert torch.equal(back.directions, iv.directions) and torch.equal(back.sigmas, iv.sigmas)
    assert torch.equal(back.head_scores, iv.head_scores)
    assert back.top(2).heads == iv.heads[:2] and back.with_alpha(7).alpha == 7.0


@pytest.mark.parametrize("positions", ["last", "all"])
def test_generation_batched_left_padding_equals_single(positions, tiny_llama):
    """Greedy generation under the intervention: a left-padded batch gives each prompt's own output."""
    lm = tiny_llama
    tok = lm.tokenizer
    iv = make_iv(lm, alpha=3.0)
    prompts = ["Q: Is it cold? A:", "Q: What colour is the sea on a sunny day? A:"]
    kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=None)
    tok.padding_side = "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True)
        with torch.no_grad(), apply(lm, iv, positions=positions):
            batch = lm.model.generate(**enc, **kw)[:, enc["input_ids"].shape[1]:]
            single = [lm.model.generate(**tok([p], return_tensors="pt"), **kw)[0, -6:] for p in prompts]
        with torch.no_grad():
            plain = lm.model.generate(**enc, **kw)[:, enc["input_ids"].shape[1]:]
    finally:
        tok.padding_side = "right"
    for b, s in zip(batch, single):
        assert torch.equal(b, s)
    assert not torch.equal(batch, plain)  # the intervention changes what is generated
