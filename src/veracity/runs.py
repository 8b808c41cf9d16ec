"""Run folders: every command that produces results writes one.

Layout: `config.json` (every option, model and data hashes, library versions, seed), `results.json`,
CSV tables, PNG plots and `log.txt`. A folder that already holds a finished run is never overwritten
without `overwrite=True`; `resume=True` reopens an unfinished (or finished) run to continue it.
"""

from __future__ import annotations

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
    pass


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2))
    os.replace(tmp, path)


class RunFolder:
    """One run's folder. `kind` names the command (capture, probe, ccs, eval, iti-validate, ...)."""

    def __init__(self, path: str | Path, kind: str, config: dict, *, overwrite: bool = False,
                 resume: bool = False, seed: int | None = None):
        self.path = Path(path)
        self.kind = kind
        if (self.path / "results.json").exists() and not (overwrite or resume):
            raise RunExists(f"{self.path} already holds a finished run; pass --overwrite to replace it "
                            "(or --resume where the command supports it)")
        if overwrite and self.path.exists() and not resume:
            # replace the whole run: stale CSVs/PNGs of the old run must not leak into the new one
            for child in self.path.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = {"kind": kind, "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "argv": sys.argv, "versions": library_versions(), **config}
        write_json_atomic(self.path / "config.json", self.config)

    def file(self, name: str) -> Path:
        return self.path / name

    def log(self, message: str) -> None:
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def write_json(self, name: str, obj: Any) -> Path:
        p = self.path / name
        write_json_atomic(p, obj)
        return p

    def write_csv(self, name: str, rows: Iterable[dict]) -> Path:
        rows = [to_jsonable(r) for r in rows]
        p = self.path / name
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        tmp = p.with_name(p.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, p)
        return p

    def save_figure(self, fig, name: str) -> Path:
        import matplotlib.pyplot as plt

        p = self.path / name
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return p

    def finish(self, results: dict, headline: dict | None = None) -> Path:
        """Write results.json last: its presence marks the run finished. `headline` ({name: value})
        is what `veracity runs list` shows."""
        payload = {"kind": self.kind, "headline": headline or {}, **results}
        return self.write_json("results.json", payload)


def list_runs(root: str | Path) -> list[dict]:
    """Every run folder under root (recursively), with kind, model, data and headline metric."""
    rows = []
    for cfg_path in sorted(Path(root).rglob("config.json")):
        d = cfg_path.parent
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "kind" not in cfg:
            continue
        res_path = d / "results.json"
        headline, status = {}, "unfinished"
        if res_path.exists():
            try:
                headline = json.loads(res_path.read_text()).get("headline", {})
                status = "finished"
            except json.JSONDecodeError:
                status = "corrupt results.json"
        rows.append({"path": str(d), "kind": cfg.get("kind"), "model": cfg.get("model"),
                     "data": cfg.get("dataset") or cfg.get("data"), "status": status, "headline": headline})
    return rows


def open_results_db(path: str | Path, results_table_sql: str, config: dict | None, what: str) -> sqlite3.Connection:
    """A run's resumable SQLite results store. Rows are reused only by a run with the same fixed settings:
    `config` is recorded on first open and a different one is refused (naming the keys that differ)."""
    db = sqlite3.connect(str(path))
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
