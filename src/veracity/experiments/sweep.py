"""The one sweep engine: a grid of named parameter cells x k folds, one resumable store, an executor.

Every sweep (`iti sweep`, `steer sweep`, and `compare-interventions`' store) is a list of cells (each a dict
of named parameters, `product` builds the usual grid) evaluated on every fold. A study supplies only what is
its own: `fit(fold, key)` (fitted once per fold and fit key, e.g. once per fold for ITI, once per layer for a
residual steer; returns the fit and the fold's held-out items) and `evaluate(lm, job)` (one cell on one fold:
{"metrics": ..., anything else is stored as the cell's extra payload}). `run_grid` evaluates every (cell, fold)
not yet stored, in fold-major grid order, through a `LocalExecutor` or `RayExecutor` (`executors.py`), and
commits each result as it arrives: an interrupted sweep loses at most the cells in progress and a rerun
computes only the missing ones. Picking the best cell goes through the metrics registry's direction only.

The store's table layout is declared once, in `artifacts.SWEEP_STORE` (the safe readers check files against
it); stores written before it (one results table per study, a column per parameter) are read and migrated on
open, so old run folders resume.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Sequence

from ..artifacts import SWEEP_STORE, SWEEP_STORE_KEY, SWEEP_TABLES, open_sqlite
from ..metrics import better_sign, broken
from .executors import Job, LocalExecutor

#: columns of a pre-engine results table that are not parameters (the rest of them, besides the parameters,
#: become the cell's extra payload)
_LEGACY_FIXED = ("fold", "metrics", "seconds", "finished")


def product(*axes: tuple[str, Sequence]) -> list[dict]:
    """The grid of named axes in order, the last varying fastest: product(("alpha", [0, 5]), ("k", [2, 4]))."""
    names = [n for n, _ in axes]
    return [dict(zip(names, vals)) for vals in itertools.product(*(v for _, v in axes))]


def cell_key(cell: dict) -> str:
    """A cell's identity in the store: its parameters as canonical JSON (sorted names)."""
    return json.dumps(cell, sort_keys=True)


def _create_sql(table: str) -> str:
    cols = ", ".join(f"{c} {t}" for c, t in SWEEP_STORE[table])
    key = f", PRIMARY KEY ({', '.join(SWEEP_STORE_KEY)})" if table == "results" else ""
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols}{key})"


def _in_memory(db):
    """An in-memory copy of the SQLite connection `db` (which is closed): what a reader migrates."""
    import sqlite3

    mem = sqlite3.connect(":memory:")
    try:
        db.backup(mem)
    finally:
        db.close()
    return mem


@dataclass
class Stored:
    """One stored (cell, fold): its metrics, the study's extra payload and the seconds it took."""

    metrics: dict
    extra: dict
    seconds: float | None


class SweepStore:
    """The resumable SQLite store of one sweep: (cell, fold) -> metrics, one transaction per result.

    `config`: the settings a resumed sweep must share, recorded on first open (a different one is refused
    naming the keys that differ; None: a reader, which opens the file read-only and never writes to it).
    `params`: the cells' parameter names, which are the columns of a store written before the shared layout
    (`artifacts.LEGACY_STORES`): such a store is migrated in one transaction when its sweep opens it to resume;
    a reader migrates an in-memory copy, leaving the other run's file as it was."""

    def __init__(self, path: str | Path, config: dict | None, what: str, params: Sequence[str]):
        self.path, self.what, self.params = Path(path), what, tuple(params)
        legacy = {"results": (*self.params, "fold", "metrics"), "meta": ("key", "value")}
        reader = config is None
        self.db = open_sqlite(self.path, SWEEP_TABLES, what, legacy=(legacy,), readonly=reader)
        try:
            have = [r[1] for r in self.db.execute("PRAGMA table_info(results)")]
            old_layout = bool(have) and "cell" not in have
            if old_layout:
                if reader:  # the copy is migrated, the other run's file is untouched
                    self.db = _in_memory(self.db)
                self._migrate(have)
            if not reader or old_layout:  # a writable connection: the file, or the reader's copy
                for table in SWEEP_STORE:
                    self.db.execute(_create_sql(table))
                self.db.commit()
            if config is not None:
                self._check(config)
        except BaseException:
            self.db.close()
            raise

    def _migrate(self, cols: list[str]) -> None:
        """Rewrite a pre-engine results table (a column per parameter) into the shared layout, atomically."""
        extra_cols = [c for c in cols if c not in self.params and c not in _LEGACY_FIXED]
        db = self.db
        db.execute("BEGIN")
        try:
            rows = db.execute(f"SELECT {', '.join(cols)} FROM results").fetchall()
            db.execute("ALTER TABLE results RENAME TO results_before_engine")
            db.execute(_create_sql("results"))
            for row in rows:
                r = dict(zip(cols, row))
                extra = {c: json.loads(r[c]) for c in extra_cols if r[c] is not None}
                db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?)",
                           (cell_key({p: r[p] for p in self.params}), r["fold"], r["metrics"],
                            json.dumps(extra), r.get("seconds"), r.get("finished")))
            db.execute("DROP TABLE results_before_engine")
            db.commit()
        except BaseException:
            db.rollback()
            raise

    def _check(self, config: dict) -> None:
        want = json.dumps(config, sort_keys=True, default=str)
        row = self.db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('config', ?)", (want,))
        elif row[0] != want:
            old, new = json.loads(row[0]), json.loads(want)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{self.path} holds a {self.what} with other settings (differs in: {', '.join(diff)}); "
                             "use a new --out folder")

    def recorded(self) -> dict:
        """The settings recorded on first open (the model's fingerprint, folds, seed, ...): what a resume must
        share, and what tells whether two stores' cells are on the same folds; {} when none were recorded."""
        row = self.db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        return {} if row is None else json.loads(row[0])

    def done(self, cell: dict, fold: int) -> bool:
        """Whether (cell, fold) is already stored: a resumed sweep skips it."""
        return self.db.execute("SELECT 1 FROM results WHERE cell=? AND fold=?",
                               (cell_key(cell), int(fold))).fetchone() is not None

    def put(self, cell: dict, fold: int, metrics: dict, seconds: float | None = None,
            extra: dict | None = None) -> None:
        """Store one (cell, fold) result in one transaction, so an interrupted sweep never keeps half of one."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                            (cell_key(cell), int(fold), json.dumps(metrics), json.dumps(extra or {}),
                             None if seconds is None else float(seconds), time.strftime("%Y-%m-%dT%H:%M:%S")))

    def entry(self, cell: dict, fold: int) -> Stored | None:
        """The stored (cell, fold), or None."""
        r = self.db.execute("SELECT metrics, extra, seconds FROM results WHERE cell=? AND fold=?",
                            (cell_key(cell), int(fold))).fetchone()
        return None if r is None else Stored(json.loads(r[0]), json.loads(r[1] or "{}"), r[2])

    def get(self, cell: dict, fold: int) -> dict | None:
        """The stored metrics of (cell, fold), or None."""
        e = self.entry(cell, fold)
        return None if e is None else e.metrics

    def fold_metrics(self, cell: dict, n_folds: int) -> list[dict] | None:
        """The cell's metrics on every fold, or None while a fold is missing."""
        ms = [self.get(cell, f) for f in range(n_folds)]
        return ms if all(m is not None for m in ms) else None

    def rows(self) -> list[tuple[dict, int, Stored]]:
        """Every stored (cell, fold, result), ordered by cell then fold."""
        return [(json.loads(c), f, Stored(json.loads(m), json.loads(x or "{}"), s)) for c, f, m, x, s in
                self.db.execute("SELECT cell, fold, metrics, extra, seconds FROM results ORDER BY cell, fold")]

    def close(self) -> None:
        """Close the SQLite connection."""
        self.db.close()


def one_fit_per_fold(cell: dict) -> tuple:
    """`Grid.fit_key`'s default: every cell of a fold shares one fit (ITI's heads and directions)."""
    return ()


@dataclass
class Grid:
    """What a study sweeps: its cells (grid order), the folds, and its own two steps.

    fit(fold, key) -> (fit, held-out items): called once per fold and `fit_key(cell)` when its first pending
    cell is due (ITI: one key per fold; a residual steer: one per layer). evaluate(lm, job) -> {"metrics":
    ..., extra...}: one cell on one fold (picklable for a `RayExecutor`). share(cell): cells with an equal
    share key are one evaluation per fold recorded for each of them (alpha 0, the plain model, for every K);
    None: each cell its own. describe(job, result, seconds): the log line of a finished cell."""

    cells: list[dict]
    folds: int
    fit: Callable[[int, Hashable], tuple[object, list]]
    evaluate: Callable[[object, Job], dict]
    fit_key: Callable[[dict], Hashable] = one_fit_per_fold
    share: Callable[[dict], Hashable] | None = None
    describe: Callable[[Job, dict, float], str] | None = None

    def pending(self, store: SweepStore) -> list[tuple[dict, int]]:
        """(cell, fold) not yet stored, fold-major in grid order."""
        return [(c, f) for f in range(self.folds) for c in self.cells if not store.done(c, f)]

    def _group(self, cell: dict) -> list[dict]:
        if self.share is None:
            return [cell]
        key = self.share(cell)
        return [c for c in self.cells if self.share(c) == key]

    def jobs(self, store: SweepStore) -> Iterator[Job]:
        """The pending jobs, fold by fold, fitting each (fold, fit key) when its first job is due; one job per
        share group."""
        for f in range(self.folds):
            fits: dict = {}
            sent: set = set()
            for cell in self.cells:
                if store.done(cell, f):
                    continue
                if self.share is not None:
                    group = self.share(cell)
                    if group in sent:
                        continue
                    sent.add(group)
                key = self.fit_key(cell)
                if key not in fits:
                    fits[key] = self.fit(f, key)
                fit, items = fits[key]
                yield Job(dict(cell), f, fit, items)


def run_grid(grid: Grid, store: SweepStore, lm=None, executor=None, fingerprint: str | None = None,
             log: Callable[[str], None] = print) -> int:
    """Evaluate every pending (cell, fold) of `grid` through `executor` (None: a `LocalExecutor` on `lm`),
    committing each result (for every cell of its share group) as it arrives; returns how many jobs ran.
    This process stays the store's only writer."""
    executor = executor if executor is not None else LocalExecutor(lm)
    results = executor.map(grid.jobs(store), grid.evaluate, fingerprint=fingerprint, log=log)
    n = 0
    try:
        for job, res, secs in results:
            extra = {k: v for k, v in res.items() if k != "metrics"}
            for cell in grid._group(job.cell):
                if not store.done(cell, job.fold):
                    store.put(cell, job.fold, res["metrics"], secs, extra)
            n += 1
            if grid.describe is not None:
                log(grid.describe(job, res, secs))
    finally:
        if hasattr(results, "close"):
            results.close()  # a Ray executor releases its workers even when interrupted
    return n


def pick_best(candidates: Iterable[tuple[Hashable, dict]], metric: str,
              tie: Callable[[Hashable], object] | None = None):
    """The key of the candidate (key, summary) best by `metric` in the metrics registry's direction
    (`metrics.better_sign`); None/NaN values never win, nor does a broken setting (`metrics.broken`: half its
    generated answers degenerate) while a working one is there. Ties: the smallest `tie(key)`, else the earliest."""
    sign = better_sign(metric)
    cand = [(i, key, s[metric], broken(s) is None) for i, (key, s) in enumerate(candidates)
            if s.get(metric) is not None and not math.isnan(s[metric])]
    cand = [c for c in cand if c[3]] or cand
    if not cand:
        return None
    return min(cand, key=lambda c: (-sign * c[2], tie(c[1]) if tie else c[0]))[1]
