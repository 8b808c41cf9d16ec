"""`veracity steer compare`: every steering method's sweep on the same folds, in one table and one picture.

Each `steer sweep` (and `iti sweep`) run draws its own grid and chart; the question they answer together
(issue 28) is which method, at its best setting, buys the most truthfulness for the least cost, and whether
the before-steering predictors foretold what steering did. This study reads finished sweep folders (and,
optionally, a `compare-interventions` run whose prompt-only methods are reference points) through the safe
readers, refuses folders that are not on the same folds (model weights, folds, seed, --limit / questions,
revisions, protocol, fold layout) or that score the plain model differently (an `iti sweep` poses the questions
with ITI's own prompt: it is compared with other ITI sweeps, not with residual ones), and gives:

- `best`: each method's best cell by `metric` (`sweep.pick_best`, the registry's direction), with every
  measured metric and its standard deviation over folds (read from each sweep's results store);
- `gain_cost`: `metrics.gain_cost_table` over every method's every cell, the plain model and the reference
  run's prompting methods together, so the Pareto front is the front among all of them;
- `predictors`: Spearman's rho (`steer.steerability.rank_agreement`, bootstrap interval over cells) of each
  pre-steering predictor with each outcome (the share of items steered the intended way, the share steered the
  other way, the gain in `metric` over the sweep's own plain model) across every steered cell of every method,
  and per method; `verdict` says whether any |rho| >= 0.5 over 6 or more cells, and whether its interval
  excludes 0 (foretold) or not (suggestive).

No study imports another: the sweeps' results.json files are read as JSON (the layouts this reader knows are
`READS`), their stores through the shared sweep engine's reader. The chart is drawn by report/ (experiments/
cannot import it): `run_steer_compare(..., chart=report.plots.gain_cost)` as the CLI does writes it too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..constraints import Checked, ListOf, Text
from ..metrics import (METRICS, FOLD_GROUPS, better_sign, broken, column_label, fmt, fold_sd, gain_cost_table,
                       headlines, health_measured, metrics_in)
from ..methods import options as o
from .sweep import SweepStore, cell_key, pick_best

#: results.json layout of a steer-compare run (docs/reference/results.md)
SCHEMA_VERSION = 1

#: the results.json schema_version of each run kind this study reads (a newer one is refused)
READS = {"steer-sweep": 1, "iti-sweep": 1, "compare-interventions": 1}
#: the sweeps it compares (a `compare-interventions` run is a `reference` only)
SWEEPS = ("steer-sweep", "iti-sweep")
#: what must be equal for two runs' cells to be on the same folds and scored alike
SAME_FOLDS = ("model", "folds", "seed", "limit", "questions", "revision", "eval_revision", "protocol", "contiguous")
#: a predictor "foretold" the outcome when |rho| reaches this over at least `VERDICT_CELLS` cells holding at least
#: `VERDICT_DISTINCT` different predictor values (every strength of one fitted layer shares its predictors: a rho
#: over two values is a split of ties, not a ranking)
VERDICT_RHO, VERDICT_CELLS, VERDICT_DISTINCT = 0.5, 6, 3


@dataclass
class SteerCompareConfig(Checked):
    """`veracity steer compare`'s options: the sweep run folders, an optional comparison run as reference
    points, and the metric that picks each method's best cell."""

    _constraints = {"runs": [ListOf([Text()], unique=True)], "reference": o.OPTIONAL_TEXT, "metric": o.METRIC}
    _options = {"runs": "RUNS"}
    _commands = ("steer compare",)

    runs: list  # finished `steer sweep` / `iti sweep` run folders
    reference: str | None = None  # a finished `compare-interventions` run: its prompting methods, for reference
    metric: str = "mc2"  # each method's best cell maximises it (minimises for KL / CE)


# ------------------------------------------------------------------------------------------ reading the runs
@dataclass
class _Source:
    """One input run: its folder, kind, results.json, what makes its folds, and its cells' per-fold metrics."""

    path: Path
    kind: str
    results: dict
    same: dict
    folds: dict  # cell_key -> [per-fold metrics]
    items: dict = field(default_factory=dict)  # cell_key -> {question index: its per-question row}, every fold


def _read_source(path: str | Path, kinds: tuple[str, ...]) -> _Source:
    """A finished run of one of `kinds`, read and checked (config.json, results.json, results.sqlite); anything
    else is one `BadInput` naming the folder."""
    from ..artifacts import RUN_RESULTS, read_json
    from ..runs import run_config, schema_version
    from ..validation import BadInput

    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: no such run folder")
    cfg = run_config(path)
    if cfg is None:
        raise BadInput(f"{path} is not a veracity run folder (no config.json)")
    kind = str(cfg["kind"])
    if kind not in kinds:
        raise BadInput(f"{path} holds a {kind} run; expected {' or '.join(kinds)}")
    if not (path / "results.json").exists() or not (path / "results.sqlite").exists():
        raise BadInput(f"{path}: an unfinished {kind} run (no results.json or results.sqlite); finish it first")
    res = read_json(path / "results.json", RUN_RESULTS, "run results")
    try:
        schema_version(res, kind, READS[kind])
    except ValueError as e:
        raise BadInput(f"{path}: {e}") from None
    params = {"steer-sweep": ("layer", "alpha"), "iti-sweep": ("alpha", "k"), "compare-interventions": ("method",)}
    store = SweepStore(path / "results.sqlite", None, kind, params[kind])
    try:
        fixed = store.recorded()
        folds: dict = {}
        items: dict = {}
        for c, f, e in store.rows():
            folds.setdefault(cell_key(c), {})[f] = e.metrics
            rows = e.extra.get("per_question") if isinstance(e.extra, dict) else None
            for r in rows if isinstance(rows, list) else []:
                if isinstance(r, dict) and "index" in r:
                    items.setdefault(cell_key(c), {})[r["index"]] = r
    finally:
        store.close()
    same = _same_of(kind, cfg, res, fixed)
    n = same["folds"] if isinstance(same["folds"], int) else 0
    per_cell = {k: [v[f] for f in range(n)] for k, v in folds.items() if n and all(f in v for f in range(n))}
    return _Source(path, kind, res, same, per_cell, items)


def _same_of(kind: str, cfg: dict, res: dict, fixed: dict) -> dict:
    """The settings that make a run's folds and scoring (`SAME_FOLDS`), from where each kind records them: the
    results store's recorded settings (the model's weights fingerprint, the question count), config.json and
    results.json."""
    if kind == "steer-sweep":
        d = {k: fixed.get(k) for k in ("model", "folds", "seed", "limit", "questions", "revision", "eval_revision",
                                       "protocol")}
        return {**d, "contiguous": False}
    if kind == "iti-sweep":
        rev = res.get("revision", cfg.get("revision"))
        return {"model": fixed.get("model"), "folds": fixed.get("folds"), "seed": cfg.get("seed"),
                "limit": cfg.get("limit"), "questions": fixed.get("questions"), "revision": rev,
                "eval_revision": res.get("eval_revision", rev), "protocol": cfg.get("protocol"),
                "contiguous": bool(fixed.get("contiguous"))}
    c = res.get("config", {})  # compare-interventions: its CompareConfig
    q = fixed.get("questions")
    rev = c.get("revision", "2021")
    return {"model": fixed.get("model"), "folds": c.get("n_folds"), "seed": c.get("seed"), "limit": c.get("limit"),
            "questions": q[-1] if isinstance(q, list) and q else q, "revision": rev,
            "eval_revision": c.get("eval_revision") or rev, "protocol": c.get("protocol"), "contiguous": False}


def check_same_folds(sources: list[_Source]) -> None:
    """Refuse runs that are not on the same folds: one `BadInput` naming each setting that differs and the
    value every folder has for it."""
    from ..validation import BadInput

    first = sources[0].same
    diff = [k for k in SAME_FOLDS if any(s.same.get(k) != first.get(k) for s in sources[1:])]
    if diff:
        parts = [f"{k} (" + ", ".join(f"{s.path.name}: {_short(s.same.get(k))}" for s in sources) + ")"
                 for k in diff]
        raise BadInput("these runs are not on the same folds, so their cells cannot be compared; they differ in "
                       + "; ".join(parts))


def check_same_scoring(plains: list[tuple[str, dict]], tol: float = 1e-4) -> None:
    """Refuse runs whose plain model scores differ on the same folds (each target metric, MC1 / MC2 and the
    judged rates; `tol` allows for float noise): they do not score alike, e.g. an `iti sweep` poses the questions with ITI's own prompt, so its cells
    cannot be compared with a residual sweep's. `plains`: (run name, its plain-model row)."""
    from ..validation import BadInput

    for k in metrics_in("target", detail=False):
        vals = [(n, p[k]) for n, p in plains if _num(p.get(k))]
        if vals and max(v for _, v in vals) - min(v for _, v in vals) > tol:
            raise BadInput(f"these runs score the plain model differently on the same folds ({k}: "
                           + ", ".join(f"{n} {v:.4f}" for n, v in vals) + "), so their cells cannot be compared "
                           "(an iti sweep scores with its own prompt: compare it with other iti sweeps)")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v) -> str:
    return f"{v[:12]}..." if isinstance(v, str) and len(v) > 15 else str(v)


def _cells(src: _Source, series: str) -> tuple[dict | None, list[dict]]:
    """(the plain-model point, the steered points) of one sweep: its grid rows with their fold s.d., each
    named by its series (the method) and label (its setting)."""
    plain, steered = None, []
    for r in src.results.get("grid", []):
        if src.kind == "steer-sweep":
            params = {"layer": r["layer"], "alpha": r["alpha"]}
            is_plain, label = r["layer"] < 0, f"layer {r['layer']} alpha {r['alpha']:g}"
        else:
            params = {"alpha": r["alpha"], "k": r["k"]}
            is_plain, label = not r["alpha"], f"K {r['k']} alpha {r['alpha']:g}"
        point = {k: v for k, v in r.items() if k not in ("best", "baseline")}
        point.update(fold_sd(src.folds.get(cell_key(params), []), METRICS), run=str(src.path))
        point["_items"] = src.items.get(cell_key(params), {})
        if is_plain:
            plain = plain or {**point, "series": "plain model", "label": "plain", "reference": "plain model"}
        else:
            steered.append({**point, "series": series, "label": label, "reference": None})
    return plain, steered


def _prompting(src: _Source) -> list[dict]:
    """The reference run's prompt-only methods (a prompt, no trainer, no steer) as "prompting" points."""
    from ..methods.prepare import parse_method

    out = []
    for r in src.results.get("methods", []):
        try:
            spec = parse_method(r["method"])
        except ValueError:
            continue
        if spec.trainer is None and spec.steer is None and spec.prompt != "baseline":
            out.append({**r, "series": r["method"], "label": r["method"], "reference": "prompting",
                        "run": str(src.path), "_items": src.items.get(cell_key({"method": r["method"]}), {})})
    return out


def measured(rows: list[dict]) -> list[str]:
    """The registered metrics a fold evaluation measures (`metrics.FOLD_GROUPS`) that some row has, registry
    order: the columns of the best-per-method table."""
    return [k for k in metrics_in(*FOLD_GROUPS) if any(isinstance(r.get(k), (int, float)) for r in rows)]


def predictor_rows(cells: list[dict], metric: str, seed: int = 0) -> list[dict]:
    """Spearman's rho of every (predictor, outcome) across `cells` (scope "all") and within each method (scope =
    the series), with its bootstrap interval: `steer.steerability.rank_agreement` over the cells that carry both;
    pairs with fewer than three such cells are left out. `distinct`: how many different predictor values those
    cells have (a predictor is fitted per layer, so every strength of a layer shares one: ties, not evidence).
    A cell that broke the model (`metrics.broken`) is left out: its gain is a flattened model's, not steering."""
    from ..steer.steerability import OUTCOMES, PREDICTORS, rank_agreement

    cells = [c for c in cells if broken(c) is None]
    outcomes = (*OUTCOMES, f"{metric}_gain")
    scopes = [("all", cells)] + [(s, [c for c in cells if c["series"] == s])
                                 for s in dict.fromkeys(c["series"] for c in cells)]
    out = []
    for scope, rows in scopes:
        for p in PREDICTORS:
            for oc in outcomes:
                g = rank_agreement(rows, p, oc, seed=seed)
                if g["spearman"] is not None:
                    both = [r[p] for r in rows if _num(r.get(p)) and _num(r.get(oc))]
                    out.append({"scope": scope, **g, "distinct": len(set(both))})
    return out


def paired_rows(best: list[dict], plain: dict | None, prompting: list[dict], metric: str, seed: int = 0) -> list[dict]:
    """Each method's best cell against the plain model and against each prompting method, and each prompting
    method against the plain model, paired by held-out question: `steer.steerability.paired_difference` of the
    per-question `metric` (each question scored once, on the fold that held it out; the difference is in the
    metric's own units; `call`: "better" / "worse" where the 95% interval lies wholly on the registry's better /
    worse side of 0, else "within noise"; "broken model" where `a` broke the model, `metrics.broken`; a fold
    mean's s.d. over two folds cannot separate steers that the per-question pairing does). Rows whose runs store
    no per-question `metric` (KL, CE, the side effects are not per question) are left out."""
    from ..steer.steerability import paired_difference

    refs = ([("plain model", plain)] if plain else []) + [(p["series"], p) for p in prompting]
    pairs = [(b["method"], b["setting"], b, n, r) for b in best for n, r in refs]
    pairs += [(p["series"], p["label"], p, "plain model", plain) for p in prompting if plain]
    sign, out = better_sign(metric), []
    for name, setting, a, vs, b in pairs:
        x = {i: q.get(metric) for i, q in a.get("_items", {}).items()}
        y = {i: q.get(metric) for i, q in b.get("_items", {}).items()}
        g = paired_difference(x, y, seed=seed)
        if not g["n"]:
            continue
        call = None
        if broken(a):  # a broken model's gain is its flattened probabilities, not truthfulness (`metrics.broken`)
            call = "broken model"
        elif g["low"] is not None:
            lo, hi = sorted((sign * g["low"], sign * g["high"]))
            call = "better" if lo > 0 else "worse" if hi < 0 else "within noise"
        out.append({"method": name, "setting": setting, "against": vs, "metric": metric, **g, "call": call})
    return out


def verdict(rows: list[dict]) -> str:
    """One line: did any predictor foretell an outcome? A pair counts when |rho| >= 0.5 over 6 or more cells
    with 3+ distinct predictor values; it is "foretold" only where its 95% bootstrap interval also excludes 0,
    else "suggestive" (a point rho over a handful of cells is not a finding). Names the strongest pair."""
    hits = [r for r in rows if r["n"] >= VERDICT_CELLS and r["distinct"] >= VERDICT_DISTINCT
            and abs(r["spearman"]) >= VERDICT_RHO]
    if not hits:
        most = max((r["n"] for r in rows), default=0)
        return (f"no predictor foretold the outcome: no |Spearman rho| >= {VERDICT_RHO} over {VERDICT_CELLS} or more "
                f"cells with {VERDICT_DISTINCT}+ distinct predictor values (at most {most} cells per pair)")
    sure = [r for r in hits if r["low"] is not None and (r["low"] > 0 or r["high"] < 0)]
    top = max(sure or hits, key=lambda r: (abs(r["spearman"]), r["n"]))
    ci = "" if top["low"] is None else f" [{top['low']:+.2f}, {top['high']:+.2f}]"
    strongest = (f"strongest: {top['predictor']} ~ {top['outcome']} rho {top['spearman']:+.2f}{ci} over {top['n']} "
                 f"cells, {top['distinct']} distinct predictor values ({top['scope']})")
    if sure:
        return (f"{len(sure)} predictor-outcome pair(s) foretold the outcome (|rho| >= {VERDICT_RHO} over >= "
                f"{VERDICT_CELLS} cells, 95% interval excluding 0); {strongest}")
    return (f"suggestive, not shown: {len(hits)} predictor-outcome pair(s) with |rho| >= {VERDICT_RHO} over >= "
            f"{VERDICT_CELLS} cells, but every 95% interval spans 0; {strongest}")


# ------------------------------------------------------------------------------------------ the result
@dataclass
class SteerCompareResult:
    """The typed result: each method's best cell, the gain-cost rows of every cell (Pareto over all), the
    predictors' rank correlations and their verdict."""

    metric: str
    runs: list[dict]  # per input run: path, kind, method (series)
    reference: str | None
    same: dict  # the settings every run shares (SAME_FOLDS)
    best: list[dict]
    gain_cost: list[dict]
    predictors: list[dict]
    verdict: str
    paired: list[dict] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The best method by `metric` over every method's best cell (`pick_best`): what `runs list` shows."""
        at = pick_best([(i, r) for i, r in enumerate(self.best)], self.metric)
        if at is None:
            return {}
        b = self.best[at]
        return {"best_method": b["method"], "best_setting": b["setting"], self.metric: b[self.metric]}

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The console tables (each fits 80 columns): the best cell per method with its target and LM cost, the
        side effects of those cells, the Pareto front of the target against KL, the predictors (all cells)."""
        m = self.metric
        lead = [k for k in dict.fromkeys([m, *headlines("binary"), *metrics_in("lm")])
                if any(r.get(k) is not None for r in self.best)]

        def pm(k, r):
            sd = r.get(k + "_sd")
            return fmt(k, r.get(k)) + (f"±{fmt(k, sd)}" if sd is not None and r.get(k) is not None else "")

        blind = [r["method"] for r in self.best if not health_measured(r)]  # the broken rule cannot judge these
        out = [(f"best cell per method by {column_label(m, short=True)} (fold mean ± s.d.)" + (
                    f"; generation health not measured for {', '.join(blind)}, so a broken model there is not caught"
                    " (--side-effects health)" if blind else ""),
                ["method", "setting"] + [column_label(k, short=True) for k in lead],
                [[r["method"], r["setting"] + (" (broken)" if r.get("broken") else "")] + [pm(k, r) for k in lead]
                 for r in self.best])]
        side = [k for k in metrics_in("side_effect", "health", detail=False)
                if any(r.get(k) is not None for r in self.best)]
        if side:
            out.append(("side effects of each method's best cell", ["method"] + [column_label(k, short=True)
                                                                                 for k in side],
                        [[r["method"]] + [fmt(k, r.get(k)) for k in side] for r in self.best]))
        front = [r for r in self.gain_cost if r["pareto"] and r["gain_metric"] == m and r["cost_metric"] == "kl"]
        if front:
            out.append((f"Pareto front of {column_label(m, short=True)} against KL (every method, every cell)",
                        ["series", "setting", column_label(m, short=True), "KL"],
                        [[r["series"], r["label"], fmt(m, r["gain"]), fmt("kl", r["cost"])]
                         for r in sorted(front, key=lambda r: r["cost"])]))
        if self.paired:
            out.append((f"paired by question: {column_label(m, short=True)} difference, 95% bootstrap interval",
                        ["method", "against", "difference", "95% interval", "up/down", "call"],
                        [[f"{r['method']} {r['setting']}" if r["setting"] != r["method"] else r["method"],
                          r["against"], f"{r['difference']:+.3f}",
                          "-" if r["low"] is None else f"{r['low']:+.3f} .. {r['high']:+.3f}",
                          f"{r['up']:.0%}/{r['down']:.0%}", r["call"] or "-"] for r in self.paired]))
        allp = [r for r in self.predictors if r["scope"] == "all"]
        out.append((f"did the predictors foretell the outcome? {self.verdict}",
                    ["predictor", "outcome", "cells", "values", "rho", "95% interval"],
                    [[r["predictor"], r["outcome"], str(r["n"]), str(r.get("distinct", "-")), f"{r['spearman']:+.2f}",
                      "-" if r["low"] is None else f"{r['low']:+.2f} .. {r['high']:+.2f}"] for r in allp]))
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "metric": self.metric, "runs": self.runs,
                "reference": self.reference, "same": self.same, "best": self.best, "gain_cost": self.gain_cost,
                "predictors": self.predictors, "verdict": self.verdict, "paired": self.paired, "plots": self.plots}

    @classmethod
    def from_json(cls, d: dict) -> "SteerCompareResult":
        """Read a results.json payload back, for the report; a newer schema_version is refused."""
        from ..runs import schema_version

        v = schema_version(d, "steer-compare", SCHEMA_VERSION)
        return cls(d.get("metric", "mc2"), d.get("runs", []), d.get("reference"), d.get("same", {}),
                   d.get("best", []), d.get("gain_cost", []), d.get("predictors", []), d.get("verdict", ""),
                   d.get("paired", []), d.get("plots", []), schema_version=v)

    def write(self, run, chart: Callable[..., bytes] | None = None) -> None:
        """best.csv, gain_cost.csv, predictors.csv, gain_cost.png where `chart` draws it (report.plots.gain_cost:
        rows, title= -> PNG bytes), then results.json with the headline."""
        run.write_csv("best.csv", self.best)
        run.write_csv("gain_cost.csv", self.gain_cost)
        run.write_csv("predictors.csv", self.predictors)
        run.write_csv("paired.csv", self.paired)
        self.plots = []
        if chart is not None and self.gain_cost:
            labels = {n: f"{METRICS[n].label} ({METRICS[n].unit})" for r in self.gain_cost
                      for n in (r["gain_metric"], r["cost_metric"]) if n in METRICS}
            run.file("gain_cost.png").write_bytes(chart(self.gain_cost, title="every steering method on the same "
                                                        "folds: target against cost", labels=labels))
            self.plots.append("gain_cost.png")
        run.finish(self.to_json(), headline=self.headline())


# ------------------------------------------------------------------------------------------ the study
def run_steer_compare(config: SteerCompareConfig, out: str | Path, *, overwrite: bool = False,
                      log: Callable[[str], None] = print,
                      chart: Callable[..., bytes] | None = None) -> SteerCompareResult:
    """Read and check every input run (same folds, or one `BadInput`), then write the comparison to `out`:
    best per method, the gain-cost rows over every cell with the Pareto front, the predictors. `chart` (the
    CLI passes `report.plots.gain_cost`) also writes gain_cost.png."""
    from ..runs import RunFolder

    run = RunFolder(out, "steer-compare", {"runs": [str(p) for p in config.runs], "reference": config.reference,
                                           "metric": config.metric}, overwrite=overwrite, defer=True)
    sources = [_read_source(p, SWEEPS) for p in config.runs]
    ref = _read_source(config.reference, ("compare-interventions",)) if config.reference else None
    check_same_folds(sources + ([ref] if ref else []))
    names = [s.results.get("method", "iti") if s.kind == "steer-sweep" else "iti" for s in sources]
    series = [n if names.count(n) == 1 else f"{n} ({s.path.name})" for n, s in zip(names, sources)]
    both = [(name, *_cells(s, name)) for s, name in zip(sources, series)]
    base = [r for r in (ref.results.get("methods", []) if ref else []) if r.get("method") == "baseline"]
    check_same_scoring([(n, p) for n, p, _ in both if p is not None]
                       + [(f"{ref.path.name} baseline", r) for r in base])
    plain, cells, sign = None, [], better_sign(config.metric)
    for s, (name, p, steered) in zip(sources, both):
        plain = plain or p
        for c in steered:  # the gain over its own sweep's plain model (the same scorer), in the better direction
            if p is not None and _num(c.get(config.metric)) and _num(p.get(config.metric)):
                c[f"{config.metric}_gain"] = sign * (c[config.metric] - p[config.metric])
        cells += steered
        log(f"{name}: {len(steered)} steered cells from {s.path}")
    cols = measured(cells + ([plain] if plain else []))
    best, best_cells = [], []
    for name in series:
        mine = [c for c in cells if c["series"] == name]
        at = pick_best([(i, c) for i, c in enumerate(mine)], config.metric)
        if at is None:
            continue
        c = mine[at]
        best_cells.append({**c, "method": name, "setting": c["label"]})
        best.append({"method": name, "setting": c["label"], "run": c["run"],
                     **{k: c[k] for k in ("layer", "alpha", "k") if k in c},
                     **{x: c[x] for k in cols for x in (k, k + "_sd") if x in c},
                     "broken": broken(c)})  # every cell of this method broke the model (`metrics.broken`)
    prompting = _prompting(ref) if ref else []
    gc = gain_cost_table(([plain] if plain else []) + prompting + cells)
    preds = predictor_rows(cells, config.metric)
    if n_broken := sum(broken(c) is not None for c in cells):
        log(f"predictors: {n_broken} cell(s) that broke the model left out (metrics.broken)")
    paired = paired_rows(best_cells, plain, prompting, config.metric)
    result = SteerCompareResult(config.metric,
                                [{"path": str(s.path), "kind": s.kind, "method": n} for s, n in zip(sources, series)],
                                str(ref.path) if ref else None, sources[0].same, best, gc, preds, verdict(preds),
                                paired)
    log(result.verdict)
    result.write(run, chart)
    return result
