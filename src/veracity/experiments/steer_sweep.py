"""`veracity steer sweep`: one sweep for every steering method on TruthfulQA's folds.

- ``caa`` / ``lat`` (residual-stream steering, `veracity.steer.residual_tqa`): a grid of decoder layer x
  alpha. Per fold the vector is fitted once per layer on the training questions' rows (alpha only scales
  it), then every (layer, alpha) is scored on the held-out questions with the comparison's scorer
  (`methods.evaluate.evaluate_prepared`: MC1/MC2 under the method's Q/A prompt, CE/KL, generation and judges
  with a judge, and the side effects). The plain model (layer -1) is scored once per fold; a family's identity
  alpha (`SteerFamily.identity`: caa's 0) shares that evaluation at every layer, any other alpha (ACE's
  ablation at 0, angular's angle 0) is a cell of its own. Every residual family also takes the other
  parameters it declares by name (--steer-param NAME=VALUE, e.g. ACE's reference, a conditional steer's inner
  steer); with --cosmic, COSMIC's generation-free layer choice (`steer.layer_select`, on each training fold)
  is reported beside the sweep's best layer and that layer's rank among COSMIC's scores.
- ``iti``: the ITI sweep (`veracity iti sweep`, K x alpha) with its options.

A study on the shared engine (`experiments.sweep`): each (layer, alpha, fold) is a committed row of
results.sqlite; a rerun with the same settings (a longer grid allowed) evaluates only what is missing, and
rescales each (fold, layer)'s fitted steer kept in the run folder's fits/ (`SteerFamily.load`) instead of
refitting it.
Folds: `probes.splits.question_folds` with the seed, the same held-out questions as `iti validate`,
`iti sweep` and `compare-interventions`. An option of a parameter the chosen steer does not declare
(`methods.steers.SteerParam`: --num-heads with caa, --layers with iti) is refused, never ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..constraints import Checked, IgnoredUnless, Instance, Interval, ListOf, Options, Parses
from ..metrics import aggregate_folds, columns, fmt, gain_cost_table, headlines
from ..methods import options as o
from ..methods.steers import IN_PARAMS, STEERS, SteerFamily, check_steer_params, steers_with
from ..runs import schema_version
from ..steer.steerability import cell_steerability
from .iti_common import ITIRunOptions
from .sweep import Grid, SweepStore, pick_best, run_grid

#: results.json layout of a steer-sweep run (docs/reference/results.md)
SCHEMA_VERSION = 1

#: the cells' parameter names (and the columns of a store written before the shared engine); layer -1 with
#: alpha 0 is the plain model
PARAMS = ("layer", "alpha")


def open_store(path: str | Path, config: dict | None = None) -> SweepStore:
    """A steer sweep's results store (`config`: the settings a resume must share; None for reading)."""
    return SweepStore(path, config, "steer sweep", PARAMS)


#: the plain model's cell: scored once per fold, whatever the steer
PLAIN = {"layer": -1, "alpha": 0.0}
#: the run folder's subfolder keeping each (fold, layer)'s fitted steer (`SteerFamily.load` reads it back)
FITS = "fits"
#: the store's fixed settings that belong to the steer alone: sweeps differing only in these score the plain
#: model identically, so one may reuse another's plain rows (`--plain-from`)
STEER_OWN = ("method", "normalize", "steer_params")


def plain_source(path: str | Path) -> dict:
    """The settings recorded by the steer sweep at `path` (a run folder) whose plain rows are to be reused,
    read through the store's checked reader; anything else is one `BadInput` naming it."""
    from ..validation import BadInput

    db = Path(path) / "results.sqlite"
    if not db.is_file():
        raise BadInput(f"--plain-from: {db} is missing; that folder holds no steer sweep")
    src = open_store(db)
    try:
        fixed = src.recorded()
    finally:
        src.close()
    if not fixed:
        raise BadInput(f"--plain-from: {db} records no settings; not a steer sweep's store")
    return fixed


def check_plain_source(path: str | Path, theirs: dict, fixed: dict) -> None:
    """Refuse (one `BadInput` naming them) a `--plain-from` sweep whose recorded settings `theirs`
    (`plain_source`) differ from `fixed` in anything but the steer's own (`STEER_OWN`): its plain model would
    not be this sweep's."""
    from ..validation import BadInput

    mine = json.loads(json.dumps(fixed, sort_keys=True, default=str))  # as the store records it
    diff = sorted(k for k in set(theirs) | set(mine) if k not in STEER_OWN and theirs.get(k) != mine.get(k))
    if diff:
        raise BadInput(f"--plain-from {path}: a sweep of other settings (differs in: {', '.join(diff)}); its "
                       "plain model is not this sweep's")


def reuse_plain_rows(store: SweepStore, path: str | Path, n_folds: int) -> list[int]:
    """Copy the plain-model rows of the steer sweep at `path` (checked by `check_plain_source`) into `store` for
    the folds it lacks; returns the folds copied. A fold the source has not scored yet (it may still be
    running) is left to this sweep."""
    src = open_store(Path(path) / "results.sqlite")
    copied = []
    try:
        for f in range(n_folds):
            e = None if store.done(PLAIN, f) else src.entry(PLAIN, f)
            if e is not None:
                store.put(PLAIN, f, e.metrics, e.seconds, {**e.extra, "plain_from": str(path)})
                copied.append(f)
    finally:
        src.close()
    return copied


class UnlessSteer(IgnoredUnless):
    """`field` means something only for the registered steers `uses(family)` accepts (read when checked, so a
    steer registered later counts): given with another --method, it is refused naming both options."""

    def __init__(self, field: str, uses: Callable[[SteerFamily], bool], example):
        self.field, self.on, self.example, self.other, self.uses = field, "method", example, None, uses
        self.fields = (field, "method")

    @property
    def values(self) -> tuple[str, ...]:
        """The registered steers that take `field`, read now (a steer registered later counts)."""
        return tuple(n for n, f in STEERS.items() if self.uses(f))


def _has(param: str) -> Callable[[SteerFamily], bool]:
    return lambda family: family.name in steers_with(param)


def _heads_sweep(family: SteerFamily) -> bool:
    return family.sweep == "heads"


@dataclass
class SteerSweepConfig(Checked):
    """Every option of `veracity steer sweep`, checked whatever the method (`iti` runs `iti_sweep.SweepConfig`;
    the CLI builds this one for iti too): a steer parameter's option the chosen steer does not declare
    (--layers, --normalize with iti; --num-heads, --direction, --sigma-from with caa / lat) and the ITI
    sweep's own options with a residual steer are refused."""

    _constraints = {"model": o.MODEL, "method": o.STEER, "layers": [ListOf([Interval(int, None, None)],
                                                                                       min_len=0)],
                    "alphas": o.ALPHAS, "normalize": o.NORMALIZE, "folds": o.FOLDS,
                    "seed": o.SEED, "protocol": o.PROTOCOL, "judge": o.JUDGE,
                    "metric": o.METRIC, "ce_texts": o.COUNT0, "limit": o.LIMIT, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N, "revision": o.REVISION, "eval_revision": o.OPTIONAL_REVISION,
                    "data_dir": o.OPTIONAL_TEXT, "acts": o.OPTIONAL_TEXT, "device": o.DEVICE,
                    "detector": o.OPTIONAL_TEXT, "plain_from": o.OPTIONAL_TEXT, "binary": o.BOOL,
                    "num_heads": [ListOf(o.NUM_HEADS, min_len=0)], "cosmic": [Instance(bool)],
                    "steer_params": [Parses(check_steer_params, "steer parameters {name: value} of registered steers",
                                            bad=[{"nosuch": 1}], example={"reference": "all"})],
                    "direction": list(STEERS["iti"].param("direction").constraints),
                    "sigma_from": list(STEERS["iti"].param("sigma_from").constraints),
                    **{k: ITIRunOptions._constraints[k] for k in ("data", "mc_shift_from", "reproduce",
                                                                  "contiguous_folds", "gen_positions")}}
    _rules = (UnlessSteer("layers", _has("layers"), example=(1,)),
              UnlessSteer("normalize", _has("normalize"), example="unit"),
              UnlessSteer("num_heads", _has("k"), example=(8,)),
              UnlessSteer("direction", _has("direction"), example="probe"),
              UnlessSteer("sigma_from", _has("sigma_from"), example="all"),
              UnlessSteer("cosmic", _has("layer_select"), example=True),
              UnlessSteer("plain_from", lambda f: not _heads_sweep(f), example="runs/caa"),
              *(UnlessSteer(f, _heads_sweep, example=ex) for f, ex in (
                  ("data", "csv"), ("mc_shift_from", "legacy"), ("reproduce", "honest-llama"),
                  ("contiguous_folds", True), ("gen_positions", "all"))))
    _options = {"steer_params": "--steer-param"}
    _commands = ("steer sweep",)

    model: str = "smollm2"
    method: str = "caa"
    layers: tuple = ()  # decoder layers (negatives from the end); () = every third layer of the middle half
    alphas: tuple = (0.0, 1.0, 2.0, 4.0)
    normalize: str = "raw"  # raw (class-mean difference) | sigma | unit (veracity.steer.residual)
    folds: int = 2
    seed: int = 0
    protocol: str = "truthfulqa"
    judge: str = "none"
    metric: str = "mc2"  # the best configuration maximises it (minimises for KL / CE)
    ce_texts: int = 100
    limit: int | None = None
    side_effects: tuple = ("sycophancy", "boolq", "honest", "health")
    side_effect_n: dict = field(default_factory=dict)
    revision: str = "2021"  # the TruthfulQA revision the vectors are fitted on
    eval_revision: str | None = None  # the revision the held-out questions are scored on (None: the same)
    data_dir: str | None = None
    acts: str | None = None  # the residual activation store (default: the veracity cache)
    device: str | None = None
    detector: str | None = None  # a kept detector (`veracity detect`): its belief in every cell's answers
    plain_from: str | None = None  # another steer sweep of the same settings: its plain-model rows are reused
    binary: bool = False  # also TruthfulQA's binary task (every variant, chance 0.5) on each held-out fold
    # iti only (`veracity iti sweep`'s options): recorded nowhere for caa / lat, so refused there
    num_heads: tuple = ()  # () = the iti sweep's default K values
    direction: str = "com"
    sigma_from: str | None = None
    data: str | None = None
    mc_shift_from: str | None = None
    reproduce: str | None = None
    contiguous_folds: bool = False
    gen_positions: str = "last"
    # residual families: their parameters carried by name (`MethodSettings.steer_params`), and COSMIC's report
    steer_params: dict = field(default_factory=dict)
    cosmic: bool = False

    def recorded(self) -> dict:
        """What a caa / lat run records in config.json and results.json: the residual sweep's options (the iti
        ones, unset here, and steer_params / cosmic when unset, left out so that run folders written before they
        existed resume)."""
        d = dataclasses.asdict(self)
        for name in _ITI_ONLY:
            d.pop(name)
        if not self.steer_params:
            d.pop("steer_params")
        if not self.cosmic:
            d.pop("cosmic")
        for name in ("detector", "plain_from"):  # left out unless given, so folders written before them resume
            if d[name] is None:
                d.pop(name)
        if not self.binary:
            d.pop("binary")
        return d


_ITI_ONLY = ("num_heads", "direction", "sigma_from", "data", "mc_shift_from", "reproduce", "contiguous_folds",
             "gen_positions")


def default_layers(n_layers: int) -> list[int]:
    """Every third layer of the middle half (the demo's candidates for the causal layer; COSMIC's default
    candidates, `steer.layer_select.default_candidates`)."""
    from ..steer.layer_select import default_candidates

    return default_candidates(n_layers)


#: the parameters a steer sweep varies or chooses itself: never given by --steer-param
SWEPT = ("layers", "alpha", "layer_select")


def check_sweep_params(family: SteerFamily, values: dict) -> None:
    """Refuse a --steer-param the swept family does not carry by name, or one the sweep sets itself (its axes,
    and layer_select: --cosmic reports COSMIC's choice instead): ValueError naming the ones it accepts."""
    own = [p.name for p in family.params if p.setting == IN_PARAMS and p.name not in SWEPT]
    for name in values:
        if name in SWEPT:
            raise ValueError(f"--steer-param {name}: the sweep sets {name} itself"
                             + (" (--cosmic reports COSMIC's layer)" if name == "layer_select" else ""))
        if name not in own:
            raise ValueError(f"--steer-param {name}: steer {family.name!r} has no such parameter"
                             + (f"; its own: {', '.join(own)}" if own else "; it takes none"))


def sweep_columns(grid: list[dict]) -> list[str]:
    """A sweep table's metric columns: the comparison's targets, the side effects, then what the steer itself
    did (`metrics.TABLES`), those the grid has; every steering sweep's table (residual and ITI) shows these."""
    return columns("compare", grid) + columns("side_effects", grid) + columns("steer", grid)


@dataclass
class SteerSweepRun:
    """The typed result: one grid row per (layer, alpha) with fold means, the best row by `metric`."""

    method: str
    grid: list[dict]
    best: dict | None
    metric: str
    baseline: dict
    config: dict
    plots: list[str] = field(default_factory=list)
    cross_revision: dict | None = None  # fitted on one revision, scored on the other: the matching report
    cosmic: list[dict] | None = None  # per fold: COSMIC's layer (training fold only) beside the sweep's best
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        if not self.best:
            return {}
        return {"best_layer": self.best["layer"], "best_alpha": self.best["alpha"],
                self.metric: self.best.get(self.metric)}

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The console tables, each (title, columns, rows)."""
        keys = sweep_columns(self.grid)
        out = [(f"{self.method} sweep (fold means; * best by {self.metric}, layer - = the plain model)",
                ["layer", "alpha"] + keys + [""],
                [[str(r["layer"]) if r["layer"] >= 0 else "-", f"{r['alpha']:g}"] + [fmt(k, r.get(k)) for k in keys]
                 + ["*" if r.get("best") else ""] for r in self.grid])]
        if self.cosmic:
            out.append(("COSMIC's layer (training fold only, no generation) beside the sweep's best",
                        ["fold", "COSMIC layer", "sweep's best layer", "agree", "its COSMIC rank"],
                        [[str(c["fold"]), str(c["cosmic_layer"]), str(c["sweep_layer"]), "yes" if c["agree"] else "no",
                          "-" if c["sweep_rank"] is None else f"{c['sweep_rank']} of {c['n_candidates']}"]
                         for c in self.cosmic]))
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "method": self.method, "grid": self.grid, "best": self.best,
                "metric": self.metric, "baseline": self.baseline, "config": self.config, "plots": self.plots,
                "cross_revision": self.cross_revision, "cosmic": self.cosmic, "summary": self.best or {}}

    @classmethod
    def from_json(cls, d: dict) -> "SteerSweepRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        v = schema_version(d, "steer-sweep", SCHEMA_VERSION)
        return cls(d["method"], d.get("grid", []), d.get("best"), d.get("metric", "mc2"), d.get("baseline", {}),
                   d.get("config", {}), d.get("plots", []), d.get("cross_revision"), d.get("cosmic"), schema_version=v)

    def gain_cost(self) -> list[dict]:
        """The gain-against-cost chart's data (`metrics.gain_cost_table`): each (layer, alpha) a point of its
        layer's series, the plain model (alpha 0) the reference."""
        return gain_cost_table([{**r, "series": f"{self.method} layer {r['layer']}", "label": f"alpha {r['alpha']:g}",
                                 "reference": None} if r["layer"] >= 0 else
                                {**r, "series": "plain model", "label": "plain", "reference": "plain model"}
                                for r in self.grid])

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("grid.csv", self.grid)
        run.write_csv("gain_cost.csv", self.gain_cost())
        self.plots = []
        for key in dict.fromkeys([self.metric] + headlines("lm", "side_effect")):  # the target and its costs
            fig = _heatmap(self.grid, key)
            if fig is not None:
                run.save_figure(fig, f"heatmap_{key}.png")
                self.plots.append(f"heatmap_{key}.png")
        run.finish(self.to_json(), headline=self.headline())


def _heatmap(grid: list[dict], key: str):
    rows = [r for r in grid if r["layer"] >= 0 and r.get(key) is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import METRICS, label

    layers = sorted({r["layer"] for r in rows})
    alphas = sorted({r["alpha"] for r in rows})
    M = np.full((len(layers), len(alphas)), np.nan)
    for r in rows:
        M[layers.index(r["layer"]), alphas.index(r["alpha"])] = r[key]
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * len(alphas), 1.2 + 0.4 * len(layers)))
    im = ax.imshow(M, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(layers)), [str(l) for l in layers])
    ax.set_xlabel("alpha (multiple of the fitted vector)")
    ax.set_ylabel("decoder layer")
    unit = METRICS[key].unit if key in METRICS else ""
    fig.colorbar(im, ax=ax, label=f"{label(key)} ({unit})" if unit else label(key))
    return fig


def run_steer_sweep(cfg: SteerSweepConfig, out: str | Path, *, overwrite: bool = False,
                    log: Callable[[str], None] = print) -> SteerSweepRun:
    """Check every input and the run folder before loading, then evaluate each missing (layer, alpha, fold): a
    folder of the same settings resumes (a finished one with a longer grid gains only the new cells);
    `overwrite` empties it and starts over."""
    from ..data import load_truthfulqa
    from ..evaluate.detector import load_detector_for
    from ..models import load_checked
    from ..probes.splits import question_folds
    from ..runs import RunFolder
    from ..steer.layer_select import LayerScores
    from ..validation import BadInput, check_folds
    from ..data.registry import held_out_texts
    from ..methods.evaluate import MethodEvalConfig, evaluate_prepared, load_judges
    from ..methods.prepare import MethodSettings, MethodSpec, PreparedMethod, check_revision_pair

    family = STEERS[cfg.method]
    if family.sweep != "layers":  # a family swept over heads runs `veracity iti sweep`'s engine
        raise BadInput(f"--method {cfg.method}: this sweep varies layers; use one of "
                       f"{', '.join(n for n, f in STEERS.items() if f.sweep == 'layers')}")
    if not cfg.alphas or any(not math.isfinite(a) for a in cfg.alphas):
        raise BadInput("--alphas: give one or more finite numbers")
    try:
        check_sweep_params(family, cfg.steer_params)
        base_settings = MethodSettings(seed=cfg.seed, steer_params=dict(cfg.steer_params))
    except ValueError as e:
        raise BadInput(str(e)) from None
    eval_revision = check_revision_pair(cfg.revision, cfg.eval_revision)
    recorded = cfg.recorded()
    detector = load_detector_for(cfg.detector)  # a bad file is refused before the model loads
    # likewise a folder that holds no steer sweep (its settings are compared once this sweep's are known)
    plain_settings = plain_source(cfg.plain_from) if cfg.plain_from else None
    run = RunFolder(out, "steer-sweep", {"model": cfg.model, "data": "truthfulqa", **recorded},
                    resume=not overwrite, overwrite=overwrite, seed=cfg.seed, defer=True)
    lm = load_checked(cfg.model, cfg.device, list(cfg.layers) or None)
    if detector is not None:
        detector.check_model(lm)  # a detector of another model: refused before any work
    n_layers = lm.arch.n_layers
    layers = list(dict.fromkeys(l % n_layers for l in cfg.layers)) if cfg.layers else default_layers(n_layers)
    items = load_truthfulqa(cfg.data_dir, cfg.revision)
    items = items[:cfg.limit] if cfg.limit else items
    check_folds(cfg.folds, len(items))
    by_index = {it.index: it for it in items}
    folds = question_folds(sorted(by_index), cfg.folds, seed=cfg.seed)
    scored, cross = by_index, None
    if eval_revision != cfg.revision:  # the held-out questions' other-revision versions, matched by text
        from ..data.truthfulqa import cross_revision_items

        mapped, cross = cross_revision_items(items, load_truthfulqa(cfg.data_dir, eval_revision))
        scored = {it.index: it for it in mapped}
        log(f"fitted on {cfg.revision}, scored on {eval_revision}: {cross['matched']} questions matched by text; "
            f"{len(cross['removed'])} have no {eval_revision} version (not scored)")
    identity = family.identity(base_settings)  # the alpha that is the plain model (None: no alpha is)
    alphas = sorted(set(float(a) for a in cfg.alphas))
    ecfg = MethodEvalConfig(protocol=cfg.protocol, seed=cfg.seed, side_effects=tuple(cfg.side_effects),
                            side_effect_n=dict(cfg.side_effect_n), binary=cfg.binary)
    fixed = {"model": lm.fingerprint, "method": cfg.method, "normalize": cfg.normalize, "folds": cfg.folds,
             "seed": cfg.seed, "protocol": cfg.protocol, "judge": cfg.judge, "ce_texts": cfg.ce_texts,
             "limit": cfg.limit, "side_effects": list(cfg.side_effects), "side_effect_n": dict(cfg.side_effect_n),
             "revision": cfg.revision, "eval_revision": eval_revision, "questions": len(items),
             **({"detector": detector.identity()} if detector is not None else {})}
    if cfg.steer_params:  # only when given, so stores written before the option resume
        fixed["steer_params"] = dict(cfg.steer_params)
    if cfg.binary:  # likewise
        fixed["binary"] = True
    if cfg.plain_from:  # refused before the run folder is made
        check_plain_source(cfg.plain_from, plain_settings, fixed)
    run.start()
    try:
        store = open_store(run.path / "results.sqlite", fixed)
    except ValueError as e:  # other settings in this folder: refused, the folder left as it was
        raise BadInput(str(e)) from None

    def both(msg: str) -> None:
        log(msg)
        run.log(msg)

    # -1 with alpha 0: the plain model (once per fold), shared by the family's identity alpha at every layer (no
    # cell of its own); each layer's steer fitted once per fold, alpha rescales it
    cells = [dict(PLAIN)] + [{"layer": l, "alpha": a} for l in layers for a in alphas
                             if identity is None or a != identity]

    def fit(f: int, layer: int):
        test_items = [scored[int(q)] for q in folds[f] if int(q) in scored]
        if layer < 0:
            return None, test_items
        # each fold's fit is kept in the run folder (the store's recorded settings fix what it was fitted with),
        # so a resumed or lengthened sweep rescales it instead of refitting (BiPO: minutes per fold)
        kept = run.path / FITS / f"fold{f}-layer{layer}"
        if family.load is not None and kept.with_name(kept.name + ".json").is_file():
            steer = family.load(kept)  # the safe reader: a damaged file is one error naming it
            steer.check_model(lm.arch, lm.fingerprint)
            both(f"fold {f}, layer {layer}: the fit kept in {kept.parent.name}/{kept.name} reused")
            summarise(f, layer, steer)
            return steer, test_items
        train_q = sorted(int(q) for j, p in enumerate(folds) if j != f for q in p)
        scale = {"normalize": cfg.normalize} if family.name in steers_with("normalize") else {}  # angular: none
        settings = family.settings(base_settings, layers=(layer,), alpha=1.0, **scale)
        both(f"fold {f}, layer {layer}: fitting {cfg.method} on {len(train_q)} training questions")
        t0 = time.perf_counter()
        steer = family.fit(lm, train_q, [int(q) for q in folds[f]], settings, data_dir=cfg.data_dir,
                           limit=cfg.limit, acts=cfg.acts, fold=f, revision=cfg.revision)
        where = ""
        if family.load is not None:
            kept.parent.mkdir(exist_ok=True)
            steer.save(kept, overwrite=True)
            where = f", kept in {kept.parent.name}/{kept.name}"
        both(f"fold {f}, layer {layer}: fitted in {time.perf_counter() - t0:.0f} s{where}")
        summarise(f, layer, steer)
        return steer, test_items

    def summarise(f: int, layer: int, steer) -> None:
        """A steer's optional one-line account of its fit (angular: where the training rows sit in its plane)."""
        if (says := getattr(steer, "fit_summary", None)) is not None and (line := says(layer)):
            both(f"fold {f}, layer {layer}: {line}")

    try:
        if cfg.plain_from:
            copied = reuse_plain_rows(store, cfg.plain_from, cfg.folds)
            have = [f for f in range(cfg.folds) if store.done(PLAIN, f)]
            both(f"plain model: folds {', '.join(map(str, copied))} reused from {cfg.plain_from}" if copied else
                 "plain model: every fold already in this sweep" if len(have) == cfg.folds else
                 f"plain model: {cfg.plain_from} has not scored folds "
                 f"{', '.join(str(f) for f in range(cfg.folds) if f not in have)} yet; scored here")
        grid_spec = Grid(cells, cfg.folds, fit, None, fit_key=lambda c: c["layer"],
                         describe=lambda job, res, secs: (
                             f"{cfg.method} layer={job.cell['layer'] if job.cell['layer'] >= 0 else '-'} "
                             f"alpha={job.cell['alpha']:g} fold={job.fold}: " + ", ".join(
                                 f"{k}={v:.4f}" for k, v in res["metrics"].items() if isinstance(v, float))))
        todo = grid_spec.pending(store)
        texts = held_out_texts(cfg.data_dir, cfg.ce_texts) if (todo and cfg.ce_texts) else None
        judges = load_judges(cfg.judge, cfg.data_dir) if (todo and cfg.judge != "none") else None
        lm_cache: dict = {}

        def evaluate(lm, job) -> dict:
            iv = dataclasses.replace(job.fit, alpha=job.cell["alpha"]) if job.fit is not None else None
            spec = MethodSpec(cfg.method, steer=cfg.method) if iv is not None else MethodSpec("baseline")
            res = evaluate_prepared(PreparedMethod(spec, lm, iv), lm, job.items, ecfg, texts, lm_cache, judges,
                                    data_dir=cfg.data_dir, detector=detector)
            pred = (iv.provenance.get("steerability") or {}).get(str(job.cell["layer"])) if iv is not None else None
            return {"metrics": dict(res["metrics"]), "per_question": res["per_question"], "steerability": pred}

        grid_spec.evaluate = evaluate
        run_grid(grid_spec, store, lm, log=both)
        grid = sorted(({**c, **aggregate_folds(ms)} for c in cells
                       if (ms := store.fold_metrics(c, cfg.folds)) is not None),
                      key=lambda r: (r["layer"] >= 0, r["layer"], r["alpha"]))
        plain = [store.entry(cells[0], f) for f in range(cfg.folds)]
        for r in grid:  # steerability: the fitted layer's predictors, per-item MC2 moves against the plain model
            es = [store.entry({"layer": r["layer"], "alpha": r["alpha"]}, f) for f in range(cfg.folds)]
            if r["layer"] >= 0 and all(e is not None for e in es + plain):
                r.update(cell_steerability([e.extra.get("per_question", []) for e in plain],
                                           [e.extra.get("per_question", []) for e in es],
                                           [e.extra.get("steerability") for e in es]))
    finally:
        store.close()
    metric = cfg.metric  # never silently another: a metric the sweep did not measure picks no best
    cands = [(i, r) for i, r in enumerate(grid) if r["layer"] >= 0]
    at = pick_best(cands, metric)  # the registry's direction; ties: the first in grid order
    for i, r in enumerate(grid):
        r["best"] = i == at
    best = grid[at] if at is not None else None
    base = next((r for r in grid if r["layer"] < 0), {})
    cosmic = None
    if cfg.cosmic and best is not None:  # per fold, on its training questions only, at the best alpha
        cosmic = []
        for f in range(cfg.folds):
            train_q = sorted(int(q) for j, p in enumerate(folds) if j != f for q in p)
            scale = {"normalize": cfg.normalize} if family.name in steers_with("normalize") else {}
            settings = family.settings(base_settings, layers=tuple(layers), alpha=best["alpha"],
                                       layer_select="cosmic", **scale)
            steer = family.fit(lm, train_q, [int(q) for q in folds[f]], settings, data_dir=cfg.data_dir,
                               limit=cfg.limit, acts=cfg.acts, fold=f, revision=cfg.revision)
            scores = LayerScores.from_json(steer.provenance["layer_select"])
            cosmic.append({"fold": f, **scores.compare(best["layer"]), "alpha": best["alpha"],
                           "scores": {str(l): v for l, v in scores.scores.items()}})
            both(f"COSMIC fold {f}: layer {scores.layer} (the sweep's best: {best['layer']}, "
                 f"rank {cosmic[-1]['sweep_rank']} of {len(scores.scores)})")
    result = SteerSweepRun(cfg.method, grid, dict(best) if best else None, metric,
                           {k: v for k, v in base.items() if k not in ("layer", "alpha", "best")},
                           recorded | {"layers": layers, "eval_revision": eval_revision},
                           cross_revision=cross, cosmic=cosmic)
    result.write(run)
    return result
