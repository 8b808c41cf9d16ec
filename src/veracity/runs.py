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
import sys
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable


from .outputs import (LOCK_NAME, RunExists, RunLocked, check_out_folder, folder_kind,  # noqa: F401 (re-exported)
                      run_config)


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
        """The stored value of finished unit `key`, or None when it has not finished."""
        return self.done.get(key)

    def put(self, key: str, value: Any) -> None:
        """Record unit `key` as finished with `value` and rewrite the file atomically, so a crash loses at most the
        unit in progress."""
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
        """Take the lock (waiting or raising `RunLocked` as `wait` says); calling it while held is a no-op."""
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
        """Drop the lock (safe to call when not held)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)  # closing the descriptor drops the flock
            except OSError:
                pass

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def library_versions() -> dict[str, str]:
    """Python's and the main libraries' versions, recorded in every config.json so a result can be traced to its
    environment."""
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
    """Write JSON through a temp file and a rename, so a reader never sees half a file."""
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
        made = [a for a in [self.path, *self.path.parents] if not a.exists()]
        had_lock = (self.path / LOCK_NAME).exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunExists(f"cannot create {self.path}: {e.strerror or e}") from None
        try:
            self._lock.acquire()
        except BaseException:
            _undo_start(self.path, made, had_lock)
            raise
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
            _undo_start(self.path, made, had_lock)
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
        """The path of `name` inside the run folder (the run is started first), for files a command writes itself."""
        self.start()
        return self.path / name

    def log(self, message: str) -> None:
        """Append a time-stamped line to the run's log.txt."""
        self.start()
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def write_json(self, name: str, obj: Any) -> Path:
        """Write `obj` as JSON into the run folder, atomically."""
        self.start()
        p = self.path / name
        write_json_atomic(p, obj)
        return p

    def write_csv(self, name: str, rows: Iterable[dict]) -> Path:
        """Write rows of dicts as a CSV (columns: every key, in first-seen order), atomically."""
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
        """Save a matplotlib figure as a PNG in the run folder and close it (long sweeps do not pile up figures)."""
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


def _undo_start(path: Path, made: list[Path], had_lock: bool) -> None:
    """A refused start leaves nothing behind: no lock file in a folder it did not hold one in, no folder it
    created."""
    if not had_lock:
        with contextlib.suppress(OSError):
            (path / LOCK_NAME).unlink()
    for a in made:
        with contextlib.suppress(OSError):
            a.rmdir()


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
