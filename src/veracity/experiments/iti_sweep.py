"""Grid sweep over (alpha, K) with k-fold validation, resumable through the run folder's results.sqlite.

A study on the shared engine (`experiments.sweep`): each (alpha, K, fold) result is one committed row of the
store, so a rerun skips finished configurations and an interrupted run loses at most the configurations in
progress (one here, one per worker with `--executor ray`: see `executors.py`; this process stays the store's
only writer). Per fold the probes and directions are fitted once, for the largest K, and saved
(`fold{i}_fit.*`); every (alpha, K) is a prefix/re-scaling of that fit. alpha = 0 is the plain model whatever
K is, so it is evaluated once per fold and recorded for every K.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..metrics import METRICS, columns, gain_cost_table, headlines, lower_is_better
from .executors import Job
from .sweep import Grid, SweepStore, pick_best as best_cell, product, run_grid
from ..constraints import ListOf
from ..methods import options as o
from .iti_common import ITIRunOptions
from ..data.registry import held_out_texts
from ..methods.fold import FoldEvalConfig, evaluate_intervention, summarise

if TYPE_CHECKING:
    from ..steer.iti import ITIConfig, ITIData

#: the cells' parameter names (and the columns of a store written before the shared engine)
PARAMS = ("alpha", "k")


def open_store(path: str | Path, config: dict | None = None) -> SweepStore:
    """An iti sweep's results store (`config`: the settings a resume must share; None for reading)."""
    return SweepStore(path, config, "sweep", PARAMS)


@dataclass
class ITICell:
    """One (alpha, K) cell on one fold: the top-K heads of the fold's fit at alpha (alpha 0: the plain model)
    scored by `evaluate` (`methods.fold.evaluate_intervention`). Picklable, so Ray workers run it too."""

    ecfg: FoldEvalConfig
    texts: Sequence[str] | None
    evaluate: Callable = evaluate_intervention
    detector: object = None  # a kept `evaluate.detector.Detector`: its belief in the cell's answers

    def __call__(self, lm, job: Job) -> dict:
        alpha, k, fit = job.cell["alpha"], job.cell["k"], job.fit
        iv = None if alpha == 0 else fit.top(min(k, fit.k)).with_alpha(alpha)
        more = {} if self.detector is None else {"detector": self.detector}
        return {"metrics": dict(self.evaluate(lm, job.items, iv, self.ecfg, self.texts, **more)["metrics"])}


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
              evaluate: Callable = evaluate_intervention, executor=None, detector=None) -> SweepResult:
    """Evaluate every (alpha, K, fold) not yet in `folder/results.sqlite`; returns the fold-mean grid.

    `executor` evaluates the pending configurations (`veracity.experiments.executors`): None runs them here on
    `lm` with `evaluate` (`LocalExecutor`); a `RayExecutor` runs them on Ray workers. Either way this
    process fits the folds, owns the store and records each result as it arrives. `detector` (a kept
    `evaluate.detector.Detector` of this model) adds its belief in every cell's answers."""
    from ..steer.intervention import DAMAGED, Intervention
    from ..steer.iti import ITIConfig, fit_folds
    ecfg = ecfg or FoldEvalConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fixed = {"model": getattr(lm, "fingerprint", None), "iti": {k: v for k, v in iti.__dict__.items() if k != "max_k"},
             "folds": n_folds, "contiguous": contiguous, "data": data.source.get("content_hash"),
             "questions": len(data.questions),
             # side-effect settings only when used, so sweeps written before they existed still resume
             "eval": {k: v for k, v in ecfg.__dict__.items() if not (k.startswith("side_effect") and not v)
                      and not (k == "seed" and not ecfg.side_effects)}}
    if detector is not None:  # cells scored by one detector only (left out without, so older folders resume)
        fixed["detector"] = detector.identity()
    if data.source.get("sigma_content_hash"):  # sigma_from="original": its rows are part of the fit
        fixed["sigma_data"] = data.source["sigma_content_hash"]
    store = open_store(folder / "results.sqlite", fixed)
    by_index = {it.index: it for it in items}
    kmax = max(ks)
    cells = product(("alpha", [float(a) for a in alphas]), ("k", [int(k) for k in ks]))
    fits: list = []  # probes + directions of every fold, fitted once for the largest K when first needed

    def fit(f: int, key) -> tuple[Intervention, list]:
        """The fold's fit for the largest K (reopened from the run folder when it holds enough heads)."""
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
            if not fits:
                fits.extend(fit_folds(data, ITIConfig(**{**iti.__dict__, "max_k": max(kmax, iti.max_k or 0)}),
                                      n_folds=n_folds, contiguous=contiguous))
            full = fits[f].intervention(min(kmax, len(fits[f].heads)), 1.0)
            full.write(fit_path)
        test_q = full.provenance["test_questions"]
        return full, [by_index[int(q)] for q in test_q if int(q) in by_index]

    def describe(job: Job, res: dict, secs: float) -> str:
        return (f"alpha={job.cell['alpha']:g} K={job.cell['k']} fold={job.fold}: "
                + ", ".join(f"{x}={v:.4f}" for x, v in res["metrics"].items() if isinstance(v, float))
                + f" ({secs:.0f}s)")

    try:
        grid_spec = Grid(cells, n_folds, fit, None, describe=describe,
                         share=lambda c: "plain model" if c["alpha"] == 0 else (c["alpha"], c["k"]))
        texts = held_out_texts(ecfg.data_dir, ecfg.ce_texts) if (grid_spec.pending(store) and ecfg.ce_texts) else None
        grid_spec.evaluate = ITICell(ecfg, texts, evaluate, detector)
        run_grid(grid_spec, store, lm, executor, fingerprint=fixed["model"], log=log)
        grid = {}
        for c in cells:
            ms = store.fold_metrics(c, n_folds)
            if ms is not None:
                grid[(c["alpha"], c["k"])] = summarise(ms)
    finally:
        store.close()
    metric = metric if any(metric in s for s in grid.values()) else "mc2"
    best = pick_best(grid, metric)
    baseline = next((s for (a, _), s in grid.items() if a == 0), {})
    return SweepResult(grid=grid, best=best, metric=metric, baseline=baseline)


def pick_best(grid: dict, metric: str) -> tuple[float, int] | None:
    """The (alpha, K) cell best by `metric`, in the metrics registry's direction (ties: smaller alpha, then K)."""
    return best_cell(grid.items(), metric, tie=lambda key: key)


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

    _constraints = {"alphas": o.ALPHAS, "num_heads": [ListOf(o.NUM_HEADS)], "metric": o.METRIC,
                    "detector": o.OPTIONAL_TEXT, "binary": o.BOOL}
    _commands = ("iti sweep", "steer sweep")

    alphas: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0)
    num_heads: tuple = (8, 16, 32, 48, 64, 96)
    metric: str = "true_info"
    side_effects: tuple = ("sycophancy", "boolq", "honest", "health")  # every sweep row carries them
    detector: str | None = None  # a kept detector (`veracity detect`): its belief in every cell's answers
    binary: bool = False  # also TruthfulQA's binary task (every variant, chance 0.5) on each held-out fold


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

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows): the grid (fold means), then the best cell beside the
        baseline."""
        from ..metrics import fmt

        keys = [k for k in columns("summary") if any(k in r for r in self.grid)]
        out = [(f"ITI sweep (fold means; * best by {self.metric}, alpha 0 = baseline)", ["alpha", "K"] + keys + [""],
                [[f"{r['alpha']:g}", r["k"]] + [fmt(k, r.get(k)) for k in keys]
                 + ["*" if r.get("best") else ("baseline" if r.get("baseline") else "")] for r in self.grid])]
        if self.best:
            out.append((f"best by {self.metric}", ["alpha", "K", self.metric, f"baseline {self.metric}"],
                        [[f"{self.best['alpha']:g}", self.best["k"], fmt(self.metric, self.best[self.metric]),
                          fmt(self.metric, self.baseline.get(self.metric))]]))
        return out

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

    def gain_cost(self) -> list[dict]:
        """The gain-against-cost chart's data (`metrics.gain_cost_table`): each (alpha, K) a point of its K's
        series, the plain model (alpha 0, the same for every K: once) the reference."""
        plain = [r for r in self.grid if not r["alpha"]][:1]
        return gain_cost_table([{**r, "series": "plain model", "label": "alpha 0", "reference": "plain model"}
                                for r in plain] +
                               [{**r, "series": f"ITI K={r['k']}", "label": f"alpha {r['alpha']:g}", "reference": None}
                                for r in self.grid if r["alpha"]])

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("grid.csv", self.grid)
        run.write_csv("gain_cost.csv", self.gain_cost())
        run.finish(self.to_json(), headline=self.headline())


def run_iti_sweep(cfg: SweepConfig, out: str | Path, executor=None, *, overwrite: bool = False,
                  log: Callable[[str], None] = print) -> SweepRun:
    """The (alpha, K) grid as `veracity iti sweep` runs it, resumable in `out` (results.sqlite): settings,
    run folder (checked before loading anything), model, probe data, every pending (alpha, K, fold), the
    heatmaps, grid.csv and results.json. `executor`: None (here) or a `RayExecutor`; `overwrite` empties the
    folder (its stored cells too) and starts over."""
    from ..evaluate.detector import load_detector_for
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
    detector = load_detector_for(cfg.detector)  # a bad file is refused before the model loads
    run = RunFolder(out, "iti-sweep", {"model": cfg.model, "data": "truthfulqa", "alphas": a_list,
                                       "num_heads": k_list, "revision": cfg.revision, "eval_revision": eval_revision,
                                       "folds": cfg.folds, "direction": cfg.direction, "judge": cfg.judge,
                                       "metric": cfg.metric, "protocol": cfg.protocol, "limit": cfg.limit,
                                       **settings_record(st), "side_effects": list(cfg.side_effects),
                                       "side_effect_n": dict(cfg.side_effect_n),
                                       **({"detector": cfg.detector} if cfg.detector else {}),
                                       **({"binary": True} if cfg.binary else {})},
                    resume=not overwrite, overwrite=overwrite, seed=st["seed"],
                    defer=True)  # checked now (kind, lock), created below
    for line in preset_lines(st):
        log(line)
    lm = load_model(cfg.model, cfg.device, num_heads=k_list)
    if detector is not None:
        detector.check_model(lm)  # a detector of another model: refused before any work
    data, items, cross = load_data(lm, cfg.data_dir, cfg.limit, cfg.acts, st, cfg.revision, eval_revision,
                                   folds=cfg.folds)
    if cross:
        log(f"fitted on {cfg.revision}, evaluated on {eval_revision}: {cross['matched']} questions matched; "
            f"{len(cross['removed'])} without a {eval_revision} version are not evaluated")

    def both(msg: str) -> None:
        log(msg)
        run.log(msg)

    ecfg = FoldEvalConfig(protocol=cfg.protocol, judge=cfg.judge, data_dir=cfg.data_dir,
                      generate_positions=cfg.gen_positions, ce_texts=cfg.ce_texts, mc_shift_from=st["mc_shift_from"],
                      side_effects=tuple(cfg.side_effects), side_effect_n=dict(cfg.side_effect_n), seed=st["seed"],
                      binary=cfg.binary)
    run.start()  # a resume refused by the results store leaves config.json as it was (see RunFolder)
    try:
        res = run_sweep(lm, data, items, icfg, a_list, k_list, cfg.folds, run.path, st["contiguous"], ecfg,
                        metric=cfg.metric, log=both, executor=executor, detector=detector)
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
