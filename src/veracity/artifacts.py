"""One safe reader per file format veracity reads back, and the registry of every artifact kind it reads.

A file veracity wrote earlier (a run's config.json, a checkpoint, a sweep's results.sqlite, a steering
vector, a baked model, a local judge) can be truncated by a crash, replaced by something else or edited
by hand. Every read goes through one of four readers (`read_json`, `open_sqlite`, `read_safetensors`,
`read_npz`), which check the format *and* the declared schema (keys, types, shapes, dtypes, finite numbers)
and turn every failure into one `ArtifactError` (a `BadInput`) naming the file and what is wrong, instead of
a JSONDecodeError, KeyError or sqlite3.DatabaseError traceback further down.

`KINDS` lists every artifact kind with its files and the CLI commands that read it (`Consumer`); registering
a kind requires its consumers, so the generated test (tests/test_artifacts.py) corrupts every file of every
kind and runs every consumer without anyone adding rows by hand.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .validation import BadInput


class ArtifactError(BadInput):
    """A file veracity reads back is missing, damaged or not what it should be; the message names it
    (`path`: the file, `reason`: what is wrong, when raised through `damaged`)."""

    path: Path | None = None
    reason: str = ""


class ArtifactMissing(ArtifactError, FileNotFoundError):
    """The file does not exist."""


def damaged(path: str | Path, what: str) -> ArtifactError:
    """The one error for a damaged file: "PATH <what is wrong>" (e.g. "PATH has no 'alpha'")."""
    e = ArtifactError(f"{path} {what}")
    e.path, e.reason = Path(path), what
    return e


def short(e: ArtifactError, folder: str | Path) -> str:
    """The error with the file named relative to `folder` (for a table that already shows the folder)."""
    if e.path is not None and e.path.parent == Path(folder):
        return f"{e.path.name} {e.reason}"
    return str(e)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ArtifactMissing(f"{path} does not exist ({what})") from None
    except IsADirectoryError:
        raise damaged(path, f"is a folder, expected a file ({what})") from None
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None


# ------------------------------------------------------------------------------------------ JSON

# schema types: "str", "int", "number" (finite int or float), "bool", "list", "dict", "any";
# a trailing "?" marks an optional key (absent or null is accepted, anything else is checked)
_PY = {"str": (str,), "int": (int,), "number": (int, float), "bool": (bool,), "list": (list,), "dict": (dict,)}


def _type_ok(value: Any, t: str) -> bool:
    if t == "any":
        return True
    if isinstance(value, bool) and t in ("int", "number"):
        return False
    return isinstance(value, _PY[t])


def check_schema(obj: Any, schema: Mapping[str, str], path: str | Path, what: str = "",
                 equals: Mapping[str, Any] | None = None) -> dict:
    """`obj` is a JSON object holding every required key of `schema` with its type (numbers finite) and the
    fixed values of `equals`; else `ArtifactError` naming the file and the key."""
    what = f" ({what})" if what else ""
    if not isinstance(obj, dict):
        raise damaged(path, f"holds a JSON {_json_type(obj)}, expected an object{what}")
    for key, t in schema.items():
        optional = t.endswith("?")
        t = t.rstrip("?")
        if key not in obj or (optional and obj[key] is None):
            if optional:
                continue
            raise damaged(path, f"has no {key!r}{what}")
        v = obj[key]
        if not _type_ok(v, t):
            raise damaged(path, f"has {key!r} of type {_json_type(v)}, expected {t}{what}")
        if t == "number" and not math.isfinite(v):
            raise damaged(path, f"has {key!r} = {v}, expected a finite number{what}")
    for key, want in (equals or {}).items():
        if obj.get(key) != want:
            raise damaged(path, f"has {key!r} = {obj.get(key)!r}, expected {want!r}{what}")
    return obj


def _json_type(v: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(v), type(v).__name__)


def parse_json(data: bytes, path: str | Path) -> Any:
    """Bytes -> a JSON value; not UTF-8, empty or not JSON is `ArtifactError` naming `path`."""
    if not data.strip():
        raise damaged(path, "is empty (truncated?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise damaged(path, f"is not UTF-8 text (byte {e.start}): damaged or not a JSON file") from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise damaged(path, f"is not valid JSON ({e}; truncated or edited?)") from None


def read_json(path: str | Path, schema: Mapping[str, str] | None = None, what: str = "",
              equals: Mapping[str, Any] | None = None, object_only: bool = True) -> Any:
    """The JSON value in `path`, checked: an object (unless `object_only=False`) with `schema`'s keys."""
    path = Path(path)
    obj = parse_json(_read_bytes(path, what or "JSON"), path)
    if schema is not None or equals or object_only:
        check_schema(obj, schema or {}, path, what, equals)
    return obj


# ------------------------------------------------------------------------------------------ SQLite

SQLITE_MAGIC = b"SQLite format 3\x00"
EMPTY_IS_NEW = ("sqlite",)  # formats where an empty file is a new store (what a crash before the first table leaves)


def _missing_table(db, tables: Mapping[str, Sequence[str]]) -> str | None:
    """What `tables` ({table: columns}) finds missing in `db` ("no table ..." / "no column ..."), or None."""
    for table, cols in tables.items():
        have = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        if not have:
            return f"has no table {table!r}"
        missing = [c for c in cols if c not in have]
        if missing:
            return f"has no column {missing[0]!r} in table {table!r}"
    return None


def open_sqlite(path: str | Path, tables: Mapping[str, Sequence[str]], what: str = "results store",
                legacy: Sequence[Mapping[str, Sequence[str]]] = (), readonly: bool = False):
    """A connection to the SQLite file `path`, checked: a SQLite header, `PRAGMA quick_check` ok and every
    table of `tables` with its columns (or of one of the `legacy` layouts: a file an older veracity wrote,
    which its owner migrates). A missing or empty file is a new store (the caller creates its tables);
    anything else wrong is `ArtifactError` naming the file. `readonly`: the file is opened read-only (a
    reader never writes to another run's folder) and must exist."""
    import sqlite3

    path = Path(path)
    fresh = not path.exists() or path.stat().st_size == 0
    if readonly and fresh:
        raise damaged(path, f"does not exist or is empty: no {what} to read")
    if not fresh:
        head = _read_head(path, len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise damaged(path, f"is not a SQLite database (no SQLite header): damaged, or not veracity's {what}")
    try:
        db = (sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) if readonly
              else sqlite3.connect(str(path)))
    except sqlite3.Error as e:
        raise damaged(path, f"cannot be opened as SQLite ({e})") from None
    if fresh:
        return db
    try:
        rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise damaged(path, f"fails SQLite's integrity check ({'; '.join(map(str, rows[:2]))}): damaged {what}")
        wrong = _missing_table(db, tables)
        if wrong and not any(_missing_table(db, old) is None for old in legacy):
            raise damaged(path, f"{wrong}: not a veracity {what}")
    except sqlite3.DatabaseError as e:
        db.close()
        raise damaged(path, f"is a damaged SQLite database ({e})") from None
    except ArtifactError:
        db.close()
        raise
    return db


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None


# ------------------------------------------------------------------------------------------ tensors

_ST_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
            "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_FLOAT = ("F64", "F32", "F16", "BF16")


def safetensors_header(path: str | Path, data: bytes | None = None) -> dict:
    """{name: {dtype, shape, data_offsets}} of a safetensors file, checked without reading the tensors:
    the header is JSON, every tensor's byte range matches its shape and dtype, lies inside the file and the
    ranges end where the file ends (a truncated or extended file is refused)."""
    path = Path(path)
    if data is None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ArtifactMissing(f"{path} does not exist (safetensors)") from None
        head = _read_head(path, 8)
    else:
        size, head = len(data), data[:8]
    if len(head) < 8:
        raise damaged(path, f"has {size} bytes: too short for a safetensors file (truncated?)")
    (n,) = struct.unpack("<Q", head)
    if n > size - 8 or n > 100_000_000:
        raise damaged(path, "is not a safetensors file (header length beyond the file: truncated or garbage)")
    raw = data[8:8 + n] if data is not None else _read_range(path, 8, n)
    try:
        hdr = json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        raise damaged(path, "is not a safetensors file (its header is not JSON: truncated or garbage)") from None
    if not isinstance(hdr, dict):
        raise damaged(path, "is not a safetensors file (its header is not a JSON object)")
    end = 0
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = t["dtype"], [int(x) for x in t["shape"]], t["data_offsets"]
            numel = math.prod(shape)
            ok = dtype in _ST_SIZE and 0 <= a <= b and b - a == numel * _ST_SIZE[dtype]
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise damaged(path, f"has an inconsistent header entry for tensor {name!r}: damaged safetensors file")
        end = max(end, b)
    if 8 + n + end != size:
        raise damaged(path, f"has {size} bytes, its header describes {8 + n + end} (truncated or extended)")
    return hdr


def _read_range(path: Path, start: int, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read(n)
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None


def check_shapes(path: str | Path, shapes: Mapping[str, tuple], expect: Mapping[str, Sequence],
                 dims: dict | None = None, what: str = "", noun: str = "tensor") -> dict:
    """Every key of `expect` present with its shape: an int is a fixed size, a string a named size that
    must agree across tensors (and with `dims`, e.g. sizes read from the JSON half), None any size.
    Returns the named sizes found."""
    dims = dict(dims or {})
    what = f" ({what})" if what else ""
    for key, spec in expect.items():
        if key.endswith("?"):
            key = key[:-1]
            if key not in shapes:
                continue
        if key not in shapes:
            raise damaged(path, f"has no {noun} {key!r}{what}")
        got = tuple(shapes[key])
        if len(got) != len(spec):
            raise damaged(path, f"has {key!r} of shape {list(got)}, expected shape {list(spec)}{what}")
        for g, s in zip(got, spec):
            if isinstance(s, int) and g != s or isinstance(s, str) and dims.setdefault(s, g) != g:
                want = [dims.get(x, x) for x in spec]
                raise damaged(path, f"has {key!r} of shape {list(got)}, expected {want}{what}")
    return dims


def read_safetensors(path: str | Path, expect: Mapping[str, Sequence] | None = None, dims: dict | None = None,
                     what: str = "", finite: bool = True) -> dict:
    """{name: torch tensor} of a safetensors file, checked: header and size (`safetensors_header`), the
    tensors and shapes of `expect` (`check_shapes`), and (with `finite`) no NaN or inf in float tensors."""
    path = Path(path)
    data = _read_bytes(path, what or "safetensors")
    hdr = safetensors_header(path, data)
    if expect is not None:
        check_shapes(path, {k: v["shape"] for k, v in hdr.items() if k != "__metadata__"}, expect, dims, what)
    from safetensors.torch import load

    try:
        tensors = load(data)
    except Exception as e:  # safetensors raises its own types
        raise damaged(path, f"is not a readable safetensors file ({e})") from None
    if finite:
        for k, t in tensors.items():
            if t.is_floating_point() and not bool(t.isfinite().all()):
                raise damaged(path, f"has NaN or inf in tensor {k!r}")
    return tensors


def read_safetensors_array(path: str | Path, name: str, what: str = ""):
    """One float tensor of a safetensors file as a float32 numpy array, read without torch (the report shows
    saved head scores without paying seconds for importing torch): the header checked (`safetensors_header`),
    only that tensor's bytes read; None when the file has no such tensor. NaN or inf is refused."""
    import numpy as np

    path = Path(path)
    hdr = safetensors_header(path)
    if name not in hdr or name == "__metadata__":
        return None
    t = hdr[name]
    if t["dtype"] not in _FLOAT:
        raise damaged(path, f"has {t['dtype']} tensor {name!r}, expected floats ({what or 'safetensors'})")
    n = int.from_bytes(_read_head(path, 8), "little")
    a, b = t["data_offsets"]
    raw = _read_range(path, 8 + n + a, b - a)
    if t["dtype"] == "BF16":  # bfloat16: the upper half of a float32
        arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        arr = np.frombuffer(raw, {"F64": "<f8", "F32": "<f4", "F16": "<f2"}[t["dtype"]]).astype(np.float32)
    if not np.isfinite(arr).all():
        raise damaged(path, f"has NaN or inf in tensor {name!r}")
    return arr.reshape([int(x) for x in t["shape"]])


def check_safetensors_file(path: str | Path, finite_suffix: str | None = None) -> None:
    """A (possibly large) safetensors file checked without loading it whole: header and size, and only the
    tensors whose name ends with `finite_suffix` (e.g. a bake's biases) read and checked finite."""
    path = Path(path)
    hdr = safetensors_header(path)
    names = [k for k in hdr if k != "__metadata__" and finite_suffix and k.endswith(finite_suffix)
             and hdr[k]["dtype"] in _FLOAT]
    if not names:
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for k in names:
                if not bool(f.get_tensor(k).isfinite().all()):
                    raise damaged(path, f"has NaN or inf in tensor {k!r}")
    except ArtifactError:
        raise
    except Exception as e:
        raise damaged(path, f"is not a readable safetensors file ({e})") from None


def read_npz(path: str | Path, expect: Mapping[str, Sequence], dims: dict | None = None, what: str = "",
             finite: bool = True) -> dict:
    """{name: numpy array} of an .npz file, read with `allow_pickle=False` (loading never runs code),
    checked: a zip of numeric arrays with the keys and shapes of `expect`, finite (with `finite`)."""
    import io
    import zipfile

    import numpy as np

    path = Path(path)
    data = _read_bytes(path, what or "npz")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise damaged(path, f"is not a readable .npz file of plain arrays ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    check_shapes(path, {k: v.shape for k, v in arrays.items()}, expect, dims, what, noun="array")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise damaged(path, f"has array {k!r} of dtype {a.dtype}, expected numbers")
        if finite and a.dtype.kind == "f" and not bool(np.isfinite(a).all()):
            raise damaged(path, f"has NaN or inf in array {k!r}")
    return arrays


# ------------------------------------------------------------------------------------------ registry

@dataclass(frozen=True)
class FileSpec:
    """One file of an artifact. `name`: its name inside the artifact folder, or the suffix appended to a
    PATH artifact ("PATH" + ".json"); a glob for files whose name varies (`*.safetensors`).
    `format`: json | sqlite | safetensors | npz. `schema`: json {key: type}, sqlite {table: columns},
    safetensors/npz {tensor: shape} (named sizes agree across the artifact's files, see `check_shapes`).
    `finite`: a key suffix for files checked only in part (a model's weights: their `.bias` tensors)."""

    name: str
    format: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    equals: Mapping[str, Any] = field(default_factory=dict)
    optional: bool = False
    finite: bool | str = True
    legacy: tuple = ()  # sqlite: older layouts still read (their owner migrates them on the next write)


@dataclass(frozen=True)
class Consumer:
    """A CLI command that reads the artifact, as words with placeholders: {path} (the artifact: its folder,
    or PATH of PATH.json + PATH.safetensors), {root} (the folder holding it), {out} (a new folder for the
    command's output), {data} (the data folder), {model} (the tiny model the artifact was made with). `on_damage`: "error" (one `error:` line
    naming the file, exit 2) or "listed" (exit 0, the artifact shown as damaged with the file named)."""

    argv: tuple[str, ...]
    on_damage: str = "error"


@dataclass(frozen=True)
class ArtifactKind:
    """An artifact veracity writes and reads back: its files (format and schema each) and the commands that
    read it. `doc` starts with the short name used in messages ("ITI intervention: ...")."""

    name: str
    doc: str
    files: tuple[FileSpec, ...]
    consumers: tuple[Consumer, ...]
    layout: str = "folder"  # "folder" (files inside a folder) | "base" (PATH + each file's suffix)
    run_kinds: tuple[str, ...] = ()  # a file inside run folders of these kinds: checked before a run resumes
    checked_by: str = ""  # where the checks live when the artifact has its own reader (capture stores)

    def paths_of(self, root: str | Path, spec: FileSpec) -> list[Path]:
        """The file(s) of `spec` in the artifact at `root` (a glob: every match; none: the pattern's path,
        which the reader then reports missing)."""
        root = Path(root)
        if self.layout == "base":
            return [root.with_name(root.name + spec.name)]
        if any(c in spec.name for c in "*?["):
            return sorted(root.glob(spec.name)) or [root / spec.name]
        return [root / spec.name]

    def file(self, name: str) -> FileSpec:
        """The spec of the file called `name` in this artifact (StopIteration for a name it does not have)."""
        return next(f for f in self.files if f.name == name)


KINDS: dict[str, ArtifactKind] = {}


def register(kind: ArtifactKind) -> ArtifactKind:
    """Add an artifact kind; it must name the commands that read it (they are what the generated test runs)."""
    if not kind.consumers:
        raise ValueError(f"artifact kind {kind.name!r}: declare the commands that read it (consumers)")
    if kind.name in KINDS:
        raise ValueError(f"artifact kind {kind.name!r} is already registered")
    for c in kind.consumers:
        if c.on_damage not in ("error", "listed"):
            raise ValueError(f"artifact kind {kind.name!r}: on_damage must be error or listed, got {c.on_damage!r}")
    KINDS[kind.name] = kind
    return kind


def read_file(kind: str | ArtifactKind, name: str, path: str | Path, dims: dict | None = None) -> Any:
    """Read one file of an artifact kind with its format's reader and the declared schema."""
    k = KINDS[kind] if isinstance(kind, str) else kind
    spec = k.file(name)
    what = k.doc.split(":")[0]
    if spec.format == "json":
        return read_json(path, spec.schema, what, spec.equals)
    if spec.format == "safetensors":
        if isinstance(spec.finite, str):
            check_safetensors_file(path, spec.finite)
            return None
        return read_safetensors(path, spec.schema, dims, what, finite=bool(spec.finite))
    if spec.format == "npz":
        return read_npz(path, spec.schema, dims, what, finite=bool(spec.finite))
    if spec.format == "sqlite":
        db = open_sqlite(path, spec.schema, what, spec.legacy)
        db.close()
        return None
    raise ValueError(f"unknown artifact format {spec.format!r}")


def read(kind: str, root: str | Path) -> dict[str, Any]:
    """Every file of an artifact (JSON files first: their integer fields name sizes the tensors must
    have), {file name: its contents}; a missing optional file is left out."""
    k = KINDS[kind]
    out: dict[str, Any] = {}
    dims: dict = {}
    for spec in sorted(k.files, key=lambda f: f.format != "json"):
        paths = k.paths_of(root, spec)
        if spec.optional and not paths[0].exists():
            continue
        for p in paths:
            out[spec.name] = read_file(k, spec.name, p, dims)
        if spec.format == "json" and isinstance(out[spec.name], dict):
            dims.update({key: v for key, v in out[spec.name].items() if isinstance(v, int) and not isinstance(v, bool)})
    return out


def check_run_files(folder: str | Path, run_kind: str) -> None:
    """Before a run resumes in `folder`: every registered file a `run_kind` run keeps there (its
    checkpoint, its results store) that exists is read and checked, so a damaged one is named now,
    before any model is loaded, not as a traceback later."""
    folder = Path(folder)
    for k in KINDS.values():
        if run_kind in k.run_kinds:
            for spec in k.files:
                for p in k.paths_of(folder, spec):
                    if p.exists():
                        read_file(k, spec.name, p)


# ------------------------------------------------------------------------------------------ the kinds

RUN_CONFIG = {"kind": "str", "versions": "dict"}
RUN_RESULTS = {"kind": "str", "headline": "dict"}
CHECKPOINT = {"config": "dict", "done": "dict"}
_LIST = Consumer(("runs", "list", "{root}"), on_damage="listed")
_REPORT = Consumer(("report", "{path}", "--out", "{out}/report.html"))
_TINY = ("--model", "{model}", "--device", "cpu", "--data-dir", "{data}")

register(ArtifactKind(
    "run-config", "run config: a run folder's config.json (kind, options, versions)",
    (FileSpec("config.json", "json", RUN_CONFIG),),
    (_LIST, _REPORT, Consumer(("eval", "truthfulqa", *_TINY, "--limit", "2", "--metrics", "mc", "--judge", "none",
                               "--out", "{path}", "--overwrite")))))  # a writer: never empties a damaged run
register(ArtifactKind(
    "run-results", "run results: a finished run's results.json (kind, headline, results)",
    (FileSpec("results.json", "json", RUN_RESULTS),), (_LIST, _REPORT)))
register(ArtifactKind(
    "eval-progress", "checkpoint: the finished folds of an `eval truthfulqa` run (progress.json)",
    (FileSpec("progress.json", "json", CHECKPOINT),),
    (Consumer(("eval", "truthfulqa", *_TINY, "--limit", "4", "--metrics", "mc", "--judge", "none", "--out",
               "{path}")),), run_kinds=("eval",)))
register(ArtifactKind(
    "iti-validate-progress", "checkpoint: the finished folds of an `iti validate` run (progress.json)",
    (FileSpec("progress.json", "json", CHECKPOINT),),
    (Consumer(("iti", "validate", *_TINY, "--limit", "4", "--num-heads", "2", "--judge", "none", "--ce-texts", "0",
               "--out", "{path}")),), run_kinds=("iti-validate",)))
register(ArtifactKind(
    "sycophancy-progress", "checkpoint: the finished conditions of a `sycophancy` run (progress.json)",
    (FileSpec("progress.json", "json", CHECKPOINT),),
    (Consumer(("sycophancy", "--model", "{model}", "--device", "cpu", "--limit", "4", "--no-iti", "--out",
               "{path}")),), run_kinds=("sycophancy",)))
#: The one layout of every sweep's resumable store (`experiments.sweep.SweepStore` creates it from this):
#: {table: ((column, SQL type), ...)}; a cell is its parameters as canonical JSON, `extra` a study's payload.
SWEEP_STORE = {"results": (("cell", "TEXT"), ("fold", "INTEGER"), ("metrics", "TEXT"), ("extra", "TEXT"),
                           ("seconds", "REAL"), ("finished", "TEXT")),
               "meta": (("key", "TEXT PRIMARY KEY"), ("value", "TEXT"))}
SWEEP_STORE_KEY = ("cell", "fold")
SWEEP_TABLES = {t: tuple(c for c, _ in cols) for t, cols in SWEEP_STORE.items()}
#: The results tables each study wrote before the shared store (one column per parameter); still read,
#: and migrated to `SWEEP_STORE` when the run resumes.
LEGACY_STORES = {"iti-sweep": ("alpha", "k", "fold", "metrics", "seconds"),
                 "steer-sweep": ("layer", "alpha", "fold", "metrics", "seconds"),
                 "comparison": ("method", "fold", "metrics", "costs", "per_question", "answers")}


def _store(kind: str) -> FileSpec:
    return FileSpec("results.sqlite", "sqlite", SWEEP_TABLES,
                    legacy=({"results": LEGACY_STORES[kind], "meta": ("key", "value")},))


register(ArtifactKind(
    "iti-sweep-store", "results store: an `iti sweep`'s results.sqlite", (_store("iti-sweep"),),
    (Consumer(("iti", "sweep", *_TINY, "--limit", "4", "--alphas", "0,5", "--num-heads", "2", "--judge", "none",
               "--ce-texts", "0", "--side-effects", "none", "--out", "{path}")),), run_kinds=("iti-sweep",)))
register(ArtifactKind(
    "steer-sweep-store", "results store: a `steer sweep`'s results.sqlite", (_store("steer-sweep"),),
    (Consumer(("steer", "sweep", *_TINY, "--limit", "4", "--alphas", "0,1", "--layers", "1", "--judge", "none",
               "--ce-texts", "0", "--side-effects", "none", "--out", "{path}")),
     Consumer(("steer", "sweep", *_TINY, "--limit", "4", "--alphas", "0,1", "--layers", "1", "--judge", "none",
               "--ce-texts", "0", "--side-effects", "none", "--plain-from", "{path}", "--out", "{out}"))),
    run_kinds=("steer-sweep",)))
register(ArtifactKind(
    "comparison-store", "results store: a `compare-interventions` run's results.sqlite", (_store("comparison"),),
    (Consumer(("compare-interventions", *_TINY, "--limit", "4", "--methods", "baseline", "--judge", "none",
               "--out", "{path}")),), run_kinds=("compare-interventions",)))

RESIDUAL_JSON = {"format": "str", "alpha": "number", "method": "str", "layers": "list", "hidden_size": "int",
                 "provenance": "dict?"}
register(ArtifactKind(
    "residual-steer", "residual steer: PATH.json + PATH.safetensors (`veracity steer fit`)",
    (FileSpec(".json", "json", RESIDUAL_JSON, equals={"format": "veracity-residual-steer"}),
     FileSpec(".safetensors", "safetensors", {"vectors": ("L", "hidden_size"), "layers": ("L",)})),
    (Consumer(("steer", "bake", "--model", "{model}", "--device", "cpu", "--steer", "{path}", "--out", "{out}")),),
    layout="base"))

INTERVENTION_JSON = {"format": "str", "alpha": "number", "n_layers": "int", "n_heads": "int", "head_dim": "int",
                     "k": "int", "heads": "list", "provenance": "dict?"}
register(ArtifactKind(
    "iti-intervention", "ITI intervention: PATH.json + PATH.safetensors (`veracity iti fit`)",
    (FileSpec(".json", "json", INTERVENTION_JSON, equals={"format": "veracity-intervention"}),
     FileSpec(".safetensors", "safetensors", {"directions": ("k", "head_dim"), "sigmas": ("k",), "heads": ("k", 2),
                                              "head_scores?": ("n_layers", "n_heads")})),
    (Consumer(("iti", "bake", "--model", "{model}", "--device", "cpu", "--intervention", "{path}", "--out",
               "{out}")),), layout="base"))
DETECTOR_JSON = {"format": "str", "layers": "list", "positions": "list", "hidden_size": "int", "n_components": "int",
                 "stack_bias": "number", "threshold": "number", "calibration": "dict", "model_fingerprint": "str",
                 "provenance": "dict?"}
register(ArtifactKind(
    "detector", "detector: PATH.json + PATH.safetensors (`veracity detect`)",
    (FileSpec(".json", "json", DETECTOR_JSON, equals={"format": "veracity-detector"}),
     FileSpec(".safetensors", "safetensors", {"weights": ("n_components", "hidden_size"), "biases": ("n_components",),
                                              "means": ("n_components", "hidden_size"),
                                              "scales": ("n_components", "hidden_size"),
                                              "stack_weights": ("n_components",)})),
    (Consumer(("detect-score", "--model", "{model}", "--device", "cpu", "--detector", "{path}", "--n-questions",
               "2")),), layout="base"))
register(ArtifactKind(
    "baked-model", "baked model: a Hugging Face folder written by `steer bake` / `iti bake`",
    (FileSpec("veracity_bake.json", "json", {"how": "str", "alpha": "number"}),
     FileSpec("*.safetensors", "safetensors", finite=".bias")),
    (Consumer(("eval", "truthfulqa", "--model", "{path}", "--device", "cpu", "--data-dir", "{data}", "--limit", "2",
               "--metrics", "mc", "--judge", "none", "--out", "{out}")),)))
register(ArtifactKind(
    "local-judge", "local judge: judge.json + weights.npz + references.json (`veracity judge train`)",
    (FileSpec("judge.json", "json", {"format": "str?", "kind": "str", "booster": "str?", "degenerate_cap": "number?",
                                     "report": "dict?"}),
     FileSpec("weights.npz", "npz", {"coef": ("n_features",), "mean": ("n_dense",), "std": ("n_dense",),
                                     "intercept": (1,)}),
     FileSpec("references.json", "json", {}),
     FileSpec("booster.npz", "npz", {}, optional=True, finite=False)),  # tree thresholds may be inf
    (Consumer(("judge", "eval", "--kind", "truth", "--judge", "local:{path}", "--data-dir", "{data}")),
     Consumer(("eval", "truthfulqa", *_TINY, "--limit", "2", "--metrics", "judge", "--judge", "local:{path}",
               "--out", "{out}")))))
register(ArtifactKind(
    "capture-store", "capture store: manifest.json + shard-NNNNN.safetensors (`veracity capture`)",
    (FileSpec("manifest.json", "json", {"n_rows": "int", "sites": "list", "shapes": "dict", "dtype": "str",
                                        "shards": "list", "model": "dict"}),
     FileSpec("shard-00000.safetensors", "safetensors", {})),
    (Consumer(("steer", "fit", "--acts", "{path}", "--out", "{out}/v")), _REPORT),
    checked_by="veracity.capture.store.open_store (StoreDamaged: manifest, integrity hash, shard sizes, CRC-32)"))
