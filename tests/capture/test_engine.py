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
def test_real_model_matches_reference(real_lm):
    """Both real architectures, batched and left-padded, against the unpadded hand-hooked forward. On
    Gemma 3 a head is 256 wide while hidden / heads is 160: the heads rows must be [heads, head_dim]."""
    lm = real_lm
    L, H, hd = lm.arch.n_layers, lm.arch.n_heads, lm.arch.head_dim
    acts = capture(lm, TEXTS, "resid,heads,mlp,resid.embed", batch_size=5, dtype=torch.float32,
                   padding_side="left", progress=False)
    assert acts[f"heads.{L - 1}"].shape == (len(TEXTS), H, hd)
    for i, t in enumerate(TEXTS):
        ref = reference(lm, t)
        for name in ("resid.embed", "resid.0", f"resid.{L // 2}", f"resid.{L - 1}", "heads.7", f"heads.{L - 1}",
                     f"mlp.{L - 3}"):
            got = acts[name][i].reshape(-1)
            # massive activations (|x| up to ~2e4 on smollm2): compare at 1e-5 of the tensor's scale
            assert (got - ref[name]).abs().max() <= 1e-5 * max(1.0, ref[name].abs().max().item()), (lm.name, name, i)


# ---------------------------------------------------------------- store integrity

from veracity.capture import StoreDamaged  # noqa: E402

STORE_TEXTS = [f"Statement number {i} is {'true' if i % 2 else 'false'}." for i in range(23)]
STORE_LABELS = [i % 2 for i in range(23)]


def _store(lm, out, **kw):
    return capture(lm, STORE_TEXTS, "resid,heads", labels=STORE_LABELS, dtype=torch.float32, out=out, shard_size=5,
                   batch_size=4, progress=False, **kw)


@pytest.fixture
def store_pair(tiny_llama, tmp_path):
    """A finished 5-shard store and its in-memory reference."""
    ref = capture(tiny_llama, STORE_TEXTS, "resid,heads", labels=STORE_LABELS, dtype=torch.float32, progress=False)
    _store(tiny_llama, tmp_path / "s")
    return tmp_path / "s", ref


def _same(a, ref):
    assert a.n_rows == 23 and a.labels.tolist() == STORE_LABELS
    torch.testing.assert_close(a.stack("resid"), ref.stack("resid"))
    torch.testing.assert_close(a.stack("heads"), ref.stack("heads"))


def test_manifest_records_ranges_sizes_and_checksums(store_pair):
    import zlib

    out, _ = store_pair
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 2 and m["integrity"]
    assert [(e["start"], e["stop"]) for e in m["shards"]] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    for e in m["shards"]:
        b = (out / e["file"]).read_bytes()
        assert e["bytes"] == len(b) and e["crc32"] == zlib.crc32(b)


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_damaged_shard_refused_on_open_and_recaptured_on_resume(tiny_llama, store_pair, damage):
    out, ref = store_pair
    shard = out / "shard-00002.safetensors"  # a middle shard
    if damage == "missing":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:-100])
    else:  # same size, one byte changed in the data
        b = bytearray(shard.read_bytes())
        b[-7] ^= 0xFF
        shard.write_bytes(bytes(b))
    with pytest.raises(StoreDamaged, match="shard-00002.safetensors"):
        open_store(out)
    acts = _store(tiny_llama, out)  # the same command again: re-captures only what is damaged
    _same(acts, ref)
    _same(open_store(out), ref)
    assert sorted(p.name for p in out.glob("shard-*")) == [f"shard-0000{i}.safetensors" for i in range(5)]


def test_incomplete_store_with_missing_middle_shard_resumes_exactly(tiny_llama, store_pair):
    """An interrupted store whose manifest lists a shard that is gone: the resumed store holds every row
    once, in order (was: 5 rows lost and 5 duplicated)."""
    out, ref = store_pair
    m = json.loads((out / "manifest.json").read_text())
    m["complete"] = False
    m["shards"] = m["shards"][:3]
    (out / "manifest.json").write_text(json.dumps(m))
    for f in ("shard-00001.safetensors", "shard-00003.safetensors", "shard-00004.safetensors"):
        (out / f).unlink()
    _same(_store(tiny_llama, out), ref)


@pytest.mark.parametrize("edit", ["n_rows", "arch", "labels", "swap_entries", "swap_files", "shard_range"])
def test_edited_manifest_or_swapped_shards_detected(store_pair, edit):
    out, _ = store_pair
    mp = out / "manifest.json"
    m = json.loads(mp.read_text())
    if edit == "n_rows":
        m["n_rows"] = 20
    elif edit == "arch":
        m["model"]["arch"]["n_layers"] = 5
    elif edit == "labels":
        m["labels"][0] = 1 - m["labels"][0]
    elif edit == "swap_entries":
        m["shards"][1], m["shards"][2] = m["shards"][2], m["shards"][1]
    elif edit == "swap_files":  # same sizes and headers: only the checksums tell them apart
        a, b = out / "shard-00001.safetensors", out / "shard-00002.safetensors"
        tmp = out / "x"
        a.rename(tmp), b.rename(a), tmp.rename(b)
    else:
        m["shards"][4]["stop"] = 24
    mp.write_text(json.dumps(m))
    with pytest.raises(StoreDamaged):
        open_store(out)


def test_manifest_not_json_is_named(store_pair):
    out, _ = store_pair
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(StoreDamaged, match=r"manifest\.json is not valid JSON"):
        open_store(out)


def test_format1_store_still_opens(store_pair):
    """A store written before sizes and checksums (format 1) opens, with the checks it allows."""
    out, ref = store_pair
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 1
    del m["integrity"]
    for e in m["shards"]:
        del e["bytes"], e["crc32"]
    (out / "manifest.json").write_text(json.dumps(m))
    _same(open_store(out), ref)
    (out / "shard-00001.safetensors").write_bytes((out / "shard-00001.safetensors").read_bytes()[:-10])
    with pytest.raises(StoreDamaged, match="shard-00001"):
        open_store(out)


def test_store_refuses_a_run_folder_and_a_users_folder(tiny_llama, tmp_path):
    from veracity.runs import RunExists, RunFolder

    RunFolder(tmp_path / "run", "probe", {}).finish({})
    with pytest.raises(RunExists, match="holds a probe run"):
        _store(tiny_llama, tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(RunExists, match="notes.txt"):
        _store(tiny_llama, tmp_path / "mine", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_capture_into_a_locked_store_waits(tiny_llama, tmp_path):
    """A store is locked while written; a second capture waits for the holder, then reuses its rows."""
    import threading
    import time

    from veracity.runs import FolderLock

    (tmp_path / "s").mkdir()
    done = threading.Event()
    holder = FolderLock(tmp_path / "s").acquire()
    t = threading.Thread(target=lambda: (_store(tiny_llama, tmp_path / "s"), done.set()))
    t.start()
    time.sleep(1.0)
    assert not done.is_set() and not (tmp_path / "s" / "manifest.json").exists()  # waiting, nothing written
    holder.release()
    t.join(60)
    assert done.is_set() and open_store(tmp_path / "s").n_rows == 23


def test_checksum_cost_is_small(tmp_path):
    """CRC-32 of a 32 MiB shard (zlib) takes well under a second; the figure goes in docs/reliability.md."""
    import time

    from veracity.capture.store import file_crc32, write_shard

    p = tmp_path / "shard-00000.safetensors"
    write_shard(p, {"heads.0": torch.randn(2048, 4096)})
    t0 = time.perf_counter()
    file_crc32(p)
    assert time.perf_counter() - t0 < 2.0
