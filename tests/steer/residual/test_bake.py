"""Residual bakes (`steer.residual.bake`): the baked folder equals the hooks, or is refused before writing."""

from __future__ import annotations

import json

import pytest
import torch

from veracity.models import load
from veracity.steer.base import NotBakeable
from veracity.steer.residual.apply import apply_residual
from veracity.steer.residual.bake import bake_residual, baked_residual_state_dict, verify_residual_baked
from veracity.steer.residual.vectors import ResidualSteer

TEXTS = ["Q: What happens if you swallow gum? A: It passes through you.", "Q: Hi? A: No."]


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-qwen2", "tiny-gpt2"])
def test_baked_equals_hooks(alias, tmp_path, random_steer):
    from transformers import AutoModelForCausalLM

    lm = load(alias, device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    st = random_steer(lm, layers=(0, 2, 3), alpha=2.0)
    out = bake_residual(lm, st, tmp_path / "baked")
    after = lm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert verify_residual_baked(lm, st, out, texts=TEXTS, atol=1e-4) <= 1e-4
    baked = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    enc = lm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with apply_residual(lm, st, positions="all"):
            a = lm.model(**enc).logits
        b = baked(**enc).logits
        plain = lm.model(**enc).logits
    m = enc["attention_mask"].bool()
    assert (a[m] - b[m]).abs().max() < 1e-4
    assert (a[m] - plain[m]).abs().max() > 1e-2  # the steer does something
    assert ResidualSteer.load(out / "veracity_steer").layers == [0, 2, 3]
    assert json.loads((out / "veracity_bake.json").read_text())["kind"] == "residual"


def test_llama_bake_is_a_down_proj_bias_and_zero_gate_up_biases(tiny_llama, random_steer):
    lm = tiny_llama
    st = random_steer(lm, layers=(1, 3), alpha=-1.5)
    sd, cfg, how = baked_residual_state_dict(lm, st)
    assert how == "mlp_bias" and cfg.mlp_bias and not getattr(cfg, "attention_bias", False)
    for i in range(lm.arch.n_layers):
        want = -1.5 * st.vectors[st.layers.index(i)] if i in st.layers else torch.zeros(lm.arch.hidden_size)
        torch.testing.assert_close(sd[f"model.layers.{i}.mlp.down_proj.bias"], want)
        for p in ("gate", "up"):
            assert sd[f"model.layers.{i}.mlp.{p}_proj.bias"].abs().max() == 0
    assert lm.model.config.mlp_bias is False  # the original config is untouched


def test_qwen2_bake_keeps_qkv_biases(random_steer):
    lm = load("tiny-qwen2", device="cpu")
    sd, cfg, how = baked_residual_state_dict(lm, random_steer(lm))
    assert how == "qwen2->llama mlp_bias" and cfg.model_type == "llama" and cfg.attention_bias
    orig = lm.model.state_dict()
    torch.testing.assert_close(sd["model.layers.0.self_attn.q_proj.bias"], orig["model.layers.0.self_attn.q_proj.bias"])
    assert sd["model.layers.0.self_attn.o_proj.bias"].abs().max() == 0


def test_gemma3_and_unknown_refused_clearly(tmp_path, random_steer):
    lm = load("tiny-gemma3", device="cpu")
    with pytest.raises(NotBakeable, match="post-feedforward"):
        bake_residual(lm, random_steer(lm), tmp_path / "g")
    assert not (tmp_path / "g").exists()  # nothing written


def test_baked_residual_loads_without_veracity(tmp_path, standalone_logits, tiny_llama, random_steer):
    lm = tiny_llama
    st = random_steer(lm, layers=(1, 2))
    bake_residual(lm, st, tmp_path / "baked")
    ids = lm.tokenizer(TEXTS[0])["input_ids"]
    got = standalone_logits(tmp_path / "baked", ids)
    with torch.no_grad(), apply_residual(lm, st, positions="all"):
        want = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert (got - want).abs().max() < 1e-4


def _hand_residual(lm, shifts: dict, module="layer", last_only=False):
    """Forward hooks written here, for one unpadded text: `shifts[l]` added to the output of decoder layer l
    (module="layer") or of its MLP (module="mlp": what a down_proj bias adds)."""
    handles = []
    for l, v in shifts.items():
        layer = lm.model.model.layers[l]

        def hook(m, args, out, v=v):
            h = (out[0] if isinstance(out, tuple) else out).clone()
            h[..., -1 if last_only else slice(None), :] += v
            return (h, *out[1:]) if isinstance(out, tuple) else h
        handles.append((layer.mlp if module == "mlp" else layer).register_forward_hook(hook))
    return handles


@pytest.mark.real
def test_real_model_residual_equals_hand_hooks_bake_exact_or_refused(real_lm, tmp_path, against_hand_hooks, logits_per_text):
    """Both real architectures: `apply_residual` == hand-written hooks (every position; the last real token
    of a left-padded batch == that token of each text alone). The bake is exact on smollm2 (a down_proj bias
    is the layer's last addition to the residual stream) and refused on Gemma 3, nothing written: there a
    post_feedforward_layernorm normalises what a down_proj bias adds, so it is not the residual shift (shown)."""
    import shutil

    lm, a = real_lm, real_lm.arch
    g = torch.Generator().manual_seed(0)
    layers = [1, a.n_layers // 2, a.n_layers - 1]
    st = ResidualSteer(layers, torch.randn(len(layers), a.hidden_size, generator=g), alpha=2.0)
    shifts = {l: 2.0 * v for l, v in zip(layers, st.vectors)}
    ids, _, hand, _, _ = against_hand_hooks(lm, TEXTS, lambda last: _hand_residual(lm, shifts, last_only=last),
                                            lambda positions: apply_residual(lm, st, positions=positions))
    if a.model_type.startswith("gemma"):
        with pytest.raises(NotBakeable, match="post-feedforward"):
            bake_residual(lm, st, tmp_path / "baked")
        assert not (tmp_path / "baked").exists()
        with torch.no_grad():
            as_bias = logits_per_text(lm, ids, _hand_residual(lm, shifts, module="mlp"))
        assert all((b - h).abs().max() > 1e-2 for b, h in zip(as_bias, hand))  # why: a bias would not be exact
        return
    bake_residual(lm, st, tmp_path / "baked")
    assert json.loads((tmp_path / "baked" / "config.json").read_text())["mlp_bias"] is True
    assert verify_residual_baked(lm, st, tmp_path / "baked", texts=TEXTS, atol=1e-4) <= 1e-4
    shutil.rmtree(tmp_path / "baked")  # ~0.5 GB of fp32 weights
