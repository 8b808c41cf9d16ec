"""On-disk activation store: `manifest.json` plus safetensors shards, read back memory-mapped.

Shards are written to a temp file and renamed, and the manifest (which lists finished shards) is
replaced atomically after each one, so an interrupted capture leaves a valid store that resumes
from the last complete shard. A store whose config differs from the requested one is refused.

Integrity (format 2): each manifest entry records the shard's row range, byte size and CRC-32, and the
manifest records a hash of its own fixed part (rows, sites, shapes, model, labels, ...). Opening a store
checks every listed shard (present, size, safetensors header against the manifest's sites, shapes and
row range, CRC) and the manifest hash, and raises `StoreDamaged` naming the file; a resumed capture
re-captures whatever is missing or damaged. Format-1 stores (no sizes or CRCs) still open, with the
checks they allow (header, shapes, row ranges).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import shutil
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..runs import to_jsonable, write_json_atomic
from .sites import resolve_site_name

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 2
# safetensors dtype code -> torch dtype name; by name, so checking a store (`verify_store`, the report) needs no torch
_DTYPES = {"F16": "float16", "F32": "float32", "BF16": "bfloat16", "I64": "int64", "F64": "float64", "I32": "int32"}


class StoreError(ValueError):
    """A store that cannot be used as asked; the message names the folder or file."""


class StoreMismatch(StoreError):
    """An existing store was captured with a different config; it is never mixed with new rows."""


class StoreDamaged(StoreError):
    """A store whose manifest or shards do not match what was written (missing, truncated, edited)."""


class StoreNotFound(StoreError, FileNotFoundError):
    """No store at this path (no manifest.json)."""


def shard_name(i: int) -> str:
    """The file name of shard `i`, zero-padded so the shards sort in row order."""
    return f"shard-{i:05d}.safetensors"


def write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write one safetensors shard atomically (temp file, then rename): a crash never leaves a half-written shard."""
    from safetensors.torch import save_file

    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    """CRC-32 of a file's bytes (zlib: ~1.5 GB/s, far below the capture's own cost)."""
    crc = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(chunk)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def shard_entry(root: Path, index: int, start: int, stop: int) -> dict:
    """The manifest entry of a written shard: file, row range, byte size and CRC-32."""
    p = root / shard_name(index)
    return {"file": p.name, "start": start, "stop": stop, "bytes": p.stat().st_size, "crc32": file_crc32(p)}


_FIXED_EXCLUDE = ("shards", "complete", "integrity")


def manifest_hash(manifest: dict) -> str:
    """Hash of the manifest's fixed part (everything but the shard list and the complete flag), as
    written to JSON: an edit of rows, sites, shapes, model, labels or config changes it."""
    fixed = {k: v for k, v in to_jsonable(manifest).items() if k not in _FIXED_EXCLUDE}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


def read_manifest(root: Path) -> dict:
    """manifest.json of a store, or `StoreDamaged` naming the file when it is not a JSON object with the
    keys (and their types) that `veracity.artifacts` registers for a capture store."""
    from ..artifacts import ArtifactError, ArtifactMissing, read_file

    mpath = root / "manifest.json"
    try:  # the registered reader: a UTF-8 JSON object with n_rows, sites, shapes, dtype, shards, model
        return read_file("capture-store", "manifest.json", mpath)
    except ArtifactMissing:
        raise StoreNotFound(f"{root} is not an activation store (no manifest.json)") from None
    except ArtifactError as e:
        raise StoreDamaged(f"{e}; recapture with --overwrite") from None


def _read_header(path: Path) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError("truncated header")
        header = json.loads(f.read(n))
    end = max((info["data_offsets"][1] for k, info in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise ValueError(f"truncated: {size} bytes, the header needs {8 + n + end}")
    return header


def shard_problem(root: Path, manifest: dict, entry: dict, check_crc: bool = True) -> str | None:
    """Why a listed shard cannot be used (None when it is sound): missing, size, header, shapes, CRC."""
    try:
        p = root / entry["file"]
        start, stop = int(entry["start"]), int(entry["stop"])
    except (KeyError, TypeError, ValueError):
        return f"malformed shard entry {entry!r}"
    if not p.is_file():
        return f"{p.name} is missing"
    size = p.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        return f"{p.name} has {size} bytes, the manifest says {entry['bytes']} (truncated or replaced)"
    try:
        header = _read_header(p)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        return f"{p.name} is not a readable safetensors file ({e})"
    want_dtype = {v: k for k, v in _DTYPES.items()}.get(str(manifest["dtype"]))
    for site in manifest["sites"]:
        info = header.get(site)
        if info is None:
            return f"{p.name} lacks site {site}"
        shape = [stop - start, *manifest["shapes"][site]]
        if list(info.get("shape", [])) != shape:
            return f"{p.name}: {site} has shape {info.get('shape')}, the manifest implies {shape}"
        if want_dtype is not None and info.get("dtype") != want_dtype:
            return f"{p.name}: {site} is {info.get('dtype')}, the manifest says {manifest['dtype']}"
    if check_crc and "crc32" in entry and file_crc32(p) != entry["crc32"]:
        return f"{p.name} does not match its checksum (damaged or swapped)"
    return None


def verify_manifest(root: Path, manifest: dict) -> None:
    """The manifest's own consistency: its hash, and shard row ranges that tile 0..n_rows in order."""
    mpath = root / "manifest.json"
    if "integrity" in manifest and manifest_hash(manifest) != manifest["integrity"]:
        raise StoreDamaged(f"{mpath} was edited after capture (its content hash does not match); "
                           "recapture with --overwrite")
    pos = 0
    for e in manifest["shards"]:
        if not isinstance(e, dict) or e.get("start") != pos or not isinstance(e.get("stop"), int) or e["stop"] <= pos:
            raise StoreDamaged(f"{mpath}: shard entries do not cover rows 0..{manifest['n_rows']} in order "
                               f"(at row {pos}: {e!r})")
        pos = e["stop"]
    if pos > manifest["n_rows"] or (manifest.get("complete") and pos != manifest["n_rows"]):
        raise StoreDamaged(f"{mpath}: shards hold {pos} rows, the manifest says {manifest['n_rows']}")
    for key in ("labels", "groups"):
        v = manifest.get(key)
        if v is not None and len(v) != manifest["n_rows"]:
            raise StoreDamaged(f"{mpath}: {len(v)} {key} for {manifest['n_rows']} rows")


def verify_store(root: str | Path, manifest: dict | None = None, check_crc: bool = True) -> dict:
    """Check a finished store; returns its manifest or raises `StoreError` naming what is wrong."""
    root = Path(root)
    manifest = read_manifest(root) if manifest is None else manifest
    verify_manifest(root, manifest)
    for e in manifest["shards"]:
        problem = shard_problem(root, manifest, e, check_crc)
        if problem:
            raise StoreDamaged(f"store {root}: {problem}; rerun the capture command to re-capture it")
    return manifest


def mmap_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file as views of one private memory map (pages load on access)."""
    import torch

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = getattr(torch, _DTYPES[info["dtype"]])
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
    def open(cls, path: str | Path, check_crc: bool = True) -> "Activations":
        """Open a finished store after checking it (`verify_store`; `check_crc=False` skips reading every
        byte for the CRCs, keeping the size, header, shape and row-range checks)."""
        root = Path(path)
        if not (root / "manifest.json").exists():
            raise StoreNotFound(f"{root} is not an activation store (no manifest.json)")
        manifest = read_manifest(root)
        if not manifest.get("complete"):
            done = sum(s.get("stop", 0) - s.get("start", 0) for s in manifest.get("shards", []) if isinstance(s, dict))
            raise StoreError(f"{root}: capture incomplete ({done}/{manifest['n_rows']} rows); "
                             "rerun the same capture command to resume it")
        verify_store(root, manifest, check_crc)
        return cls(manifest, root=root)

    # ---- metadata
    @property
    def n_rows(self) -> int:
        """Number of captured rows: the first axis of every site's tensor."""
        return int(self.manifest["n_rows"])

    def __len__(self) -> int:
        return self.n_rows

    @property
    def sites(self) -> list[str]:
        """The captured site names, e.g. ["resid.0", ..., "heads.11"]."""
        return list(self.manifest["sites"])

    @property
    def n_layers(self) -> int:
        """Number of decoder layers of the captured model (from its architecture, not from the sites kept)."""
        return int(self.manifest["model"]["arch"]["n_layers"])

    @property
    def labels(self) -> torch.Tensor | None:
        """The rows' 0/1 truth labels as a long tensor [N], or None for an unlabelled data set."""
        import torch

        lab = self.manifest.get("labels")
        return None if lab is None else torch.tensor(lab, dtype=torch.long)

    @property
    def groups(self) -> list[str] | None:
        """Each row's group (topic, polarity, ...) for grouped splits, or None when the data set has none."""
        return self.manifest.get("groups")

    @property
    def meta(self) -> list[dict] | None:
        """Per-row metadata (e.g. question and choice index), from meta.json in a store."""
        if self._meta is None and self.root is not None and (self.root / "meta.json").exists():
            self._meta = json.loads((self.root / "meta.json").read_text())
        return self._meta

    def layers(self, kind: str) -> list[int]:
        """The layers captured for site `kind` ("resid", "heads", ...), sorted; the embeddings are left out."""
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
            import torch

            parts = [sh[name] for sh in self._shard_tensors()]
            self._cache[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._cache[name]

    def stack(self, kind: str, layers: list[int] | None = None) -> torch.Tensor:
        """[N, L, ...] for the given (default: all captured) layers of one kind."""
        layers = self.layers(kind) if layers is None else [l + self.n_layers if l < 0 else l for l in layers]
        if not layers:
            raise KeyError(f"no {kind} sites captured; this store has {_summarise(self.sites)}")
        import torch

        return torch.stack([self[f"{kind}.{l}"] for l in layers], dim=1)

    def iter_shards(self) -> Iterator[dict[str, torch.Tensor]]:
        """Shard by shard, for data too large to concatenate."""
        if self._tensors is not None:
            yield self._tensors
        else:
            yield from self._shard_tensors()

    def summary(self) -> dict:
        """Rows, sites, model, data set, positions, dtype and size on disk in one dict: what `veracity capture`
        prints and the demo records."""
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
    """Open a store folder (memory-mapped, checked: a damaged store raises `StoreDamaged` naming the problem)."""
    return Activations.open(path)


def open_checked(path: str | Path) -> Activations:
    """A store a study was given (--acts), or BadInput naming what is wrong with the path (one line, no trace)."""
    from ..validation import BadInput

    try:
        return Activations.open(path)
    except (FileNotFoundError, ValueError) as e:
        raise BadInput(str(e)) from None


def prepare_store(root: Path, manifest: dict, overwrite: bool = False) -> dict:
    """Create or reopen a store (the caller holds its lock). Returns the manifest to continue from, its
    `shards` the sound ones only: a missing, truncated or damaged shard is deleted and left to capture."""
    from ..runs import LOCK_NAME

    root.mkdir(parents=True, exist_ok=True)
    mpath = root / "manifest.json"
    for tmp in root.glob("*.tmp"):
        tmp.unlink()
    if mpath.exists() and not overwrite:
        old = read_manifest(root)
        if old.get("config_hash") != manifest["config_hash"]:
            diff = [k for k in manifest["config"] if old.get("config", {}).get(k) != manifest["config"][k]]
            raise StoreMismatch(f"{root} holds a capture with a different config (differs in: {', '.join(diff)}); "
                                "use a new --out folder or --overwrite")
        if "integrity" in old and manifest_hash(old) != old["integrity"]:
            raise StoreDamaged(f"{mpath} was edited after capture (its content hash does not match); "
                               "recapture with --overwrite")
        ss = int(old.get("config", {}).get("shard_size") or manifest["config"]["shard_size"])
        kept, n = [], int(old["n_rows"])
        for e in old.get("shards", []):
            ok = isinstance(e, dict) and isinstance(e.get("start"), int) and e["start"] % ss == 0 \
                and e.get("file") == shard_name(e["start"] // ss) and e.get("stop") == min(n, e["start"] + ss) \
                and shard_problem(root, old, e) is None
            if ok:
                kept.append(e)
        listed = {e["file"] for e in kept}
        for f in root.glob("shard-*.safetensors"):  # unlisted or damaged: re-captured
            if f.name not in listed:
                f.unlink()
        old["shards"] = sorted(kept, key=lambda e: e["start"])
        old["complete"] = bool(old.get("complete")) and sum(e["stop"] - e["start"] for e in kept) == n
        if "integrity" not in old:  # a format-1 store being resumed: keep its rows, record them from now on
            old["integrity"] = manifest_hash(old)
        return old
    if overwrite:
        for f in root.iterdir():
            if f.name != LOCK_NAME:
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
    manifest = dict(manifest, integrity=manifest_hash(manifest))
    write_json_atomic(mpath, manifest)
    return manifest


def pending_shards(manifest: dict) -> list[tuple[int, int, int]]:
    """(index, start, stop) of every shard not yet in the manifest, in row order."""
    n, ss = int(manifest["n_rows"]), int(manifest["config"]["shard_size"])
    have = {e["start"] for e in manifest["shards"]}
    return [(i, s, min(n, s + ss)) for i, s in enumerate(range(0, n, ss)) if s not in have]


def save_manifest(root: Path, manifest: dict) -> None:
    """Write the store's manifest.json atomically; it is rewritten after every shard, so it always describes the
    shards on disk."""
    write_json_atomic(root / "manifest.json", manifest)
