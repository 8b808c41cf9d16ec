"""Residual hooks (`steer.residual.apply`) against output_hidden_states and per-layer reads; removed on exit."""

from __future__ import annotations


import pytest
import torch

from veracity.models import load
from veracity.steer.residual.apply import apply_residual
from veracity.steer.residual.vectors import ResidualSteer

TEXTS = ["Q: What happens if you swallow gum? A: It passes through you.", "Q: Hi? A: No."]


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gemma3", "tiny-gpt2", "tiny-qwen2"])
def test_hook_shifts_exactly_the_chosen_layer(alias, random_steer, layer_outputs):
    lm = load(alias, device="cpu")
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    st = random_steer(lm, layers=(1,))
    with torch.no_grad():
        base = lm.model(input_ids=ids, output_hidden_states=True).hidden_states  # unhooked reference
    n_hooks = sum(len(m._forward_hooks) for m in lm.model.modules())
    with apply_residual(lm, st):
        assert sum(len(m._forward_hooks) for m in lm.model.modules()) == n_hooks + 1
        # read each layer's output with hooks registered after ours (transformers 5 records
        # output_hidden_states before later forward hooks run, so it does not see the shift itself)
        got = layer_outputs(lm, ids)
    # hidden_states[i + 1] is the output of layer i (i < last): layer 0 unchanged, layer 1 shifted by alpha * v
    torch.testing.assert_close(got[0], base[1])
    torch.testing.assert_close(got[1] - base[2], (3.0 * st.vectors[0]).expand_as(base[2]), atol=1e-5, rtol=0)
    assert (got[2] - base[3]).abs().max() > 1e-3  # later layers see it
    # no hooks left behind
    assert sum(len(m._forward_hooks) for m in lm.model.modules()) == n_hooks


def test_hook_last_position_only_and_padding(tiny_llama, random_steer, layer_outputs):
    lm = tiny_llama
    tok = lm.tokenizer
    st = random_steer(lm, layers=(2,))
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    base = layer_outputs(lm, enc["input_ids"], attention_mask=enc["attention_mask"])
    with apply_residual(lm, st, positions="last"):
        got = layer_outputs(lm, enc["input_ids"], attention_mask=enc["attention_mask"])
    d = got[2] - base[2]
    last = enc["attention_mask"].sum(1) - 1
    for r in range(2):
        torch.testing.assert_close(d[r, last[r]], 3.0 * st.vectors[0], atol=1e-5, rtol=0)
        others = torch.ones(d.shape[1], dtype=torch.bool)
        others[last[r]] = False
        assert d[r, others].abs().max() == 0


def test_hook_removed_on_error_and_model_untouched(random_steer):
    # its own copy, not the session's tiny_llama: it counts every forward hook, and transformers keeps the
    # hooks it adds on a model's first output_hidden_states forward
    lm = load("tiny-llama", device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    st = random_steer(lm, layers=(0, 3))
    with pytest.raises(RuntimeError, match="boom"):
        with apply_residual(lm, st):
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in lm.model.modules())
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hook_refuses_wrong_model(tiny_llama):
    lm = tiny_llama
    with pytest.raises(ValueError, match="hidden size"):
        with apply_residual(lm, ResidualSteer([0], torch.randn(1, 32))):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with apply_residual(lm, ResidualSteer([9], torch.randn(1, 64))):
            pass
    with pytest.raises(ValueError, match="fingerprint"):
        with apply_residual(lm, ResidualSteer([0], torch.randn(1, 64), provenance={"model_fingerprint": "0" * 16})):
            pass


# ------------------------------------------------------------------------------------------ bake
