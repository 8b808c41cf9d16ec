"""On-disk activation store: `manifest.json` plus safetensors shards, read back memory-mapped.

Shards are written to a temp file and renamed, and the manifest (which lists finished shards) is
replaced atomically after each one, so an interrupted capture leaves a valid store that resumes
from the last complete shard. A store whose config differs from the requested one is refused.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import save_file

from ..runs import write_json_atomic
from .sites import resolve_site_name

FORMAT_VERSION = 1
_DTYPES = {"F16": torch.float16, "F32": torch.float32, "BF16": torch.bfloat16, "I64": torch.int64,
           "F64": torch.float64, "I32": torch.int32}


class StoreMismatch(ValueError):
    """An existing store was captured with a different config; it is never mixed with new rows."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def mmap_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file as views of one private memory map (pages load on access)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES[info["dtype"]]
        start, _ = info["data_offsets"]
        itemsize = torch.empty(0, dtype=dt).element_size()
        offset = 8 + n + start
        if offset % itemsize:
            raise ValueError(f"{path}: misaligned tensor {name}")
        out[name] = torch.empty(0, dtype=dt).set_(storage, offset // itemsize, tuple(info["shape"]))
    return out


class Activations:
    """Captured activations: `acts["resid.12"]` -> [N, D], `acts["heads.3"]` -> [N, H, head_dim].

    Backed either by in-memory tensors or by a store folder (memory-mapped shards).
    """

    def __init__(self, manifest: dict, tensors: dict[str, torch.Tensor] | None = None, root: Path | None = None,
                 meta: list[dict] | None = None):
        self.manifest = manifest
        self._meta = meta
        self.root = Path(root) if root else None
        self._tensors = tensors
        self._shards: list[dict[str, torch.Tensor]] | None = None
        self._cache: dict[str, torch.Tensor] = {}

    # ---- construction
    @classmethod
    def open(cls, path: str | Path) -> "Activations":
        root = Path(path)
        mpath = root / "manifest.json"
        if not mpath.exists():
            raise FileNotFoundError(f"{root} is not an activation store (no manifest.json)")
        manifest = json.loads(mpath.read_text())
        if not manifest.get("complete"):
            done = sum(s["stop"] - s["start"] for s in manifest.get("shards", []))
            raise ValueError(f"{root}: capture incomplete ({done}/{manifest['n_rows']} rows); "
                             "rerun the same capture command to resume it")
        return cls(manifest, root=root)

    # ---- metadata
    @property
    def n_rows(self) -> int:
        return int(self.manifest["n_rows"])

    def __len__(self) -> int:
        return self.n_rows

    @property
    def sites(self) -> list[str]:
        return list(self.manifest["sites"])

    @property
    def n_layers(self) -> int:
        return int(self.manifest["model"]["arch"]["n_layers"])

    @property
    def labels(self) -> torch.Tensor | None:
        lab = self.manifest.get("labels")
        return None if lab is None else torch.tensor(lab, dtype=torch.long)

    @property
    def groups(self) -> list[str] | None:
        return self.manifest.get("groups")

    @property
    def meta(self) -> list[dict] | None:
        """Per-row metadata (e.g. question and choice index), from meta.json in a store."""
        if self._meta is None and self.root is not None and (self.root / "meta.json").exists():
            self._meta = json.loads((self.root / "meta.json").read_text())
        return self._meta

    def layers(self, kind: str) -> list[int]:
        return sorted(int(s.split(".")[1]) for s in self.sites if s.startswith(kind + ".") and s != "resid.embed")

    # ---- data
    def _shard_tensors(self) -> list[dict[str, torch.Tensor]]:
        if self._shards is None:
            self._shards = [mmap_safetensors(self.root / s["file"]) for s in self.manifest["shards"]]
        return self._shards

    def __getitem__(self, site: str) -> torch.Tensor:
        name = resolve_site_name(site, self.n_layers)
        if name not in self.manifest["sites"]:
            raise KeyError(f"site {site!r} not captured; this store has {_summarise(self.sites)}")
        if self._tensors is not None:
            return self._tensors[name]
        if name not in self._cache:
            parts = [sh[name] for sh in self._shard_tensors()]
            self._cache[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._cache[name]

    def stack(self, kind: str, layers: list[int] | None = None) -> torch.Tensor:
        """[N, L, ...] for the given (default: all captured) layers of one kind."""
        layers = self.layers(kind) if layers is None else [l + self.n_layers if l < 0 else l for l in layers]
        if not layers:
            raise KeyError(f"no {kind} sites captured; this store has {_summarise(self.sites)}")
        return torch.stack([self[f"{kind}.{l}"] for l in layers], dim=1)

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Shard by shard, for data too large to concatenate."""
        if self._tensors is not None:
            yield self._tensors
        else:
            yield from self._shard_tensors()

    def summary(self) -> dict:
        m = self.manifest
        nbytes = sum((self.root / s["file"]).stat().st_size for s in m["shards"]) if self.root else \
            sum(t.numel() * t.element_size() for t in self._tensors.values())
        return {"rows": self.n_rows, "sites": len(self.sites), "site_names": _summarise(self.sites),
                "model": m["model"]["name"], "dataset": m["dataset"]["name"], "positions": m["positions"],
                "dtype": m["dtype"], "bytes": nbytes, "bytes_per_row": nbytes / max(1, self.n_rows),
                "path": str(self.root) if self.root else None}


def _summarise(sites: list[str]) -> str:
    by_kind: dict[str, list[str]] = {}
    for s in sites:
        k, _, l = s.partition(".")
        by_kind.setdefault(k, []).append(l)
    return ", ".join(f"{k}.[{v[0]}..{v[-1]}] ({len(v)})" if len(v) > 2 else ", ".join(f"{k}.{x}" for x in v)
                     for k, v in by_kind.items())


def open_store(path: str | Path) -> Activations:
    return Activations.open(path)


def prepare_store(root: Path, manifest: dict, overwrite: bool = False) -> dict:
    """Create or reopen a store. Returns the manifest to continue from (with its finished shards)."""
    root.mkdir(parents=True, exist_ok=True)
    mpath = root / "manifest.json"
    for tmp in root.glob("*.tmp"):
        tmp.unlink()
    if mpath.exists() and not overwrite:
        old = json.loads(mpath.read_text())
        if old.get("config_hash") != manifest["config_hash"]:
            diff = [k for k in manifest["config"] if old.get("config", {}).get(k) != manifest["config"][k]]
            raise StoreMismatch(f"{root} holds a capture with a different config (differs in: {', '.join(diff)}); "
                                "use a new --out folder or --overwrite")
        # keep only shards whose files exist (a crash between shard write and manifest update is harmless)
        old["shards"] = [s for s in old.get("shards", []) if (root / s["file"]).exists()]
        return old
    if overwrite:
        for f in root.glob("shard-*.safetensors"):
            f.unlink()
    write_json_atomic(mpath, manifest)
    return manifest


def save_manifest(root: Path, manifest: dict) -> None:
    write_json_atomic(root / "manifest.json", manifest)
