"""Grid sweep over (alpha, K) with k-fold validation, resumable through an SQLite store in the run folder.

Each (alpha, K, fold) result is one committed row of `results.sqlite`, so a rerun skips finished
configurations and an interrupted run loses at most the configurations in progress (one here, one per
worker with `--executor ray`: see `executors.py`; this process stays the store's only writer). Per fold the
probes and directions are fitted once, for the largest K, and saved (`fold{i}_fit.*`); every (alpha, K)
is a prefix/re-scaling of that fit. alpha = 0 is the plain model whatever K is, so it is evaluated
once per fold and recorded for every K.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..metrics import METRICS, better_sign, columns, headlines, lower_is_better
from ..runs import open_results_db
from .executors import Job, LocalExecutor
from ..steer.intervention import DAMAGED, Intervention
from ..steer.iti import ITIConfig, ITIData, fit_folds
from ..constraints import ListOf
from ..methods import options as o
from .iti_common import ITIRunOptions
from ..data.registry import held_out_texts
from ..methods.fold import FoldEvalConfig, evaluate_intervention, summarise


class ResultStore:
    """SQLite table (alpha, k, fold) -> metrics JSON; one transaction per configuration."""

    def __init__(self, path: str | Path, config: dict | None = None):
        self.path = Path(path)
        self.db = open_results_db(
            self.path, "CREATE TABLE IF NOT EXISTS results (alpha REAL, k INTEGER, fold INTEGER, "
            "metrics TEXT, seconds REAL, finished TEXT, PRIMARY KEY (alpha, k, fold))", config, "sweep")

    def done(self, alpha: float, k: int, fold: int) -> bool:
        """Whether the (alpha, k, fold) cell is already stored: a resumed sweep skips it."""
        return self.db.execute("SELECT 1 FROM results WHERE alpha=? AND k=? AND fold=?",
                               (float(alpha), int(k), int(fold))).fetchone() is not None

    def put(self, alpha: float, k: int, fold: int, metrics: dict, seconds: float) -> None:
        """Store one (alpha, k, fold) cell's metrics and time in one transaction."""
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                            (float(alpha), int(k), int(fold), json.dumps(metrics), float(seconds),
                             time.strftime("%Y-%m-%dT%H:%M:%S")))

    def get(self, alpha: float, k: int, fold: int) -> dict | None:
        """The stored metrics of one (alpha, k, fold) cell, or None."""
        r = self.db.execute("SELECT metrics FROM results WHERE alpha=? AND k=? AND fold=?",
                            (float(alpha), int(k), int(fold))).fetchone()
        return None if r is None else json.loads(r[0])

    def rows(self) -> list[dict]:
        """Every stored cell as a flat row (alpha, k, fold, metrics, seconds), in grid order."""
        return [{"alpha": a, "k": k, "fold": f, **json.loads(m), "seconds": s}
                for a, k, f, m, s in self.db.execute("SELECT alpha, k, fold, metrics, seconds FROM results "
                                                     "ORDER BY alpha, k, fold")]

    def close(self) -> None:
        """Close the SQLite connection."""
        self.db.close()


@dataclass
class SweepResult:
    """The sweep's grid of fold-mean summaries per (alpha, k), the best cell by `metric`, and the plain model's
    figures."""
    grid: dict  # (alpha, k) -> summary dict
    best: tuple[float, int] | None
    metric: str
    baseline: dict


def run_sweep(lm, data: ITIData, items: Sequence, iti: ITIConfig, alphas: Sequence[float], ks: Sequence[int],
              n_folds: int, folder: Path, contiguous: bool = False, ecfg: FoldEvalConfig | None = None,
              metric: str = "true_info", log: Callable[[str], None] = print,
              evaluate: Callable = evaluate_intervention, executor=None) -> SweepResult:
    """Evaluate every (alpha, K, fold) not yet in `folder/results.sqlite`; returns the fold-mean grid.

    `executor` evaluates the pending configurations (`veracity.experiments.executors`): None runs them here on
    `lm` with `evaluate` (`LocalExecutor`); a `RayExecutor` runs them on Ray workers. Either way this
    process fits the folds, owns the store and records each result as it arrives."""
    ecfg = ecfg or FoldEvalConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fixed = {"model": getattr(lm, "fingerprint", None), "iti": {k: v for k, v in iti.__dict__.items() if k != "max_k"},
             "folds": n_folds, "contiguous": contiguous, "data": data.source.get("content_hash"),
             "questions": len(data.questions),
             # side-effect settings only when used, so sweeps written before they existed still resume
             "eval": {k: v for k, v in ecfg.__dict__.items() if not (k.startswith("side_effect") and not v)
                      and not (k == "seed" and not ecfg.side_effects)}}
    if data.source.get("sigma_content_hash"):  # sigma_from="original": its rows are part of the fit
        fixed["sigma_data"] = data.source["sigma_content_hash"]
    store = ResultStore(folder / "results.sqlite", fixed)
    executor = executor if executor is not None else LocalExecutor(lm, evaluate)
    by_index = {it.index: it for it in items}
    kmax = max(ks)
    todo = [(a, k, f) for f in range(n_folds) for a in alphas for k in ks if not store.done(a, k, f)]
    texts = held_out_texts(ecfg.data_dir, ecfg.ce_texts) if (todo and ecfg.ce_texts) else None

    def jobs():
        """Pending jobs fold by fold, fitting (or reopening) each fold's fit when its first job is due.
        alpha = 0 once per fold: its result is recorded for every K."""
        fits = None
        for f in range(n_folds):
            mine = [(a, k) for a, k, f_ in todo if f_ == f]
            if not mine:
                continue
            fit_path = folder / f"fold{f}_fit"
            full = None
            if (folder / f"fold{f}_fit.json").exists():
                try:
                    full = Intervention.load(fit_path)
                except DAMAGED as e:  # a damaged cache is refitted, never trusted
                    log(f"fold {f}: the saved fit cannot be read ({e}): refitting")
            if full is not None and full.k < min(kmax, full.n_layers * full.n_heads):
                # saved by a sweep with a smaller largest K: top(K) would silently hold fewer heads
                log(f"fold {f}: the saved fit has {full.k} heads, K={kmax} needs more: refitting")
                full = None
            if full is None:
                if fits is None:  # probes + directions once per fold, for the largest K
                    fits = fit_folds(data, ITIConfig(**{**iti.__dict__, "max_k": max(kmax, iti.max_k or 0)}),
                                     n_folds=n_folds, contiguous=contiguous)
                full = fits[f].intervention(min(kmax, len(fits[f].heads)), 1.0)
                full.write(fit_path)
            test_q = full.provenance["test_questions"]
            test_items = [by_index[int(q)] for q in test_q if int(q) in by_index]
            baseline_sent = False
            for a, k in mine:
                if store.done(a, k, f):  # alpha=0 filled in for every K by an earlier step
                    continue
                if a == 0:
                    if baseline_sent:
                        continue
                    baseline_sent = True
                yield Job(a, k, f, full, test_items)

    try:
        results = executor.map(jobs(), ecfg, texts, fingerprint=fixed["model"], log=log)
        try:
            for job, m, secs in results:
                a, k, f = job.alpha, job.k, job.fold
                for kk in (ks if a == 0 else [k]):
                    if not store.done(a, kk, f):
                        store.put(a, kk, f, m, secs)
                log(f"alpha={a:g} K={k} fold={f}: " + ", ".join(f"{x}={v:.4f}" for x, v in m.items()
                                                                 if isinstance(v, float)) + f" ({secs:.0f}s)")
        finally:
            if hasattr(results, "close"):
                results.close()  # a Ray executor releases its workers even when interrupted
        grid = {}
        for a in alphas:
            for k in ks:
                ms = [store.get(a, k, f) for f in range(n_folds)]
                if all(m is not None for m in ms):
                    grid[(float(a), int(k))] = summarise(ms)
    finally:
        store.close()
    metric = metric if any(metric in s for s in grid.values()) else "mc2"
    best = pick_best(grid, metric)
    baseline = next((s for (a, _), s in grid.items() if a == 0), {})
    return SweepResult(grid=grid, best=best, metric=metric, baseline=baseline)


def pick_best(grid: dict, metric: str) -> tuple[float, int] | None:
    """The (alpha, K) cell best by `metric`, in the metrics registry's direction (ties: smaller alpha, then K)."""
    sign = better_sign(metric)
    cand = [(key, s[metric]) for key, s in grid.items() if s.get(metric) is not None and not math.isnan(s[metric])]
    if not cand:
        return None
    return min(cand, key=lambda kv: (-sign * kv[1], kv[0][0], kv[0][1]))[0]


def heatmaps(result: SweepResult, alphas: Sequence[float], ks: Sequence[int], folder: Path) -> list[Path]:
    """PNG heatmaps (rows alpha, columns K) of the headline summary metrics (True*Info, MC2, KL) where measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric in [m for m in columns("summary") if m in headlines()]:
        M = np.full((len(alphas), len(ks)), np.nan)
        for i, a in enumerate(alphas):
            for j, k in enumerate(ks):
                s = result.grid.get((float(a), int(k)), {})
                if s.get(metric) is not None:
                    M[i, j] = s[metric]
        if np.isnan(M).all():
            continue
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(ks), 1.0 + 0.6 * len(alphas)))
        im = ax.imshow(M, cmap="viridis_r" if lower_is_better(metric) else "viridis", aspect="auto")
        ax.set_xticks(range(len(ks)), [str(k) for k in ks])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("K (heads)")
        ax.set_ylabel("alpha")
        ax.set_title(metric)
        for i in range(len(alphas)):
            for j in range(len(ks)):
                if not np.isnan(M[i, j]):
                    ax.text(j, i, f"{M[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax)
        p = folder / f"heatmap_{metric}.png"
        fig.savefig(p, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(p)
    return paths


def grid_rows(result: SweepResult) -> list[dict]:
    """The grid as flat rows (alpha, k, metrics, best and baseline flags), for grid.csv and the report."""
    rows = []
    for (a, k), s in sorted(result.grid.items()):
        rows.append({"alpha": a, "k": k, **{m: s.get(m) for m in METRICS if m in s},
                     "best": (a, k) == result.best, "baseline": a == 0})
    return rows


# ------------------------------------------------------------------------------------------ the study

#: results.json layout of an iti-sweep run (docs/reference/results.md); no field = version 0, same layout.
SCHEMA_VERSION = 1


@dataclass
class SweepConfig(ITIRunOptions):
    """Every option of `veracity iti sweep`: the shared ITI options and the grid."""

    _constraints = {"alphas": o.ALPHAS, "num_heads": [ListOf(o.NUM_HEADS)], "metric": o.METRIC}
    _commands = ("iti sweep", "steer sweep")

    alphas: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0)
    num_heads: tuple = (8, 16, 32, 48, 64, 96)
    metric: str = "true_info"
    side_effects: tuple = ("sycophancy", "boolq", "honest", "health")  # every sweep row carries them


@dataclass
class SweepRun:
    """The typed result of an iti-sweep run (what results.json holds)."""

    grid: list[dict]
    best: dict | None
    metric: str
    baseline: dict
    revision: str
    eval_revision: str
    cross_revision: dict | None
    summary: dict
    plots: list[str]
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        if not self.best:
            return {}
        return {"best_alpha": self.best["alpha"], "best_k": self.best["k"], self.metric: self.best[self.metric]}

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "grid": self.grid, "best": self.best, "metric": self.metric,
                "baseline": self.baseline, "revision": self.revision, "eval_revision": self.eval_revision,
                "cross_revision": self.cross_revision, "summary": self.summary, "plots": self.plots}

    @classmethod
    def from_json(cls, d: dict) -> "SweepRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "iti-sweep", SCHEMA_VERSION)
        return cls(grid=d.get("grid", []), best=d.get("best"), metric=d.get("metric", "true_info"),
                   baseline=d.get("baseline", {}), revision=d.get("revision", "2021"),
                   eval_revision=d.get("eval_revision", d.get("revision", "2021")),
                   cross_revision=d.get("cross_revision"), summary=d.get("summary", {}), plots=d.get("plots", []),
                   schema_version=v)

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("grid.csv", self.grid)
        run.finish(self.to_json(), headline=self.headline())


def run_iti_sweep(cfg: SweepConfig, out: str | Path, executor=None,
                  say: Callable[[str], None] = print) -> SweepRun:
    """The (alpha, K) grid as `veracity iti sweep` runs it, resumable in `out` (results.sqlite): settings,
    run folder (checked before loading anything), model, probe data, every pending (alpha, K, fold), the
    heatmaps, grid.csv and results.json. `executor`: None (here) or a `RayExecutor`."""
    from ..runs import RunFolder
    from ..validation import BadInput
    from .iti_common import (check_revisions, iti_config, load_data, load_model, preset_lines,
                             resolve_settings, settings_record)

    a_list, k_list = [float(a) for a in cfg.alphas], [int(k) for k in cfg.num_heads]
    st = resolve_settings(cfg.reproduce, cfg.direction, cfg.data, cfg.sigma_from, cfg.contiguous_folds,
                          cfg.mc_shift_from, cfg.seed)
    eval_revision = cfg.eval_revision or cfg.revision
    check_revisions(cfg.revision, eval_revision, st)
    icfg = iti_config(cfg.direction, st["sigma_from"], st["seed"], max_k=max(k_list), st=st)
    run = RunFolder(out, "iti-sweep", {"model": cfg.model, "data": "truthfulqa", "alphas": a_list,
                                       "num_heads": k_list, "revision": cfg.revision, "eval_revision": eval_revision,
                                       "folds": cfg.folds, "direction": cfg.direction, "judge": cfg.judge,
                                       "metric": cfg.metric, "protocol": cfg.protocol, "limit": cfg.limit,
                                       **settings_record(st), "side_effects": list(cfg.side_effects),
                                       "side_effect_n": dict(cfg.side_effect_n)},
                    resume=True, seed=st["seed"], defer=True)  # checked now (kind, lock), created below
    for line in preset_lines(st):
        say(line)
    lm = load_model(cfg.model, cfg.device, num_heads=k_list)
    data, items, cross = load_data(lm, cfg.data_dir, cfg.limit, cfg.acts, st, cfg.revision, eval_revision,
                                   folds=cfg.folds)
    if cross:
        say(f"fitted on {cfg.revision}, evaluated on {eval_revision}: {cross['matched']} questions matched; "
            f"{len(cross['removed'])} without a {eval_revision} version are not evaluated")

    def log(msg: str) -> None:
        say(msg)
        run.log(msg)

    ecfg = FoldEvalConfig(protocol=cfg.protocol, judge=cfg.judge, data_dir=cfg.data_dir,
                      generate_positions=cfg.gen_positions, ce_texts=cfg.ce_texts, mc_shift_from=st["mc_shift_from"],
                      side_effects=tuple(cfg.side_effects), side_effect_n=dict(cfg.side_effect_n), seed=st["seed"])
    run.start()  # a resume refused by the results store leaves config.json as it was (see RunFolder)
    try:
        res = run_sweep(lm, data, items, icfg, a_list, k_list, cfg.folds, run.path, st["contiguous"], ecfg,
                        metric=cfg.metric, log=log, executor=executor)
    except (RuntimeError, ValueError) as e:
        raise BadInput(str(e)) from None
    rows = grid_rows(res)
    pngs = heatmaps(res, a_list, k_list, run.path)
    best = {"alpha": res.best[0], "k": res.best[1], **res.grid[res.best]} if res.best else None
    result = SweepRun(grid=rows, best=best, metric=res.metric, baseline=res.baseline, revision=cfg.revision,
                      eval_revision=eval_revision, cross_revision=cross,
                      summary=res.grid.get(res.best, {}) if res.best else {}, plots=[p.name for p in pngs])
    result.write(run)
    return result
