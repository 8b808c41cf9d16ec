"""Batched, padding-correct activation capture.

Texts are tokenised once, bucketed by length inside each shard (so padding is small), run in batches
with explicit position ids (left padding must not shift positions: GPT-2 has absolute embeddings)
and written back in the original order. Only the base model runs (no LM head: logits are not needed),
and the forward stops after the deepest requested layer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..runs import FolderLock, check_out_folder, write_json_atomic
from ..constraints import Checked, Count, Options, Parses, Text
from ..validation import BadInput
from ..models.batching import AutoBatch, as_batcher
from ..models.loader import LoadedModel
from ..models.padding import pad_batch, pad_token_id  # noqa: F401 (pad_batch re-exported by capture)
from .hooks import StopForward, hook_sites
from .sites import Site, parse_sites
from .store import (FORMAT_VERSION, Activations, pending_shards, prepare_store, save_manifest, shard_entry, shard_name,
                    write_shard)

Positions = str | Sequence[tuple[int, int]]
#: the named reductions over a text's tokens (a list of (start, end) spans is the third kind)
POSITIONS = ("last", "mean")


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


def _positions_key(positions: Positions) -> str:
    if isinstance(positions, str):
        if positions not in POSITIONS:
            raise ValueError(f"positions must be 'last', 'mean' or a list of (start, end) token spans, got {positions!r}")
        return positions
    h = hashlib.sha256(json.dumps([list(map(int, p)) for p in positions]).encode()).hexdigest()[:12]
    return f"spans:{h}"


def _texts_hash(texts: Sequence[str], labels, groups) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    h.update(json.dumps([labels, groups]).encode())
    return h.hexdigest()[:16]


def tokenize(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text with the tokenizer's special tokens added; a text that tokenises to nothing is an
    error raised before the store is created."""
    enc = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    for i, ids in enumerate(enc):
        if not ids:
            raise ValueError(f"text {i} tokenises to nothing: {texts[i]!r}")
    return enc


def _reducer(positions: Positions, rows: list[int], lengths: list[int], T: int, side: str, device):
    """Reduce [B, T, ...] over positions: last real token, mean over real tokens, or mean over a span."""
    B = len(rows)
    offs = [T - n if side == "left" else 0 for n in lengths]
    if positions == "last":
        idx = torch.tensor([o + n - 1 for o, n in zip(offs, lengths)], device=device)
        ar = torch.arange(B, device=device)
        # .to(h.device): with a device_map the hooked layer may live on another device (a no-op otherwise)
        return lambda h: h[ar.to(h.device), idx.to(h.device)]
    w = torch.zeros(B, T, device=device)
    for b, (o, n) in enumerate(zip(offs, lengths)):
        if positions == "mean":
            w[b, o: o + n] = 1.0
        else:
            s, e = positions[rows[b]]
            s, e = (s + n if s < 0 else s), (e + n if e <= 0 else e)
            if not 0 <= s < e <= n:
                raise ValueError(f"row {rows[b]}: span ({positions[rows[b]][0]}, {positions[rows[b]][1]}) "
                                 f"outside its {n} tokens")
            w[b, o + s: o + e] = 1.0
    w = w / w.sum(1, keepdim=True)

    def red(h):  # the mean in float32 whatever the model's dtype (a bf16 sum of 100s of terms loses digits)
        ww = w.to(h.device).reshape(B, T, *([1] * (h.dim() - 2)))
        return (h.float() * ww).sum(1)
    return red


def _base_model(model):
    base = getattr(model, "base_model", None)
    return base if isinstance(base, torch.nn.Module) and base is not model else model


@torch.inference_mode()
def capture(lm: LoadedModel, texts: Sequence[str], sites: str | Sequence[str] = "resid", positions: Positions = "last",
            batch_size: "int | str | AutoBatch" = 16, dtype: torch.dtype = torch.float16, out: str | Path | None = None,
            labels: Sequence[int] | None = None, groups: Sequence[str] | None = None, meta: list[dict] | None = None,
            dataset_name: str = "custom", shard_size: int = 2048, padding_side: str | None = None,
            progress: bool = True, overwrite: bool = False, config: dict | None = None) -> Activations:
    """Capture activations at `sites` for every text; returns `Activations` (in memory, or the store at `out`).

    positions: "last" (last non-pad token), "mean" (mean over non-pad tokens) or one (start, end) token
    span per text, end exclusive, negative values counting from the end (mean over the span).
    With `out`, rows go to a resumable store, one shard (`shard_size` rows) in RAM at a time.
    """
    n = len(texts)
    if n == 0:
        raise ValueError("no texts to capture")
    for name, seq in (("labels", labels), ("groups", groups), ("meta", meta)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} texts")
    if not isinstance(positions, str) and len(positions) != n:
        raise ValueError(f"positions has {len(positions)} spans for {n} texts")
    if shard_size < 1:
        raise BadInput(f"shard_size must be at least 1, got {shard_size}")
    try:
        site_list: list[Site] = parse_sites(list(sites) if not isinstance(sites, str) else sites, lm.arch)
    except IndexError as e:  # a layer beyond the model: a bad input, said before any work
        raise BadInput(f"sites {sites!r}: {e}") from None
    tok = lm.tokenizer
    side = padding_side or getattr(tok, "padding_side", "right") or "right"
    pad_id = pad_token_id(tok)
    device = lm.device
    labels = None if labels is None else [int(x) for x in labels]
    groups = None if groups is None else [str(g) for g in groups]
    cfg = {"model_fingerprint": lm.fingerprint, "dataset_hash": _texts_hash(texts, labels, groups),
           "sites": [s.name for s in site_list], "positions": _positions_key(positions),
           "dtype": _dtype_name(dtype), "shard_size": shard_size}
    manifest = {
        "format_version": FORMAT_VERSION, "veracity_version": __version__,
        "config": cfg, "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16],
        "model": {"name": lm.name, "source": lm.source, "fingerprint": lm.fingerprint, "arch": lm.arch.to_dict()},
        "dataset": {"name": dataset_name, "content_hash": cfg["dataset_hash"], "n_rows": n},
        "n_rows": n, "sites": [s.name for s in site_list],
        "shapes": {s.name: list(s.shape(lm.arch)) for s in site_list}, "dtype": cfg["dtype"],
        "positions": cfg["positions"], "padding_side": side, "labels": labels, "groups": groups,
        "run_config": config or {}, "shards": [], "complete": False,
    }
    ids_all = tokenize(tok, texts)  # before the store exists: an untokenisable text creates nothing
    root = Path(out) if out is not None else None
    lock = None
    if root is not None:
        # a store is never mixed into a run or a user's folder; one writer at a time (flock)
        check_out_folder(root, "capture", overwrite=overwrite, resume=not overwrite)
        root.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(root, "store folder", wait=True).acquire()  # a second capture waits, then reuses
        try:
            manifest = prepare_store(root, manifest, overwrite=overwrite)
        except BaseException:
            lock.release()
            raise
        if manifest.get("complete"):
            lock.release()
            return Activations.open(root, check_crc=False)  # prepare_store has just checked every CRC
        if meta is not None:  # per-row metadata can be large (BoolQ passages): kept out of the manifest
            write_json_atomic(root / "meta.json", meta)
    done = sum(s["stop"] - s["start"] for s in manifest["shards"])
    deepest = max(s.layer for s in site_list)
    model = _base_model(lm.model)
    batcher = as_batcher(batch_size, device)
    mem: dict[str, list[torch.Tensor]] = {s.name: [] for s in site_list}
    bar = tqdm(total=n, initial=done, unit="row", desc=f"capture {dataset_name}", disable=not progress,
               dynamic_ncols=True)
    try:
        # a store resumes with whatever shards are missing or were damaged (verified by prepare_store)
        todo = pending_shards(manifest) if root is not None else \
            [(i, s, min(n, s + shard_size)) for i, s in enumerate(range(0, n, shard_size))]
        for index, start, stop in todo:
            buf = {s.name: torch.empty((stop - start, *s.shape(lm.arch)), dtype=dtype) for s in site_list}
            order = sorted(range(start, stop), key=lambda i: -len(ids_all[i]))

            def run_batch(rows: list[int]) -> None:  # halved and retried by `batcher` on out-of-memory
                seqs = [ids_all[i] for i in rows]
                input_ids, mask, pos = pad_batch(seqs, pad_id, side, device)
                red = _reducer(positions, rows, [len(s) for s in seqs], input_ids.shape[1], side, device)
                local = torch.tensor([i - start for i in rows])

                def sink(site: Site, value: torch.Tensor) -> None:
                    buf[site.name][local] = value.to("cpu", dtype)

                with hook_sites(lm.model, lm.arch, site_list, sink, red, stop_after=deepest):
                    try:
                        model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)
                    except StopForward:
                        pass
                bar.update(len(rows))

            batcher.map(order, run_batch)
            if root is None:
                for k, v in buf.items():
                    mem[k].append(v)
            else:
                write_shard(root / shard_name(index), buf)
                manifest["shards"].append(shard_entry(root, index, start, stop))  # rows, size, CRC-32
                manifest["shards"].sort(key=lambda e: e["start"])
                save_manifest(root, manifest)
            del buf
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    finally:
        bar.close()
    manifest["complete"] = True
    if root is None:
        return Activations(manifest, tensors={k: torch.cat(v) for k, v in mem.items()}, meta=meta)
    save_manifest(root, manifest)
    lock.release()
    return Activations.open(root, check_crc=False)  # CRCs just computed from the files written



def _site_syntax(spec) -> None:
    """The grammar of --sites without a model (layer ranges are checked once the model is loaded)."""
    from .sites import KINDS

    parts = [str(p).strip() for p in (spec if isinstance(spec, (list, tuple)) else str(spec).split(","))
             if str(p).strip()]
    if not parts:
        raise ValueError("no sites given; use e.g. 'resid', 'heads.-1' or 'resid.embed,mlp.3'")
    for p in parts:
        kind, _, layer = p.partition(".")
        if kind not in KINDS or (layer == "embed" and kind != "resid") or (
                layer not in ("", "embed") and not layer.lstrip("-").isdigit()):
            raise ValueError(f"unknown site {p!r}: kinds are {', '.join(KINDS)} (e.g. resid.12, heads.-1, resid.embed)")


def _batch_size(value) -> None:
    from ..models.batching import parse_batch_size

    parse_batch_size(value)


#: --dtype of the stored activations -> torch dtype name
STORE_DTYPES = {"float16": "float16", "fp16": "float16", "float32": "float32", "fp32": "float32",
                "bfloat16": "bfloat16"}


@dataclass
class CaptureConfig(Checked):
    """Every option of `veracity capture` but the model's (`models.loader.LoadConfig`) and the store folder."""

    _constraints = {"dataset": [Text()],
                    "sites": [Parses(_site_syntax, "sites such as resid, heads.-1, resid.embed,mlp.3",
                                     bad=["", "nosuch", "resid.x", "mlp.embed"], example="resid")],
                    "positions": [Options(POSITIONS)],
                    "batch_size": [Parses(_batch_size, "a positive integer or 'auto'", bad=[0, -1, "0", "x", ""],
                                          example="16")],
                    "dtype": [Options(tuple(STORE_DTYPES))], "shard_size": [Count()],
                    "limit": [None, Count(msg="be a positive number of items (leave it out for all)")]}
    _commands = ("capture",)

    dataset: str = "synthetic"
    sites: str = "resid"
    positions: str = "last"
    batch_size: int | str = "16"
    dtype: str = "float16"
    shard_size: int = 2048
    limit: int | None = None


def capture_dataset(lm: LoadedModel, dataset, sites="resid", **kwargs) -> Activations:
    """Capture a `veracity.data.TextDataset` (texts, labels, groups and meta travel into the store)."""
    return capture(lm, dataset.texts, sites, labels=dataset.labels, groups=dataset.groups,
                   meta=getattr(dataset, "meta", None), dataset_name=dataset.name, **kwargs)


def answer_spans(tokenizer, prompts: Sequence[str], full_texts: Sequence[str]) -> list[tuple[int, int]]:
    """Token span of the part of each full text after its prompt, found from the tokenisation
    (enc(full)[len(enc(prompt)):]), as (start, end) for `positions=`."""
    out = []
    for p, f in zip(prompts, full_texts):
        a, b = len(tokenizer(p)["input_ids"]), len(tokenizer(f)["input_ids"])
        if b <= a:
            raise ValueError(f"full text adds no tokens after its prompt: {f!r}")
        out.append((a, b))
    return out
