"""Compare truthfulness interventions on identical folds, seeds and metrics, resumably.

For each fold (question sets shuffled by seed with `veracity.probes.splits.question_folds`, i.e. the same test
questions as `veracity iti validate` with the same seed and --limit), every method is prepared on the
other folds' questions (`veracity.methods.prepare_method`) and evaluated on the held-out ones:
- MC1/MC2 under the chosen protocol's reference answers, with the *method's* prompt as context (the
  prefix-cached scorer of `veracity.evaluate.truthfulqa`; ITI shifts every answer token);
- CE on held-out text and KL(original || method) per token (`veracity.evaluate.lm_metrics`); a prompt
  does not change the model, so prompt-only methods share the original model's CE and have KL 0;
- with a judge: greedy answers (max 50 new tokens, cut at the next "Q:") judged true / informative.
Cost columns: training seconds (SFT/DPO, ITI capture + fit), inference seconds of the evaluation (MC
+ generation), the extra inference seconds over `baseline` on the same fold, and the mean prompt length.

Why not the evaluation driver's `evaluate_subset`: it poses every question with one fixed protocol
prompt, while prompt methods must change the context. This module uses the driver's building blocks
(scorer, CE/KL, judges) so all methods share one code path.

Results go to `results.sqlite` in the run folder, one committed row per (method, fold); a rerun skips
finished rows and an interrupted run loses at most the row in progress.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..metrics import aggregate_folds, fmt, fold_sd, gain_cost_table, with_true_info
from .sweep import SweepStore
from ..constraints import Checked, Instance, ListOf, Parses
from ..methods import options as o
from ..methods.evaluate import MethodEvalConfig, evaluate_prepared, load_judges
from ..methods.prepare import DEFAULT_METHODS, MethodSettings, TrainedCache, check_revision_pair, parse_method, prepare_method
from ..steer.steerability import cell_steerability

#: the costs a comparison row carries -> their column titles
COSTS = {"train_s": "train s", "iti_fit_s": "ITI fit s", "infer_s": "infer s", "extra_infer_s": "extra infer s",
         "prompt_tokens": "prompt tok"}


def _method(name) -> None:
    parse_method(name)


@dataclass
class CompareConfig(Checked):
    """Everything that must be equal for two runs' rows to be comparable (checked on resume)."""

    _constraints = {"methods": [ListOf([Parses(_method, "a method (prompt, trainer, steer and '+' combinations)",
                                               bad=["nosuch", "iti+caa", ""], example="baseline")], unique=True)],
                    "n_folds": o.FOLDS, "seed": o.SEED, "protocol": o.PROTOCOL,
                    "judge": o.JUDGE, "ce_texts": o.COUNT0, "ce_tokens": o.COUNT, "max_new_tokens": o.COUNT,
                    "batch_size": o.BATCH, "limit": o.LIMIT, "settings": [Instance(MethodSettings)],
                    "revision": o.REVISION, "eval_revision": o.OPTIONAL_REVISION, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N, "binary": o.BOOL}
    _options = {"n_folds": "--folds"}

    methods: list[str]
    n_folds: int = 2
    seed: int = 0
    protocol: str = "truthfulqa"
    judge: str = "none"
    ce_texts: int = 100
    ce_tokens: int = 128
    max_new_tokens: int = 50
    batch_size: int = 16
    limit: int | None = None
    settings: MethodSettings = field(default_factory=MethodSettings)
    revision: str = "2021"  # TruthfulQA revision the methods are prepared (fitted, trained) on
    eval_revision: str | None = None  # revision the held-out questions are scored on (None: the same)
    side_effects: tuple[str, ...] = ()  # methods.side_effects: sycophancy, boolq, honest, health
    side_effect_n: dict = field(default_factory=dict)  # sample sizes (default side_effects.DEFAULT_N)
    binary: bool = False  # also TruthfulQA's binary task (every variant, chance 0.5)

    def fixed(self) -> dict:
        """The settings a resumed run must share (the revisions only when not the defaults, so folders
        written before they existed still resume)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "methods"}
        if self.revision == "2021" and self.eval_revision in (None, "2021"):
            d.pop("revision"), d.pop("eval_revision")
        if not self.side_effects:
            d.pop("side_effects"), d.pop("side_effect_n")
        if not self.binary:
            d.pop("binary")
        return d

    def evaluation(self) -> MethodEvalConfig:
        """How each (method, fold) is evaluated."""
        return MethodEvalConfig(protocol=self.protocol, max_new_tokens=self.max_new_tokens, ce_tokens=self.ce_tokens,
                                batch_size=self.batch_size, seed=self.seed, side_effects=tuple(self.side_effects),
                                side_effect_n=dict(self.side_effect_n), binary=self.binary)


@dataclass
class CompareRunConfig(Checked):
    """Every option of `veracity compare-interventions`, flat as on the command line, the model and its
    inputs included (the study's Config: `run_compare_interventions(config, out)`); `build()` gives the
    `CompareConfig` (with its `MethodSettings`) the study runs and records."""

    _constraints = {"model": o.MODEL, "data_dir": o.OPTIONAL_TEXT, "acts": o.OPTIONAL_TEXT, "device": o.DEVICE,
                    "methods": CompareConfig._constraints["methods"], "folds": o.FOLDS, "seed": o.SEED,
                    "limit": o.LIMIT, "judge": o.JUDGE, "protocol": o.PROTOCOL,
                    "sft_steps": o.COUNT, "dpo_steps": o.COUNT, "lr": o.POSITIVE, "beta": o.POSITIVE,
                    "train_batch_size": o.BATCH, "pairs_per_question": o.COUNT, "num_heads": o.NUM_HEADS,
                    "alpha": o.ALPHA, "residual_layers": o.LAYERS, "residual_alpha": o.ALPHA,
                    "residual_normalize": o.NORMALIZE, "ce_texts": o.COUNT0,
                    "side_effects": o.SIDE_EFFECTS, "side_effect_n": o.SIDE_EFFECT_N, "revision": o.REVISION,
                    "eval_revision": o.OPTIONAL_REVISION, "detector": o.OPTIONAL_TEXT,
                    "steer_params": [ListOf([Instance(str)], min_len=0)], "binary": o.BOOL}
    # No "ignored unless a method uses it" rules here: a comparison is resumed with more --methods and the
    # same settings (CompareConfig.fixed), so --sft-steps before any lora-sft run is meaningful.
    _options = {"steer_params": "--steer-param"}
    _commands = ("compare-interventions",)

    model: str = "smollm2"
    methods: list = field(default_factory=lambda: list(DEFAULT_METHODS))
    folds: int = 2
    seed: int = 0
    limit: int | None = None
    judge: str = "none"
    protocol: str = "truthfulqa"
    sft_steps: int = 30
    dpo_steps: int = 30
    lr: float = 2e-4
    beta: float = 0.1
    train_batch_size: int = 8
    pairs_per_question: int = 3
    num_heads: int = 48
    alpha: float = 15.0
    residual_layers: list | None = None
    residual_alpha: float = 1.0
    residual_normalize: str = "raw"
    ce_texts: int = 100
    side_effects: tuple = ()
    side_effect_n: dict = field(default_factory=dict)
    revision: str = "2021"
    eval_revision: str | None = None
    data_dir: str | None = None
    acts: str | None = None  # the original model's ITI activation store (default: the veracity cache)
    device: str | None = None
    steer_params: list = field(default_factory=list)  # NAME=VALUE: parameters a chosen steer carries by name
    detector: str | None = None  # a kept detector (`veracity detect`): its belief in every row's answers
    binary: bool = False  # also TruthfulQA's binary task on each held-out fold

    def build(self) -> CompareConfig:
        """The study's full configuration (every method's trainer, steer and side-effect settings) from these
        command-line options."""
        from ..finetune import TrainConfig
        from ..finetune.dpo import DPOConfig

        bs = self.train_batch_size
        settings = MethodSettings(
            sft=TrainConfig(lora=True, lr=self.lr, max_steps=self.sft_steps, batch_size=bs, max_length=384,
                            seed=self.seed),
            dpo=DPOConfig(beta=self.beta, train=TrainConfig(lora=True, lr=self.lr, max_steps=self.dpo_steps,
                                                            batch_size=max(1, bs // 2), max_length=384,
                                                            seed=self.seed)),
            pairs_per_question=self.pairs_per_question, iti_k=self.num_heads, iti_alpha=self.alpha, seed=self.seed,
            residual_layers=tuple(self.residual_layers) if self.residual_layers else None,
            residual_alpha=self.residual_alpha, residual_normalize=self.residual_normalize,
            steer_params=self.chosen_steer_params())
        return CompareConfig(methods=list(self.methods), n_folds=self.folds, seed=self.seed, protocol=self.protocol,
                             judge=self.judge, ce_texts=self.ce_texts, limit=self.limit, settings=settings,
                             revision=self.revision, eval_revision=self.eval_revision,
                             side_effects=tuple(self.side_effects), side_effect_n=dict(self.side_effect_n),
                             binary=self.binary)


    def chosen_steer_params(self) -> dict:
        """--steer-param NAME=VALUE as {name: value}, each NAME a parameter of a steer one of the methods uses
        (`methods.steers.parse_steer_params`); BadInput naming the chosen steers' parameters otherwise."""
        from ..methods.steers import parse_steer_params
        from ..validation import BadInput

        if not self.steer_params:
            return {}
        try:
            steers = [s.steer for s in map(parse_method, self.methods) if s.steer is not None]
            return parse_steer_params(self.steer_params, steers)
        except ValueError as e:
            raise BadInput(str(e)) from None


# ------------------------------------------------------------------------------------------ the store
class CompareStore(SweepStore):
    """The comparison's resumable store: the shared sweep store (`experiments.sweep`) with one cell per method;
    a (method, fold)'s costs, per-question rows and answers ride along as the cell's extra payload.
    `fixed`: the settings a resume must share (None: read only)."""

    def __init__(self, path: str | Path, fixed: dict | None):
        super().__init__(path, fixed, "comparison", ("method",))

    def record(self, method: str, fold: int, metrics: dict, costs: dict, per_question: list, answers: list,
               seconds: float | None = None) -> None:
        """Store one (method, fold) result in a single transaction, so an interrupted study never keeps half of one."""
        self.put({"method": method}, fold, metrics, seconds,
                 {"costs": costs, "per_question": per_question, "answers": answers})

    def result(self, method: str, fold: int) -> dict | None:
        """The stored result of (method, fold): metrics, costs, per-question scores and answers, or None."""
        e = self.entry({"method": method}, fold)
        if e is None:
            return None
        return {"metrics": e.metrics, "costs": e.extra.get("costs", {}),
                "per_question": e.extra.get("per_question", []), "answers": e.extra.get("answers", [])}

    def finished(self, method: str, fold: int) -> bool:
        """Whether (method, fold) is already stored: a resumed study skips it."""
        return self.done({"method": method}, fold)


# ------------------------------------------------------------------------------------------ the run
def summarise_method(fold_rows: list[dict]) -> dict:
    """Fold means of metrics and costs (`metrics.aggregate_folds`: True*Info the product of the fold means),
    each metric followed by its spread over folds (`metrics.fold_sd`)."""
    ms, cs = [r["metrics"] for r in fold_rows], [r["costs"] for r in fold_rows]
    mkeys, ckeys = sorted({k for m in ms for k in m}), sorted({k for c in cs for k in c})
    mean = aggregate_folds([{**m, **c} for m, c in zip(ms, cs)], mkeys + ckeys)
    sd = fold_sd(ms, mkeys)
    out: dict = {}
    for k in mkeys + ckeys:
        out.update({n: d[n] for n, d in ((k, mean), (k + "_sd", sd)) if n in d})
    return with_true_info(out)  # also where the folds carry True and Info but no True*Info


def run_comparison(lm, items: Sequence, cfg: CompareConfig, folder: str | Path, data_dir=None,
                   log: Callable[[str], None] = print, acts: str | Path | None = None,
                   eval_items: Sequence | None = None, detector=None) -> tuple[list[dict], list[dict]]:
    """Evaluate every (method, fold) not yet in `folder/results.sqlite`; returns (one row per method: fold
    means of metrics and costs, one row per (method, fold)).

    `items`: TruthfulQA items of `cfg.revision` (CSV order, already cut by --limit): the folds and what
    methods are prepared on. `eval_items`: the held-out questions' versions to score, under the same
    indices (`data.truthfulqa.cross_revision_items`; default `items`); a held-out question without one is
    left out. The original model is never modified. `detector` (a kept `evaluate.detector.Detector` of this
    model) adds its belief in each row's answers (`methods.fold.FoldPlan.detector`).
    """
    from ..data.registry import held_out_texts
    from ..probes.splits import question_folds

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = [parse_method(m) for m in cfg.methods]
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("a method is listed twice")
    fixed = {"model": lm.fingerprint, "questions": [it.index for it in items][:3] + [len(items)], **cfg.fixed()}
    if detector is not None:  # rows scored by one detector only (left out without, so older folders resume)
        fixed["detector"] = detector.identity()
    store = CompareStore(folder / "results.sqlite", fixed)
    by_index = {it.index: it for it in items}
    scored = by_index if eval_items is None else {it.index: it for it in eval_items}
    folds = question_folds(sorted(by_index), cfg.n_folds, seed=cfg.seed)
    todo = [(s, f) for f in range(cfg.n_folds) for s in specs if not store.finished(s.name, f)]
    texts = held_out_texts(data_dir, cfg.ce_texts) if (todo and cfg.ce_texts) else None
    judges = load_judges(cfg.judge, data_dir) if (todo and cfg.judge != "none") else None
    cache, lm_cache, ecfg = TrainedCache(), {}, cfg.evaluation()
    try:
        for spec, f in todo:
            test_q = folds[f]
            train_q = np.concatenate([p for j, p in enumerate(folds) if j != f])
            train_items = [by_index[int(q)] for q in sorted(train_q)]
            test_items = [scored[int(q)] for q in test_q if int(q) in scored]
            t0 = time.time()
            pm = prepare_method(spec, lm, train_items, [int(q) for q in test_q], cfg.settings, fold=f, cache=cache,
                                data_dir=data_dir, limit=cfg.limit, workdir=folder, acts=acts,
                                revision=cfg.revision)
            res = evaluate_prepared(pm, lm, test_items, ecfg, texts, lm_cache, judges, data_dir=data_dir,
                                    detector=detector)
            with_true_info(res["metrics"])
            store.record(spec.name, f, res["metrics"], res["costs"], res["per_question"], res["answers"],
                         time.time() - t0)
            log(f"{spec.name} fold={f}: " + ", ".join(f"{k}={v:.4f}" for k, v in res["metrics"].items())
                + f" (train {pm.train_seconds + pm.iti_seconds:.0f}s, total {time.time() - t0:.0f}s)")
            if spec.trainer is not None and not any(s.trainer == spec.trainer and s.prompt == spec.prompt
                                                    and not store.finished(s.name, f) for s in specs):
                cache.models.pop((spec.trainer, spec.prompt, f), None)  # free the model once no one needs it
        fold_rows, rows = [], []
        for s in specs:
            got = [store.result(s.name, f) for f in range(cfg.n_folds)]
            base = [store.result("baseline", f) for f in range(cfg.n_folds)]
            mine = []
            for f, g in enumerate(got):
                if g is None:
                    continue
                if base[f] is not None:
                    g["costs"]["extra_infer_s"] = g["costs"]["infer_s"] - base[f]["costs"]["infer_s"]
                mine.append(g)
                fold_rows.append({"method": s.name, "fold": f, **g["metrics"], **g["costs"],
                                  "n_questions": len(g["per_question"])})
            if len(mine) == cfg.n_folds:
                rows.append({"method": s.name, **summarise_method(mine)})
    finally:
        store.close()
    return rows, fold_rows


def per_question_rows(folder: str | Path, methods: Sequence[str], n_folds: int) -> list[dict]:
    """Every (method, fold, question) row from the store, for the CSV."""
    store = CompareStore(Path(folder) / "results.sqlite", None)
    try:
        return [{"method": cell["method"], "fold": f, **r} for cell, f, e in store.rows()
                if cell["method"] in methods and f < n_folds for r in e.extra.get("per_question", [])]
    finally:
        store.close()


def plot_comparison(rows: list[dict], path: str | Path) -> Path | None:
    """Bars per method of the comparison's targets every row has (MC1, MC2; True, Info, True*Info with a
    judge), with fold s.d. as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    from ..metrics import METRICS, columns

    keys = [k for k in columns("compare") if METRICS[k].group == "target" and all(k in r for r in rows)]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * n * len(keys) / 2, 3.5))
    w = 0.8 / len(keys)
    x = np.arange(n)
    for j, k in enumerate(keys):
        ax.bar(x + j * w, [r[k] for r in rows], w, yerr=[r.get(k + "_sd", 0.0) for r in rows],
               label=k, capsize=2)
    ax.set_xticks(x + w * (len(keys) - 1) / 2, [r["method"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("score (fold mean)")
    ax.legend()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ the study

#: results.json layout of a compare-interventions run (docs/reference/results.md); files without the field
#: are version 0 (the same layout, one revision) and still read.
SCHEMA_VERSION = 1


def table_columns() -> list[tuple[str, str]]:
    """(column title, key) of the printed comparison: the registry's comparison metrics, the costs, the side
    effects, what a steer itself did (`metrics.TABLES`; compact titles), so a registered metric joins the table
    with no other edit."""
    from ..metrics import column_label, columns

    titled = lambda table: [(column_label(k, short=True), k) for k in columns(table)]  # noqa: E731
    return (titled("compare") + [(t, k) for k, t in COSTS.items()] + titled("side_effects")
            + [("side effects s", "side_effects_s")] + titled("steer"))


@dataclass
class CompareRun:
    """The typed result of a compare-interventions run: what results.json holds, plus the per-question
    rows (per_question.csv)."""

    config: dict
    model: str
    n_questions: int
    revision: str
    eval_revision: str
    cross_revision: dict | None
    methods: list[dict]  # one row per method: fold means (and s.d.) of metrics and costs
    folds: list[dict]  # one row per (method, fold)
    plots: list[str] = field(default_factory=list)
    per_question: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @property
    def summary(self) -> dict:
        """Each method's fold means of the compared metrics, the columns the comparison table shows."""
        from ..metrics import columns

        return {r["method"]: {k: r.get(k) for k in columns("compare") if k in r} for r in self.methods}

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        best = max(self.methods, key=lambda r: r.get("mc2", -1)) if self.methods else None
        return {"best_by_mc2": best["method"], "mc2": best["mc2"]} if best else {}

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The console tables, each (title, column titles, rows): the comparison (one row per method)."""
        cols = [(c, k) for c, k in table_columns() if any(r.get(k) is not None for r in self.methods)]
        n_folds = self.config.get("n_folds")
        title = f"interventions on {self.model} ({n_folds} folds, {self.n_questions} questions, fold means)"
        if self.eval_revision != self.revision:
            title += f"; fitted on {self.revision}, scored on {self.eval_revision}"
        return [(title, ["method"] + [c for c, _ in cols],
                 [[r["method"]] + [fmt(k, r.get(k)) for _, k in cols] for r in self.methods])]

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "config": self.config, "model": self.model,
                "n_questions": self.n_questions, "revision": self.revision, "eval_revision": self.eval_revision,
                "cross_revision": self.cross_revision, "methods": self.methods, "folds": self.folds,
                "summary": self.summary, "plots": self.plots}

    @classmethod
    def from_json(cls, d: dict) -> "CompareRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "compare-interventions", SCHEMA_VERSION)
        cfg = d.get("config", {})
        rev = d.get("revision", cfg.get("revision", "2021"))
        return cls(config=cfg, model=d.get("model", ""), n_questions=d.get("n_questions", 0), revision=rev,
                   eval_revision=d.get("eval_revision", rev), cross_revision=d.get("cross_revision"),
                   methods=d.get("methods", []), folds=d.get("folds", []), plots=d.get("plots", []),
                   schema_version=v)

    def gain_cost(self) -> list[dict]:
        """The gain-against-cost chart's data (`metrics.gain_cost_table`): each method a point (its own series),
        the plain model (baseline) and prompting alone (a prompt, no trainer, no steer) the references."""
        def kind(name: str) -> str | None:
            try:
                spec = parse_method(name)
            except ValueError:
                return None
            if spec.trainer is None and spec.steer is None:
                return "plain model" if spec.prompt == "baseline" else "prompting"
            return None

        return gain_cost_table([{**r, "series": r["method"], "label": r["method"], "reference": kind(r["method"])}
                                for r in self.methods])

    def write(self, run) -> None:
        """comparison.csv, folds.csv, per_question.csv, gain_cost.csv, comparison.png and results.json (last)."""
        run.write_csv("comparison.csv", self.methods)
        run.write_csv("gain_cost.csv", self.gain_cost())
        run.write_csv("folds.csv", self.folds)
        run.write_csv("per_question.csv", self.per_question)
        png = plot_comparison(self.methods, run.path / "comparison.png")
        self.plots = [png.name] if png else []
        run.finish(self.to_json(), headline=self.headline())


def run_compare_interventions(config: CompareRunConfig, out: str | Path, *, overwrite: bool = False,
                              log: Callable[[str], None] = print) -> CompareRun:
    """`veracity compare-interventions`: check every input (methods, revisions, the run folder, then the
    model's heads and the question count) before any work, evaluate every (method, fold) not yet in the
    folder's results.sqlite, and write the run folder. Resumable: a rerun with the same settings (more
    methods allowed) skips the finished rows, a finished folder included; `overwrite` empties the folder and
    starts over."""
    from ..data import load_truthfulqa
    from ..data.truthfulqa import cross_revision_items
    from ..evaluate.detector import load_detector_for
    from ..models import load_checked
    from ..runs import RunFolder
    from ..validation import BadInput, check_folds

    model, data_dir, acts, device = config.model, config.data_dir, config.acts, config.device
    detector = load_detector_for(config.detector)  # a bad file is refused before the model loads
    cfg = config.build()
    try:
        specs = [parse_method(m) for m in cfg.methods]
    except ValueError as e:
        raise BadInput(str(e)) from None
    cfg = dataclasses.replace(cfg, methods=[s.name for s in specs])
    eval_revision = check_revision_pair(cfg.revision, cfg.eval_revision)
    run = RunFolder(out, "compare-interventions", {"model": model, "data": "truthfulqa", "methods": cfg.methods,
                                                   "folds": cfg.n_folds, "limit": cfg.limit, "judge": cfg.judge,
                                                   "protocol": cfg.protocol, "settings": cfg.settings,
                                                   "revision": cfg.revision, "eval_revision": eval_revision,
                                                   "side_effects": list(cfg.side_effects),
                                                   **({"detector": config.detector} if config.detector else {})},
                    resume=not overwrite, overwrite=overwrite, seed=cfg.seed,
                    defer=True)  # checked now, created once the inputs are
    lm = load_checked(model, device)
    if detector is not None:
        detector.check_model(lm)  # a detector of another model: refused before any work
    from ..methods.steers import STEERS

    for family in {STEERS[s.steer] for s in specs if s.steer is not None}:
        if family.check is not None:
            family.check(lm, cfg.settings)
    items = load_truthfulqa(data_dir, cfg.revision)
    items = items[:cfg.limit] if cfg.limit else items
    check_folds(cfg.n_folds, len(items))
    eval_items, cross = None, None
    if eval_revision != cfg.revision:
        eval_items, cross = cross_revision_items(items, load_truthfulqa(data_dir, eval_revision))
        log(f"fitted on {cfg.revision}, scored on {eval_revision}: {cross['matched']} questions matched by text; "
            f"{len(cross['removed'])} have no {eval_revision} version (not scored), "
            f"{len(cross['unmatched_eval'])} {eval_revision} questions have none in {cfg.revision}")

    def both(msg: str) -> None:
        log(msg)
        run.log(msg)

    run.start()
    try:
        rows, fold_rows = run_comparison(lm, items, cfg, run.path, data_dir=data_dir, log=both, acts=acts,
                                         eval_items=eval_items, detector=detector)
    except (RuntimeError, ValueError) as e:
        raise BadInput(str(e)) from None
    pq = per_question_rows(run.path, cfg.methods, cfg.n_folds)
    for r in rows:  # per-item steerability: each held-out question's MC2 against the plain model's, same fold
        if r["method"] != "baseline":
            r.update(cell_steerability(*[[[q for q in pq if q["method"] == m and q["fold"] == f]
                                          for f in range(cfg.n_folds)] for m in ("baseline", r["method"])]))
    result = CompareRun(config=dataclasses.asdict(cfg), model=model,
                        n_questions=len(items) if eval_items is None else len(eval_items), revision=cfg.revision,
                        eval_revision=eval_revision, cross_revision=cross, methods=rows, folds=fold_rows,
                        per_question=pq)
    result.write(run)
    return result
