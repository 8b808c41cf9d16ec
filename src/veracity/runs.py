"""Run folders: every command that produces results writes one.

Layout: `config.json` (every option, model and data hashes, library versions, seed), `results.json`,
CSV tables, PNG plots and `log.txt`. A folder that already holds a finished run is never overwritten
without `overwrite=True`; `resume=True` reopens an unfinished (or finished) run to continue it.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable


class RunExists(FileExistsError):
    """The folder cannot take this run: a finished run (without --overwrite), a run of another kind,
    something that is not a veracity run, or a folder another process is using. One-line message."""


class RunLocked(RunExists):
    """Another process holds the folder's lock."""


LOCK_NAME = ".veracity.lock"
_IGNORABLE = (LOCK_NAME,)  # present in a folder that holds nothing yet


def folder_kind(path: str | Path) -> str | None:
    """What veracity wrote in `path`: a run's kind (from config.json), "capture" for an activation store,
    None for anything else (missing, empty, or not veracity's). A config.json that looks like a run's (it
    has `kind` or `versions`) but is damaged raises `ArtifactError` naming it: never taken for a user's file."""
    p = Path(path)
    cfg = run_config(p)
    if cfg is not None:
        return cfg["kind"]
    man = p / "manifest.json"
    if man.is_file():
        try:
            d = json.loads(man.read_text())
        except (OSError, ValueError):
            d = None
        if isinstance(d, dict) and "config_hash" in d and "format_version" in d:
            return "capture"
        if any(p.glob("shard-*.safetensors")):  # a store whose manifest was damaged
            return "capture"
    return None


def run_config(folder: str | Path) -> dict | None:
    """The config.json of the run in `folder`, checked (`artifacts.read_json`); None when the folder holds
    no run: no config.json, or a JSON object that is not a run's (neither `kind` nor `versions`: e.g. a
    Hugging Face model's config). Damaged (truncated, not UTF-8, not an object, a key missing or of the
    wrong type) is `ArtifactError` naming the file."""
    from .artifacts import RUN_CONFIG, check_schema, damaged, parse_json

    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        obj = parse_json(path.read_bytes(), path)
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None
    if isinstance(obj, dict) and "kind" not in obj and "versions" not in obj:
        return None
    return check_schema(obj, RUN_CONFIG, path, "run config")


def _entries(path: Path) -> list[Path]:
    return sorted(c for c in path.iterdir() if c.name not in _IGNORABLE and not c.name.endswith(".tmp"))


def folder_contents(path: str | Path, n: int = 4) -> str:
    """"notes.txt, sub/ and 3 more": what a folder holds, for error messages."""
    items = [c.name + ("/" if c.is_dir() else "") for c in _entries(Path(path))]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def check_out_folder(path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                     option: str = "--out") -> Path:
    """Raise (`BadInput` or `RunExists`) unless `path` can take a `kind` run; creates nothing.

    Accepted: a missing or empty folder; a folder holding a veracity run of the same kind (unfinished,
    or finished with `resume`); with `overwrite`, a folder holding any veracity run or store (it will be
    emptied). Refused: a regular file or unwritable place, a run of another kind (never mixed), a
    finished run without overwrite/resume, and a non-empty folder that holds no veracity run (overwrite
    never empties a user's folder)."""
    from .validation import check_out_path

    p = check_out_path(path, option)
    if not p.exists() or not _entries(p):
        return p
    found = folder_kind(p)
    if found is None:
        raise RunExists(f"{p} is not empty and holds no veracity run ({folder_contents(p)}); refusing to "
                        f"{'empty' if overwrite else 'write into'} it: choose another {option}")
    if overwrite and not resume:
        return p
    if found != kind:
        raise RunExists(f"{p} holds a {found} run; a {kind} run is never mixed into it: choose another {option}"
                        + ("" if resume else " (or --overwrite to replace it)"))
    if kind != "capture" and (p / "results.json").exists() and not resume:
        raise RunExists(f"{p} already holds a finished run; pass --overwrite to replace it "
                        "(or --resume where the command supports it)")
    from .artifacts import check_run_files

    check_run_files(p, kind)  # a damaged checkpoint or results store is named now, before any work
    return p


def schema_version(d: dict, kind: str, supported: int) -> int:
    """The `schema_version` of a results.json payload of `kind` (0 when absent: written before the field,
    the same layout); a newer one than this veracity reads (`supported`) raises ValueError."""
    v = d.get("schema_version", 0)
    if v > supported:
        raise ValueError(f"{kind} results.json has schema_version {v}; this veracity reads up to {supported} "
                         "(upgrade veracity)")
    return v


class Checkpoint:
    """The finished units of a run (key -> JSON value: a fold, a condition) in one JSON file, rewritten
    atomically after each unit, so an interrupted run resumes at the unit it was in and ends with the
    same results as an uninterrupted one. A file written with other settings is refused, never mixed in."""

    def __init__(self, path: str | Path, config: dict):
        self.path, self.config = Path(path), json.loads(json.dumps(to_jsonable(config), default=str))
        self.done: dict = {}
        if self.path.exists():
            from .artifacts import CHECKPOINT, read_json

            saved = read_json(self.path, CHECKPOINT, "checkpoint")  # damaged: one line naming it
            if saved.get("config") != self.config:
                raise RunExists(f"{self.path} was written by a run with another configuration; "
                                "pass --overwrite to start again (or choose another --out)")
            self.done = saved.get("done", {})

    def get(self, key: str) -> Any:
        return self.done.get(key)

    def put(self, key: str, value: Any) -> None:
        self.done[key] = json.loads(json.dumps(to_jsonable(value)))
        write_json_atomic(self.path, {"config": self.config, "done": self.done})


class FolderLock:
    """Exclusive `flock` on FOLDER/.veracity.lock, held while a process writes the folder. With
    `wait=False` (run folders) a second process stops at once with `RunLocked` naming the folder and the
    holder's pid; with `wait=True` (capture stores, which a second command may simply want to reuse) it
    waits for the holder to finish. The kernel drops the lock when the holder exits, however it exits
    (kill -9 included), so a crash never leaves a stale lock."""

    def __init__(self, folder: str | Path, what: str = "folder", wait: bool = False):
        self.folder = Path(folder)
        self.what = what
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        import fcntl

        if self._fd is not None:
            return self
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not self.wait:
                os.close(fd)
                raise RunLocked(f"{self.folder} is in use by another veracity process (pid {holder}); "
                                f"wait for it to finish or choose another {self.what}") from None
            print(f"{self.folder} is in use by another veracity process (pid {holder}): waiting for it",
                  file=sys.stderr, flush=True)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)  # closing the descriptor drops the flock
            except OSError:
                pass

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("veracity", "torch", "transformers", "numpy", "scikit-learn", "safetensors", "peft"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, tensors, numpy values and non-finite floats into plain JSON."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):  # torch / numpy
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2))
    os.replace(tmp, path)


# RunFolders started inside `closing_runs()` (the CLI wraps every command in it): closed when the block exits,
# so a command that fails in-process (a test, a notebook) does not keep its folder locked.
_OPENED: "contextvars.ContextVar[list | None]" = contextvars.ContextVar("veracity_open_runs", default=None)


@contextlib.contextmanager
def closing_runs():
    """Release the lock of every `RunFolder` started inside the block when the block exits."""
    token = _OPENED.set([])
    try:
        yield
    finally:
        for run in _OPENED.get() or []:
            run.close()
        _OPENED.reset(token)


class RunFolder:
    """One run's folder. `kind` names the command (capture, probe, ccs, eval, iti-validate, ...).

    Construction only checks (`check_out_folder`): nothing is created. `start()` creates the folder,
    takes its lock (a second process stops with `RunLocked`), empties it with `overwrite` and writes
    config.json; every write method starts the run first, so a command that fails before writing
    anything leaves nothing behind. `defer=False` (the default for library callers) starts at once.
    With `resume`, an existing config.json is only replaced by `finish()`, so a resume refused for other
    settings leaves the folder as it was."""

    def __init__(self, path: str | Path, kind: str, config: dict, *, overwrite: bool = False,
                 resume: bool = False, seed: int | None = None, defer: bool = False):
        self.path = Path(path)
        self.kind = kind
        self.overwrite, self.resume = overwrite, resume
        check_out_folder(self.path, kind, overwrite=overwrite, resume=resume)
        self.config = {"kind": kind, "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "argv": sys.argv, "versions": library_versions(), **config}
        self._lock = FolderLock(self.path, "--out folder")
        self.started = False
        if not defer:
            self.start()

    def start(self) -> "RunFolder":
        """Create (or reopen) the folder under its lock; idempotent."""
        if self.started:
            return self
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunExists(f"cannot create {self.path}: {e.strerror or e}") from None
        self._lock.acquire()
        try:  # again under the lock: another process may have written here since the first check
            check_out_folder(self.path, self.kind, overwrite=self.overwrite, resume=self.resume)
            if self.overwrite and not self.resume:
                # replace the whole run: stale CSVs/PNGs of the old run must not leak into the new one
                for child in [c for c in self.path.iterdir() if c.name != LOCK_NAME]:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            if not (self.resume and (self.path / "config.json").exists()):
                write_json_atomic(self.path / "config.json", self.config)
        except BaseException:
            self._lock.release()
            raise
        self.started = True
        opened = _OPENED.get()
        if opened is not None:
            opened.append(self)
        return self

    def close(self) -> None:
        """Release the folder's lock (also on garbage collection and process exit)."""
        self._lock.release()

    def file(self, name: str) -> Path:
        self.start()
        return self.path / name

    def log(self, message: str) -> None:
        self.start()
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def write_json(self, name: str, obj: Any) -> Path:
        self.start()
        p = self.path / name
        write_json_atomic(p, obj)
        return p

    def write_csv(self, name: str, rows: Iterable[dict]) -> Path:
        self.start()
        rows = [to_jsonable(r) for r in rows]
        p = self.path / name
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, p)
        return p

    def save_figure(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        self.start()
        p = self.path / name
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return p

    def finish(self, results: dict, headline: dict | None = None) -> Path:
        """Write results.json last: its presence marks the run finished. `headline` ({name: value})
        is what `veracity runs list` shows."""
        payload = {"kind": self.kind, "headline": headline or {}, **results}
        self.start()
        if self.resume:  # the settings that produced these results (a resume may extend the grid)
            write_json_atomic(self.path / "config.json", self.config)
        out = self.write_json("results.json", payload)
        self.close()
        return out


def list_runs(root: str | Path) -> list[dict]:
    """Every run folder under root (recursively), with kind, model, data and headline metric. A damaged
    config.json or results.json is one row with status "damaged: <file: what is wrong>" and the listing
    goes on; a missing root is `ArtifactMissing`."""
    from .artifacts import RUN_RESULTS, ArtifactError, ArtifactMissing, read_json, short

    root = Path(root)
    if not root.is_dir():
        raise ArtifactMissing(f"{root}: no such folder" if not root.exists() else f"{root} is a file, not a folder")
    rows = []
    for cfg_path in sorted(root.rglob("config.json")):
        d = cfg_path.parent
        row = {"path": str(d), "kind": None, "model": None, "data": None, "status": "unfinished", "headline": {}}
        try:
            cfg = run_config(d)
        except ArtifactError as e:
            rows.append({**row, "kind": "?", "status": f"damaged: {short(e, d)}"})
            continue
        if cfg is None:
            continue
        row.update(kind=cfg.get("kind"), model=cfg.get("model"), data=cfg.get("dataset") or cfg.get("data"))
        res_path = d / "results.json"
        if res_path.exists():
            try:
                row["headline"] = read_json(res_path, RUN_RESULTS, "run results")["headline"]
                row["status"] = "finished"
            except ArtifactError as e:
                row["status"] = f"damaged: {short(e, d)}"
        rows.append(row)
    return rows


def _table_columns(create_sql: str) -> tuple[str, tuple[str, ...]]:
    """(table, column names) of a `CREATE TABLE [IF NOT EXISTS] name (col TYPE, ..., PRIMARY KEY (...))`."""
    import re

    m = re.match(r"\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)\s*\((.*)\)\s*$", create_sql, re.S | re.I)
    if not m:
        raise ValueError(f"not a CREATE TABLE statement: {create_sql[:60]!r}")
    cols = tuple(c.split()[0] for c in re.split(r",(?![^(]*\))", m.group(2))
                 if c.split() and c.split()[0].upper() not in ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN"))
    return m.group(1), cols


def open_results_db(path: str | Path, results_table_sql: str, config: dict | None, what: str) -> sqlite3.Connection:
    """A run's resumable SQLite results store. Rows are reused only by a run with the same fixed settings:
    `config` is recorded on first open and a different one is refused (naming the keys that differ)."""
    from .artifacts import open_sqlite

    table, cols = _table_columns(results_table_sql)
    # damaged (truncated, garbage, a table missing): one line naming it
    db = open_sqlite(path, {table: cols, "meta": ("key", "value")}, what)
    db.execute(results_table_sql)
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    db.commit()
    if config is None:
        return db
    want = json.dumps(config, sort_keys=True, default=str)
    row = db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
    if row is None:
        with db:
            db.execute("INSERT INTO meta VALUES ('config', ?)", (want,))
    elif row[0] != want:
        old, new = json.loads(row[0]), json.loads(want)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        db.close()
        raise ValueError(f"{path} holds a {what} with other settings (differs in: {', '.join(diff)}); "
                         "use a new --out folder")
    return db
