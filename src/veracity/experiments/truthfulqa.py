"""The TruthfulQA evaluation driver: MC (either protocol), CE/KL, generation + truth/info judges, per fold.

Library entry points (the CLI and ITI's validate call these):
- `evaluate_fold` (`veracity.methods.fold`): one fold's questions, with an optional intervention factory and
  the original model for KL.
- `run_truthfulqa_eval(...)`: the whole plain evaluation over k folds, written to a run folder.
- `summarize`, `fold_table_rows`, `summary_line`: the ITI-style table and summary line.

Protocols: the MC protocols of `evaluate.truthfulqa.PROTOCOLS` and "binary" (`binary.py`: best vs best incorrect
answer, four variants). Every generated answer set gets its generation health (`health.py`: refusal rate,
distinct-2, longest repeated n-gram, mean length, degenerate rate) in `FoldMetrics` and the summary.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..metrics import METRICS, column_label, columns, fmt, headlines, true_info
from ..probes.splits import question_folds
from ..evaluate.judges import Judge
from ..evaluate.lm_metrics import LMMetrics, compute_lm_metrics
from ..evaluate.binary import metric_name, summarize_binary
from ..evaluate.health import HEALTH_KEYS, generation_health
from ..evaluate.truthfulqa import EVAL_PROTOCOLS
from ..models.scoring import InterventionFactory
from ..constraints import Checked, Count, ListOf, Options, Parses, Registered
from ..methods import options as o
from ..methods.fold import MEASURES, FoldMetrics, FoldResult, QuestionRecord, evaluate_fold, mean_present as _mean

#: FoldMetrics' fields (the figures a fold can carry), for the summary
_FOLD_FIELDS = {f.name for f in dataclasses.fields(FoldMetrics)}


def summarize(folds: Sequence[FoldMetrics]) -> dict:
    """Means over folds. `true_info` = mean True x mean Info (the ITI tables' convention);
    `true_info_per_answer` = mean over folds of the rate of answers both true and informative."""
    s = {k: _mean([getattr(f, k, None) for f in folds]) for k in METRICS if k in _FOLD_FIELDS or k in HEALTH_KEYS}
    s["true_info"] = true_info(s.get("true"), s.get("info"))
    variants = [v for f in folds if f.binary for v in f.binary]
    for v in dict.fromkeys(variants):
        s[metric_name(v)] = _mean([f.binary.get(v) for f in folds if f.binary])
    return {k: v for k, v in s.items() if v is not None}


def fold_columns() -> list[str]:
    """The per-fold table's titles: "fold", then the registry's fold columns (`metrics.TABLES["fold"]`)."""
    return ["fold"] + [column_label(k) for k in columns("fold")]


def fold_table_rows(folds: Sequence[FoldMetrics]) -> list[list[str]]:
    """Rows for the per-fold table (`fold_columns`; rates in %)."""
    return [[str(f.fold)] + [fmt(k, getattr(f, k, None), percent=True) for k in columns("fold")] for f in folds]


def summary_line(summary: dict) -> str:
    """The targets, CE/KL and binary variants, then the answers' health, each under its compact title (rates
    in %; a product of fold means says so, beside the per-answer rate), leaving out what the run did not measure."""
    def title(k: str) -> str:
        m = METRICS[k]
        return m.short + (" (product of fold means)" if m.folds == "product-of-means" else "")

    parts = [f"{title(k)} {fmt(k, summary[k], percent=True)}" for k in columns("line", [summary])]
    hs = [f"{METRICS[k].short} {fmt(k, summary[k], percent=True)}{'%' if METRICS[k].percent else ''}"
          for k in HEALTH_KEYS if summary.get(k) is not None]
    return ", ".join(parts) + ("; answers: " + ", ".join(hs) if hs else "")


#: results.json layout of an eval run (docs/reference/results.md); files without the field are version 0
#: (the same layout) and still read.
SCHEMA_VERSION = 2  # 2: binary summary keys spelled as the metrics registry (binary_loglik_truthfulqa)
#: what an eval's headline may hold: the registry's target, CE/KL and binary headline metrics
HEADLINE = tuple(headlines("target", "lm", "binary"))


def _instructions():
    from ..evaluate.truthfulqa import INSTRUCTIONS

    return INSTRUCTIONS


def _batch(value) -> None:
    from ..models.batching import parse_batch_size

    parse_batch_size(value)


@dataclass
class EvalConfig(Checked):
    """Every option of a plain evaluation (recorded in config.json and results.json)."""

    _constraints = {"model": o.MODEL, "protocol": [Options(EVAL_PROTOCOLS)],
                    "metrics": [ListOf([Options(MEASURES)], unique=True)], "judge": o.JUDGE, "folds": o.FOLDS,
                    "seed": o.SEED, "limit": o.LIMIT, "instruction": [Registered(_instructions, "instruction")],
                    "gen_style": o.GEN_STYLE, "max_new_tokens": o.COUNT, "lm_source": o.MODEL,
                    "n_docs": o.COUNT, "max_tokens": [Count(2)],
                    "batch_size": [Parses(_batch, "a positive integer or 'auto'", bad=[0, -1, "0", "x", ""])],
                    "revision": o.REVISION, "model_dtype": o.MODEL_DTYPE}
    _options = {"lm_source": "--lm-text", "n_docs": "--lm-docs", "max_tokens": "--lm-tokens"}
    _commands = ("eval truthfulqa",)

    model: str = "smollm2"
    protocol: str = "truthfulqa"
    metrics: list[str] = field(default_factory=lambda: list(MEASURES))
    judge: str = "local"
    folds: int = 2
    seed: int = 0
    limit: int | None = None
    instruction: str = "default"
    gen_style: str = "original"
    max_new_tokens: int = 50
    lm_source: str = "boolq"
    n_docs: int = 100
    max_tokens: int = 128
    batch_size: int | str = 16  # or "auto" (models.batching)
    revision: str = "2021"  # TruthfulQA revision of the items (data.truthfulqa.REVISIONS)
    model_dtype: str = "float32"  # how the model was loaded (recorded; the caller loads it)


@dataclass
class EvalOutput:
    """An evaluation's result: its settings, each fold's per-question results, the fold means, and the judges used."""
    config: EvalConfig
    folds: list[FoldResult]
    summary: dict
    judges: dict

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        return {k: self.summary[k] for k in HEADLINE if k in self.summary}

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The per-fold table (rates in %) and, for the binary protocol, the variants over all questions."""
        c = self.config
        out = [(f"TruthfulQA {c.revision} ({c.protocol} protocol) on {c.model}, per fold", fold_columns(),
                fold_table_rows([f.metrics for f in self.folds]))]
        binary = self.to_json().get("binary")
        if binary:
            out.append((f"binary task ({next(iter(binary.values()))['pair']}), all questions",
                        ["variant", "accuracy %", "chance %", "n"],
                        [[v, f"{100 * d['accuracy']:.2f}", f"{100 * d['chance']:.0f}", str(d["n"])]
                         for v, d in binary.items()]))
        return out

    @classmethod
    def from_json(cls, d: dict) -> "EvalOutput":
        """The evaluation from its results.json (questions and MC scores regrouped by fold)."""
        from ..runs import schema_version

        if schema_version(d, "eval", SCHEMA_VERSION) < 2:  # binary keys were "binary_<variant>" (with "-")
            d = {**d, "summary": {(metric_name(k[7:]) if k.startswith("binary_") else k): v
                                  for k, v in d.get("summary", {}).items()}}
        cfg = EvalConfig(**d["config"])
        qs = [QuestionRecord(**q) for q in d.get("questions", [])]
        fold_of = {q.index: q.fold for q in qs}
        lm = LMMetrics(**d["lm"]) if d.get("lm") else None
        folds = [FoldResult(FoldMetrics(**fm), [q for q in qs if q.fold == fm["fold"]],
                            [m for m in d.get("mc_scores", []) if fold_of.get(m.get("index")) == fm["fold"]], lm)
                 for fm in d.get("folds", [])]
        return cls(cfg, folds, d.get("summary", {}), d.get("judges", {}))

    def to_json(self) -> dict:
        """The results.json payload: per-question scores and answers, the binary task, the fold means and the judges
        (its fields: docs/reference/results.md). Always the current schema_version's layout: an older file read
        back is written in it."""
        from ..data.truthfulqa import DATASET_NAMES

        qs = [q for f in self.folds for q in f.questions]
        answers = [q.answer for q in qs if q.answer is not None]
        binary = None
        if any(q.binary for q in qs):
            from ..evaluate.binary import PAIR_2021, PAIR_2025, BinaryResult

            pair = PAIR_2025 if self.config.revision == "2025" else PAIR_2021
            binary = summarize_binary([BinaryResult(q.index, q.category, v, c, math.nan, math.nan)
                                       for q in qs if q.binary for v, c in q.binary.items()], pair)
        return {"schema_version": SCHEMA_VERSION, "config": asdict(self.config), "protocol": self.config.protocol,
                "judges": self.judges,
                "revision": self.config.revision, "dataset": DATASET_NAMES.get(self.config.revision),
                "binary": binary, "health": generation_health(answers) if answers else None,
                "summary": self.summary,
                "folds": [asdict(f.metrics) for f in self.folds],
                "questions": [asdict(q) for f in self.folds for q in f.questions],
                "mc_scores": [m for f in self.folds for m in f.mc_scores],
                "lm": ({k: v for k, v in asdict(self.folds[0].lm).items()} if self.folds and self.folds[0].lm else None)}

    def write(self, run) -> None:
        """questions.csv, answers.csv (when answers were generated), then results.json (last: it marks the run
        finished)."""
        rows = [asdict(q) for f in self.folds for q in f.questions]
        if any(q["answer"] is not None for q in rows):
            run.write_csv("answers.csv", [{k: q[k] for k in ("index", "fold", "question", "answer", "true_score",
                                                             "info_score", "true", "info")} for q in rows])
        run.write_csv("questions.csv", rows)
        run.finish(self.to_json(), headline=self.headline())


def fold_result_from_json(d: dict | None) -> FoldResult | None:
    """A `FoldResult` from its `asdict` form (a checkpointed fold)."""
    if d is None:
        return None
    return FoldResult(FoldMetrics(**d["metrics"]), [QuestionRecord(**q) for q in d["questions"]],
                      list(d.get("mc_scores", [])), LMMetrics(**d["lm"]) if d.get("lm") else None)


def run_truthfulqa_eval(lm, items, config: EvalConfig, *, truth_judge: Judge | None = None,
                        info_judge: Judge | None = None, intervention: InterventionFactory | None = None,
                        reference=None, data_dir=None, out: str | Path | None = None, overwrite: bool = False,
                        log: Callable[[str], None] | None = None) -> EvalOutput:
    """The whole evaluation: first `limit` questions (CSV order), k seeded folds, CE/KL computed once
    (they do not depend on the fold), per-fold metrics and the summary. With `out`, writes a run folder:
    config.json, results.json (summary keys mc1, mc2, ce_loss, kl, true, info, true_info) and answers.csv."""
    if config.protocol not in EVAL_PROTOCOLS:
        raise ValueError(f"unknown protocol {config.protocol!r}; use one of {', '.join(EVAL_PROTOCOLS)}")
    revs = {getattr(it, "revision", "2021") for it in items}
    if revs and revs != {config.revision}:
        raise ValueError(f"config.revision is {config.revision!r} but the items are of revision(s) {sorted(revs)}")
    metrics = list(config.metrics)
    if config.judge == "none" and "judge" in metrics:
        metrics.remove("judge")
    items = list(items)[:config.limit] if config.limit else list(items)
    run = None
    if out is not None:
        from ..runs import RunFolder

        from ..data.truthfulqa import DATASET_NAMES

        run = RunFolder(out, "eval", {**asdict(config), "dataset": DATASET_NAMES.get(config.revision, "truthfulqa"),
                                      "model_fingerprint": getattr(lm, "fingerprint", None)},
                        overwrite=overwrite, seed=config.seed)
    say = log or (lambda m: None)

    def logboth(m: str) -> None:
        say(m)
        if run:
            run.log(m)

    judges = {"truth": truth_judge.describe() if truth_judge else None,
              "info": info_judge.describe() if info_judge else None}
    ck = None
    if run:  # finished folds of an interrupted run in this folder are reused (same settings only)
        from ..runs import Checkpoint

        ck = Checkpoint(run.file("progress.json"), {"config": asdict(config), "metrics": metrics, "judges": judges,
                                                    "model_fingerprint": getattr(lm, "fingerprint", None),
                                                    "questions": [it.index for it in items]})
    try:  # every study's fold rule; one fold (everything held out) is allowed here
        folds = [f.tolist() for f in question_folds([it.index for it in items], config.folds, config.seed,
                                                     min_folds=1)]
    except ValueError:
        raise ValueError(f"cannot make {config.folds} folds of {len(items)} questions") from None
    saved = {k: fold_result_from_json(ck.get(f"fold{k}")) for k in range(len(folds)) if ck and ck.get(f"fold{k}")}
    lm_result = next((r.lm for r in saved.values() if r.lm is not None), None)
    if ("ce" in metrics or "kl" in metrics) and lm_result is None and len(saved) < len(folds):
        logboth(f"CE/KL on {config.n_docs} {config.lm_source} documents x {config.max_tokens} tokens")
        lm_result = compute_lm_metrics(lm.model, lm.tokenizer, source=config.lm_source, n_docs=config.n_docs,
                               max_tokens=config.max_tokens, data_dir=data_dir, reference=reference,
                               intervention=intervention, ce="ce" in metrics, kl="kl" in metrics)
    results = []
    for k, idx in enumerate(folds):
        if k in saved:
            logboth(f"fold {k}: done in an earlier run")
            results.append(saved[k])
            continue
        results.append(evaluate_fold(lm, items, idx, fold=k, protocol=config.protocol, metrics=metrics,
                                     truth_judge=truth_judge, info_judge=info_judge, intervention=intervention,
                                     reference=reference, lm_result=lm_result, data_dir=data_dir,
                                     instruction=config.instruction, gen_style=config.gen_style,
                                     max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                                     log=logboth))
        if ck:
            ck.put(f"fold{k}", asdict(results[-1]))
    summary = summarize([r.metrics for r in results])
    output = EvalOutput(config, results, summary, judges)
    if run:
        output.write(run)
    return output


def run_eval(cfg: EvalConfig, out: str | Path, *, overwrite: bool = False, judge_dir=None, data_dir=None,
             device: str | None = None, device_map: str | None = None,
             log: Callable[[str], None] | None = None) -> EvalOutput:
    """`veracity eval truthfulqa`: check every option, the run folder, the judges and the data before the
    model is loaded, then `run_truthfulqa_eval` into `out` (resuming an interrupted run of the same settings)."""
    from ..data.truthfulqa import load_truthfulqa
    from ..evaluate import get_judge
    from ..evaluate.judges import JudgeError
    from ..models import ModelNotAvailable, load
    from ..models.batching import parse_batch_size
    from ..models.loader import _resolve_dtype
    from ..runs import check_out_folder
    from ..validation import BadInput, check_folds

    try:
        cfg = dataclasses.replace(cfg, batch_size=parse_batch_size(cfg.batch_size), metrics=list(cfg.metrics))
        _resolve_dtype(cfg.model_dtype)
    except ValueError as e:
        raise BadInput(str(e)) from None
    if cfg.judge == "none" and not [m for m in cfg.metrics if m != "judge"]:
        raise BadInput("--metrics judge with --judge none measures nothing; pick a judge or other --metrics")
    check_out_folder(out, "eval", overwrite=overwrite)  # before loading anything
    truth_j = info_j = None
    if "judge" in cfg.metrics and cfg.judge != "none":
        try:
            truth_j, info_j = get_judge(cfg.judge, "truth", judge_dir), get_judge(cfg.judge, "info", judge_dir)
        except (FileNotFoundError, ValueError) as e:
            raise BadInput(f"{e} (or pass --judge none)") from None
    items = load_truthfulqa(data_dir, cfg.revision)
    check_folds(cfg.folds, len(items[:cfg.limit] if cfg.limit else items))
    try:
        lm = load(cfg.model, dtype=cfg.model_dtype, device=device, device_map=device_map)
    except (ModelNotAvailable, ValueError) as e:
        raise BadInput(str(e)) from None
    try:
        return run_truthfulqa_eval(lm, items, cfg, truth_judge=truth_j, info_judge=info_j, data_dir=data_dir,
                                   out=out, overwrite=overwrite, log=log)
    except JudgeError as e:
        raise BadInput(str(e)) from None
