"""Bake: a plain HF folder whose logits equal the hook version (every position) to 1e-4 in fp32."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from veracity.models import load
from veracity.steer import Intervention, apply, bake, baked_state_dict, verify_baked

TEXTS = ["Q: What happens if you swallow gum? A: It passes through you.", "Q: Hi? A: No."]


def make_iv(lm, alpha=5.0, heads=((0, 1), (2, 3), (3, 0), (2, 0))) -> Intervention:
    a = lm.arch
    g = torch.Generator().manual_seed(1)
    d = F.normalize(torch.randn(len(heads), a.head_dim, generator=g), dim=-1)
    return Intervention(list(heads), d, torch.rand(len(heads), generator=g) + 0.5, alpha, a.n_layers, a.n_heads,
                        a.head_dim)


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"])
def test_baked_equals_hooks(alias, tmp_path):
    from transformers import AutoModelForCausalLM

    lm = load(alias, device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    iv = make_iv(lm)
    bake(lm, iv, tmp_path / "baked")
    # the original is untouched (no bias added, no weight changed)
    after = lm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert verify_baked(lm, iv, tmp_path / "baked", texts=TEXTS, atol=1e-4) <= 1e-4
    baked = AutoModelForCausalLM.from_pretrained(str(tmp_path / "baked"), dtype=torch.float32)
    assert not json.loads((tmp_path / "baked" / "config.json").read_text()).get("auto_map")
    # batched, padded: baked == hooks("all") on real tokens
    tok = lm.tokenizer
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with apply(lm, iv, positions="all"):
            a = lm.model(**enc).logits
        b = baked(**enc).logits
    m = enc["attention_mask"].bool()
    assert (a[m] - b[m]).abs().max() < 1e-4


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-qwen2"])
def test_llama_family_bakes_only_an_o_proj_bias(alias, tmp_path):
    """Default: llama with attention_bias (zero q/k/v biases); o_proj_only: seed_oss, a bias on o_proj
    only. Both equal the hooks."""
    from transformers import AutoModelForCausalLM

    lm = load(alias, device="cpu")
    iv = make_iv(lm)
    for only, mtype in ((True, "seed_oss"), (False, "llama")):
        out = tmp_path / f"baked-{only}"
        bake(lm, iv, out, o_proj_only=only)
        assert json.loads((out / "config.json").read_text())["model_type"] == mtype
        assert verify_baked(lm, iv, out, texts=TEXTS, atol=1e-4) <= 1e-4
        keys = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).state_dict().keys()
        qkv_bias = [k for k in keys if k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias"))]
        assert any(k.endswith("o_proj.bias") for k in keys)
        # zero q/k/v biases only in the llama form (qwen2 has real ones either way)
        assert bool(qkv_bias) == (not only or alias == "tiny-qwen2")


def test_bias_is_W_o_times_shift_not_raw_shift(tiny_llama):
    lm = tiny_llama
    iv = make_iv(lm)
    sd, cfg, how = baked_state_dict(lm, iv, o_proj_only=True)
    assert how.startswith("llama->seed_oss") and cfg.attention_out_bias and not cfg.attention_bias
    shifts = iv.layer_shifts()
    for i in range(lm.arch.n_layers):
        W = lm.arch.attn_out(lm.model, i).weight
        bias = sd[f"model.layers.{i}.self_attn.o_proj.bias"]
        expect = W @ shifts[i] if i in shifts else torch.zeros(W.shape[0])
        torch.testing.assert_close(bias, expect, atol=1e-6, rtol=1e-6)
        for p in "qkv":  # seed_oss: no q/k/v biases at all
            assert f"model.layers.{i}.self_attn.{p}_proj.bias" not in sd
    sd, cfg, how = baked_state_dict(lm, iv)
    assert how == "attention_bias" and cfg.attention_bias
    for i in range(lm.arch.n_layers):
        for p in "qkv":  # the llama flag also creates q/k/v biases: zeros, so attention is unchanged
            assert sd[f"model.layers.{i}.self_attn.{p}_proj.bias"].abs().max() == 0
    # the baked bias lives in hidden space (hidden_size), not head space
    assert sd["model.layers.0.self_attn.o_proj.bias"].shape == (lm.arch.hidden_size,)


def test_gpt2_conv1d_bias_absorbs_shift():
    lm = load("tiny-gpt2", device="cpu")
    iv = make_iv(lm)
    sd, _, how = baked_state_dict(lm, iv)
    assert how == "existing-bias"
    c = lm.model.transformer.h[2].attn.c_proj  # Conv1D: weight [in, out]
    torch.testing.assert_close(sd["transformer.h.2.attn.c_proj.bias"], c.bias + iv.layer_shifts()[2] @ c.weight)


def test_baked_loads_without_veracity(tmp_path, standalone_logits, tiny_llama):
    lm = tiny_llama
    iv = make_iv(lm)
    bake(lm, iv, tmp_path / "baked")
    ids = lm.tokenizer(TEXTS[0])["input_ids"]
    got = standalone_logits(tmp_path / "baked", ids)
    with torch.no_grad(), apply(lm, iv, positions="all"):
        want = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert (got - want).abs().max() < 1e-4


def _hand_iti(lm, iv, last_only=False):
    """Pre-hooks written here, for one unpadded text: head h of layer l is columns [h * head_dim,
    (h + 1) * head_dim) of o_proj's input (on Gemma 3 that input is 4 x 256 = 1024 wide, hidden 640).
    head_dim from the module itself, not from ArchSpec, so a wrong ArchSpec.head_dim would show."""
    handles = []
    for (l, h), v in zip(iv.heads, iv.alpha * iv.sigmas[:, None] * iv.directions):
        o = lm.model.model.layers[l].self_attn.o_proj
        hd = o.in_features // lm.model.config.num_attention_heads

        def pre(module, args, h=h, v=v, hd=hd):
            x = args[0].clone()
            x[..., -1 if last_only else slice(None), h * hd:(h + 1) * hd] += v
            return (x, *args[1:])
        handles.append(o.register_forward_pre_hook(pre))
    return handles


@pytest.mark.real
def test_real_model_iti_equals_hand_hooks_and_bakes_exactly(real_lm, tmp_path, against_hand_hooks):
    """Both real architectures: `apply` == hand-written hooks (every position; the last real token of a
    left-padded batch == that token of each text alone), and the baked folder == the hooks. Gemma 3 bakes
    too: its o_proj output goes through post_attention_layernorm, so an o_proj bias is exactly the shift."""
    import shutil

    lm, a = real_lm, real_lm.arch
    g = torch.Generator().manual_seed(0)
    heads = [(0, a.n_heads - 1), (a.n_layers // 2, 1), (a.n_layers - 1, 0)]  # first/last layer, last head
    iv = Intervention(heads, F.normalize(torch.randn(len(heads), a.head_dim, generator=g), dim=-1),
                      torch.rand(len(heads), generator=g) + 0.5, 3.0, a.n_layers, a.n_heads, a.head_dim)
    *_, ours, last = against_hand_hooks(lm, TEXTS, lambda last_only: _hand_iti(lm, iv, last_only),
                                        lambda positions: apply(lm, iv, positions=positions))
    for i in range(len(TEXTS)):
        assert (last[i] - ours[i][-1]).abs().max() > 1e-3  # "last" is not "all"
    bake(lm, iv, tmp_path / "baked")
    assert verify_baked(lm, iv, tmp_path / "baked", texts=TEXTS, atol=1e-4) <= 1e-4
    shutil.rmtree(tmp_path / "baked")  # ~0.5 GB (smollm2) / 1.1 GB (Gemma) of fp32 weights
