"""Capture against an independent reference: one text at a time, no padding, hooks written here."""

from __future__ import annotations

import json

import pytest
import torch

from veracity.capture import StoreMismatch, answer_spans, capture, open_store, parse_sites
from veracity.capture import engine as engine_mod
from veracity.models import load

TEXTS = [
    "The capital of France is Paris.",
    "Two plus two is five.",
    "Hi",
    "A much longer sentence, with commas, numbers like 42 and several clauses, to force real padding.",
    "Yes.",
]


def reference(lm, text: str, positions="last", span=None) -> dict[str, torch.Tensor]:
    """Unpadded single-text forward with hand-written hooks on the module tree."""
    model = lm.model
    n_layers = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else model.config.n_layer
    if hasattr(model, "transformer"):
        layers = model.transformer.h
        attn_out = [l.attn.c_proj for l in layers]
    else:
        layers = model.model.layers
        attn_out = [l.self_attn.o_proj for l in layers]
    got: dict[str, torch.Tensor] = {}

    def red(h):
        h = h[0]
        if positions == "last":
            return h[-1]
        if positions == "mean":
            return h.mean(0)
        return h[span[0]: span[1]].mean(0)

    hs = []
    for i in range(n_layers):
        hs.append(layers[i].register_forward_hook(
            lambda m, a, o, i=i: got.__setitem__(f"resid.{i}", red(o[0] if isinstance(o, tuple) else o))))
        hs.append(layers[i].mlp.register_forward_hook(lambda m, a, o, i=i: got.__setitem__(f"mlp.{i}", red(o))))
        hs.append(attn_out[i].register_forward_pre_hook(lambda m, a, i=i: got.__setitem__(f"heads.{i}", red(a[0]))))
    try:
        ids = lm.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = model(**ids, output_hidden_states=True)
        got["resid.embed"] = red(out.hidden_states[0])
    finally:
        for h in hs:
            h.remove()
    return got


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("positions", ["last", "mean"])
def test_capture_matches_reference(alias, side, positions):
    lm = load(alias, device="cpu")
    acts = capture(lm, TEXTS, "resid,heads,mlp,resid.embed", positions=positions, batch_size=3,
                   dtype=torch.float32, padding_side=side, progress=False)
    H, hd = lm.arch.n_heads, lm.arch.head_dim
    for i, t in enumerate(TEXTS):
        ref = reference(lm, t, positions)
        for name, v in ref.items():
            got = acts[name][i]
            if name.startswith("heads"):
                assert got.shape == (H, hd)
                got = got.reshape(-1)
            torch.testing.assert_close(got, v, atol=1e-5, rtol=1e-5, msg=f"{alias} {side} {name} row {i}")


def test_gemma_head_dim_from_config():
    lm = load("tiny-gemma3", device="cpu")
    assert lm.arch.head_dim == 32 and lm.arch.head_dim * lm.arch.n_heads != lm.arch.hidden_size
    acts = capture(lm, TEXTS[:2], "heads.0", progress=False)
    assert acts["heads.0"].shape == (2, 4, 32)


@pytest.mark.parametrize("side", ["left", "right"])
def test_span_positions(tiny_llama, side):
    prompts = ["Q: Is the sky blue? A:", "Q: Hi? A:"]
    fulls = [p + " Yes, it is." for p in prompts]
    spans = answer_spans(tiny_llama.tokenizer, prompts, fulls)
    acts = capture(tiny_llama, fulls, "resid.2", positions=spans, dtype=torch.float32, padding_side=side,
                   progress=False)
    for i, f in enumerate(fulls):
        ref = reference(tiny_llama, f, "span", spans[i])
        torch.testing.assert_close(acts["resid.2"][i], ref["resid.2"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="span"):
        capture(tiny_llama, ["ab"], "resid.0", positions=[(0, 50)], progress=False)


def test_order_restored_and_negative_layers(tiny_llama):
    acts = capture(tiny_llama, TEXTS, "resid.-1", batch_size=2, dtype=torch.float32, progress=False)
    assert acts.sites == ["resid.3"]
    for i, t in enumerate(TEXTS):
        single = capture(tiny_llama, [t], "resid.3", dtype=torch.float32, progress=False)
        torch.testing.assert_close(acts["resid.-1"][i], single["resid.3"][0], atol=1e-5, rtol=1e-5)


def test_site_parsing_errors(tiny_llama):
    arch = tiny_llama.arch
    assert [s.name for s in parse_sites("heads.-1,resid.embed", arch)] == ["resid.embed", "heads.3"]
    assert len(parse_sites("resid", arch)) == arch.n_layers
    for bad in ["attn.1", "resid.9", "heads.embed", "resid.x", ""]:
        with pytest.raises((ValueError, IndexError)):
            parse_sites(bad, arch)


def test_hooks_removed_after_exception(tiny_llama, monkeypatch):
    model = tiny_llama.model

    def count():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = count()

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(engine_mod, "pad_batch", boom)
    with pytest.raises(RuntimeError):
        capture(tiny_llama, TEXTS, "resid,heads", progress=False)
    assert count() == before
    monkeypatch.undo()
    capture(tiny_llama, TEXTS, "resid,heads,mlp", progress=False)
    assert count() == before


def test_store_roundtrip_resume_and_mismatch(tiny_llama, tmp_path, monkeypatch):
    texts = [f"Statement number {i} is {'true' if i % 2 else 'false'}." for i in range(23)]
    labels = [i % 2 for i in range(23)]
    full = capture(tiny_llama, texts, "resid,heads", labels=labels, dtype=torch.float32, progress=False)

    out = tmp_path / "store"
    real_write = engine_mod.write_shard
    calls = {"n": 0}

    def flaky(path, tensors):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted while writing the third shard
        real_write(path, tensors)

    monkeypatch.setattr(engine_mod, "write_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        capture(tiny_llama, texts, "resid,heads", labels=labels, dtype=torch.float32, out=out, shard_size=5,
                batch_size=2, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    assert not m["complete"] and len(m["shards"]) == 2 and not list(out.glob("*.tmp"))
    with pytest.raises(ValueError, match="incomplete"):
        open_store(out)
    monkeypatch.setattr(engine_mod, "write_shard", real_write)
    acts = capture(tiny_llama, texts, "resid,heads", labels=labels, dtype=torch.float32, out=out, shard_size=5,
                   batch_size=4, progress=False)
    assert len(list(out.glob("shard-*.safetensors"))) == 5
    reopened = open_store(out)
    for a in (acts, reopened):
        assert a.n_rows == 23 and a.labels.tolist() == labels
        torch.testing.assert_close(a.stack("resid"), full.stack("resid"))
        torch.testing.assert_close(a.stack("heads"), full.stack("heads"))
    assert reopened.summary()["rows"] == 23
    # a different config is refused, never mixed
    with pytest.raises(StoreMismatch, match="sites"):
        capture(tiny_llama, texts, "resid", labels=labels, dtype=torch.float32, out=out, shard_size=5,
                progress=False)
    with pytest.raises(StoreMismatch):
        capture(tiny_llama, texts[:-1], "resid,heads", labels=labels[:-1], dtype=torch.float32, out=out,
                shard_size=5, progress=False)


def test_bad_inputs(tiny_llama):
    with pytest.raises(ValueError, match="no texts"):
        capture(tiny_llama, [], "resid")
    with pytest.raises(ValueError, match="labels"):
        capture(tiny_llama, ["a", "b"], "resid", labels=[1])
    with pytest.raises(ValueError, match="positions"):
        capture(tiny_llama, ["a"], "resid", positions="first")


@pytest.mark.real
def test_smollm2_matches_reference(smollm2):
    acts = capture(smollm2, TEXTS, "resid,heads,mlp,resid.embed", batch_size=5, dtype=torch.float32,
                   padding_side="left", progress=False)
    assert smollm2.arch.n_layers == 30 and smollm2.arch.n_heads == 9 and smollm2.arch.n_kv_heads == 3
    for i, t in enumerate(TEXTS):
        ref = reference(smollm2, t)
        for name in ("resid.embed", "resid.0", "resid.15", "resid.29", "heads.7", "heads.29", "mlp.20"):
            got = acts[name][i].reshape(-1)
            # smollm2 has massive activations (|x| up to ~2e4): compare at 1e-5 of the tensor's scale
            assert (got - ref[name]).abs().max() <= 1e-5 * max(1.0, ref[name].abs().max().item())
