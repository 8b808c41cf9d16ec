"""A model spread by a device_map captures, steers and bakes like the same model on one device.

On CPU the two "devices" are the CPU and accelerate's disk offload: layers 2-3 of tiny-llama live on disk
(meta placeholders in the module, weights streamed in by accelerate's hooks around each forward), layers
0-1, the embedding and the head on the CPU. That is the hardest placement for veracity's hooks: they run
on modules whose parameters are not in memory, beside accelerate's own hooks. (On several GPUs the same
code paths move each shift vector / reducer index to the device of the activation it meets.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from veracity.capture import capture
from veracity.evaluate.truthfulqa import make_requests, score_requests
from veracity.models import load
from veracity.steer import Intervention, apply, bake

TEXTS = ["The cat is black.", "Paris is the capital of France.", "The moon is made of cheese, they said.",
         "Q: What happens if you crack your knuckles a lot? A: Nothing in particular happens."]
SPLIT = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
         "model.layers.2": "disk", "model.layers.3": "disk", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tiny_llama):
    """(single-device LoadedModel, the same checkpoint split over cpu + disk)."""
    root = tmp_path_factory.mktemp("dm")
    src = tiny_llama
    src.model.save_pretrained(root / "m")
    src.tokenizer.save_pretrained(root / "m")
    mp = pytest.MonkeyPatch()
    mp.setenv("VERACITY_CACHE", str(root / "cache"))  # the offload folder goes under the cache
    try:
        one = load(str(root / "m"), device="cpu")
        split = load(str(root / "m"), device_map=SPLIT)
    finally:
        mp.undo()
    return one, split


def test_split_is_really_offloaded(pair):
    one, split = pair
    o3 = split.arch.attn_out(split.model, 3)
    assert o3.weight.device.type == "meta" and hasattr(o3, "_hf_hook")  # on "disk": streamed in by accelerate
    assert split.arch.attn_out(split.model, 0).weight.device.type == "cpu"
    assert split.device.type == "cpu"
    assert split.fingerprint == one.fingerprint  # offloaded weights are read for the fingerprint


def test_capture_equals_single_device(pair):
    one, split = pair
    a = capture(split, TEXTS, "resid,heads,mlp.3", positions="mean", dtype=torch.float32, batch_size=3,
                progress=False)
    b = capture(one, TEXTS, "resid,heads,mlp.3", positions="mean", dtype=torch.float32, batch_size=3,
                progress=False)
    for s in b.sites:
        torch.testing.assert_close(a[s], b[s], rtol=0, atol=1e-6)


def _iv(arch) -> Intervention:
    heads = [(3, 1), (2, 0), (0, 2)]  # heads on both "devices"
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(len(heads), arch.head_dim, generator=g), dim=-1)
    return Intervention(heads, dirs, torch.ones(len(heads)), 6.0, arch.n_layers, arch.n_heads, arch.head_dim)


@torch.no_grad()
def _logits(lm, text=TEXTS[-1]):
    return lm.model(input_ids=lm.tokenizer(text, return_tensors="pt")["input_ids"]).logits.float()


def test_iti_hooks_run_where_each_layer_lives(pair):
    one, split = pair
    iv = _iv(one.arch)
    seen = []
    hs = [split.arch.attn_out(split.model, l).register_forward_pre_hook(
        lambda m, a, l=l: seen.append((l, a[0].device.type))) for l in (0, 3)]
    try:
        with apply(split, iv, positions="all"):
            a = _logits(split)
        with apply(split, iv, positions="last"):
            a_last = _logits(split)
    finally:
        for h in hs:
            h.remove()
    assert {l for l, _ in seen} == {0, 3} and all(d == "cpu" for _, d in seen)
    with apply(one, iv, positions="all"):
        b = _logits(one)
    with apply(one, iv, positions="last"):
        b_last = _logits(one)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(a_last, b_last, rtol=0, atol=1e-5)
    assert (a - _logits(one)).abs().max() > 1e-2  # the intervention acts, on both halves
    # no hook left behind on either device
    torch.testing.assert_close(_logits(split), _logits(one), rtol=0, atol=1e-5)


def test_mc_scoring_equals_single_device(pair):
    one, split = pair
    reqs = make_requests(one.tokenizer, "Q: Is the sky blue?\nA:", [" yes", " no", " it is green"], "lm-eval")
    iv = _iv(one.arch)
    fac = lambda phase, lm: apply(lm, iv, positions="all")  # noqa: E731
    a = score_requests(split.model, reqs, batch_size=2, pad_id=0, intervention=lambda p: fac(p, split))
    b = score_requests(one.model, reqs, batch_size=2, pad_id=0, intervention=lambda p: fac(p, one))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_bake_from_split_model_equals_single_device(pair, tmp_path):
    one, split = pair
    iv = _iv(one.arch)
    fa, fb = bake(split, iv, tmp_path / "split"), bake(one, iv, tmp_path / "one")
    ma = AutoModelForCausalLM.from_pretrained(str(fa), dtype=torch.float32).eval()
    mb = AutoModelForCausalLM.from_pretrained(str(fb), dtype=torch.float32).eval()
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    for k in sb:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)
    ids = one.tokenizer(TEXTS[-1], return_tensors="pt")["input_ids"]
    with apply(one, iv, positions="all"):
        hooks = _logits(one)
    with torch.no_grad():
        torch.testing.assert_close(ma(input_ids=ids).logits.float(), hooks, rtol=0, atol=1e-4)


def test_residual_steering_on_split_model(pair):
    from veracity.steer.residual import ResidualSteer, apply_residual

    one, split = pair
    g = torch.Generator().manual_seed(2)
    steer = ResidualSteer([1, 3], torch.randn(2, one.arch.hidden_size, generator=g), alpha=1.5)
    with apply_residual(split, steer, positions="all"):
        a = _logits(split)
    with apply_residual(one, steer, positions="all"):
        b = _logits(one)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
