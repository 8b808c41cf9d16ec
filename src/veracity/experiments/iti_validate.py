"""k-fold validation of ITI: for each fold, fit on the other folds and evaluate the held-out questions.

Evaluation goes through one function, `veracity.methods.fold.evaluate_intervention`, so validate and sweep share
it; it calls the TruthfulQA evaluation driver (`veracity.methods.fold.evaluate_fold`) with the intervention's
phase factory. With `judge="none"` generation and judging are skipped, as in the driver.
Summary keys are the driver's: mc1, mc2, ce_loss, kl, true, info, true_info.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from ..constraints import Conflict
from ..metrics import columns, headlines
from ..methods import options as o
from ..data.registry import held_out_texts
from ..methods.fold import FoldEvalConfig, evaluate_intervention, summarise
from .iti_common import ITIRunOptions

if TYPE_CHECKING:
    from ..steer.iti import ITIConfig, ITIData

@dataclass
class ValidateResult:
    """Cross-validated ITI: each fold's metrics and heads, their means, the settings, and with `baseline=True` the
    plain model's means."""
    folds: list[dict]
    summary: dict
    config: dict = field(default_factory=dict)
    summary_baseline: dict | None = None  # fold means of the plain model (validate(baseline=True))


def merge_answers(folds: list[dict]) -> list[dict]:
    """One row per question with a generated answer: fold, index, question, the answer before ITI (the plain
    model, when the baseline was run) and after, with their judge scores and verdicts."""
    rows = []
    for f in folds:
        before = {a["index"]: a for a in f.get("baseline_answers", [])}
        for a in f.get("answers", []):
            b = before.get(a["index"], {})
            rows.append({"fold": f["fold"], "index": a["index"], "question": a["question"],
                         "answer_before": b.get("answer"), "true_before": b.get("true"),
                         "info_before": b.get("info"), "true_score_before": b.get("true_score"),
                         "info_score_before": b.get("info_score"),
                         "answer": a["answer"], "true": a["true"], "info": a["info"],
                         "true_score": a.get("true_score"), "info_score": a.get("info_score")})
    return rows


def validate(lm, data: ITIData, items: Sequence, iti: ITIConfig, k: int, alpha: float, n_folds: int = 2,
             contiguous: bool = False, ecfg: FoldEvalConfig | None = None, out: Path | None = None,
             log: Callable[[str], None] = print, baseline: bool = False, checkpoint=None) -> ValidateResult:
    """Fit per fold on the other folds, evaluate on the held-out ones. `items`: TruthfulQA items indexed
    by CSV row (`load_truthfulqa`). Saves each fold's intervention under `out` when given. `baseline`: also
    evaluate the plain model on each fold (MC, CE, generation + judges), so every answer has a before and
    an after (`merge_answers`); with alpha = 0 the intervened run is the baseline and is reused.
    `checkpoint` (`runs.Checkpoint`): folds finished by an earlier run are taken from it, and each new
    fold is put there as soon as it is done."""
    from ..steer.iti import fit_folds
    ecfg = ecfg or FoldEvalConfig()
    by_index = {it.index: it for it in items}
    fits = fit_folds(data, iti, n_folds=n_folds, contiguous=contiguous)
    texts = held_out_texts(ecfg.data_dir, ecfg.ce_texts) if ecfg.ce_texts else None
    folds = []
    for ff in fits:
        iv = ff.intervention(min(k, len(ff.heads)), alpha)
        if out is not None:
            iv.write(Path(out) / f"intervention_fold{ff.fold}")
        test_items = [by_index[int(q)] for q in ff.test_questions if int(q) in by_index]
        done = checkpoint.get(f"fold{ff.fold}") if checkpoint is not None else None
        if done is not None:
            log(f"fold {ff.fold}: done in an earlier run")
            folds.append(done)
            continue
        res = evaluate_intervention(lm, test_items, iv, ecfg, texts, log=log, fold=ff.fold)
        log(f"fold {ff.fold}: {len(test_items)} questions, " +
            ", ".join(f"{key}={v:.4f}" for key, v in res["metrics"].items()))
        row = {"fold": ff.fold, "n_questions": len(test_items), "metrics": res["metrics"],
               "heads": iv.heads, "sigmas": iv.sigmas.tolist(), "per_question": res["per_question"],
               "answers": res.get("answers", [])}
        if baseline:
            base = res if alpha == 0 else evaluate_intervention(lm, test_items, None, ecfg, texts, log=log, fold=ff.fold,
                                                        kl=False)
            log(f"fold {ff.fold} baseline: " + ", ".join(f"{key}={v:.4f}" for key, v in base["metrics"].items()))
            row.update(baseline_metrics=base["metrics"], baseline_answers=base.get("answers", []))
        if checkpoint is not None:
            checkpoint.put(f"fold{ff.fold}", row)
            row = checkpoint.get(f"fold{ff.fold}")  # its JSON form, as a resumed run would read it
        folds.append(row)
    summary = summarise([f["metrics"] for f in folds])
    config = {"iti": asdict(iti), "k": k, "alpha": alpha, "folds": n_folds, "contiguous": contiguous,
              "eval": asdict(ecfg), "data": dict(data.source), "baseline": baseline,
              "fold_questions": [{"fold": ff.fold, "test": ff.test_questions.tolist(),
                                  "probe_train": np.sort(ff.fit_questions).tolist(),
                                  "validation": np.sort(ff.val_questions).tolist()} for ff in fits]}
    res = ValidateResult(folds=folds, summary=summary, config=config)
    if baseline:
        res.summary_baseline = summarise([f["baseline_metrics"] for f in folds])
    return res


# ------------------------------------------------------------------------------------------ the study

#: results.json layout of an iti-validate run (docs/reference/results.md); files without the field are
#: version 0 (the same layout) and still read.
SCHEMA_VERSION = 1


@dataclass
class ValidateConfig(ITIRunOptions):
    """Every option of `veracity iti validate`: the shared ITI options, K, alpha and what is measured."""

    _constraints = {"num_heads": o.NUM_HEADS, "alpha": o.ALPHA, "baseline": o.BOOL, "binary": o.BOOL,
                    "model_dtype": o.MODEL_DTYPE, "device_map": o.DEVICE_MAP}
    _rules = (Conflict("device", "device_map", values=("cpu", "auto"),
                       why="--device-map places the model itself (--device would be ignored)"),)
    _commands = ("iti validate",)

    num_heads: int = 48
    alpha: float = 15.0
    baseline: bool = True
    binary: bool = False
    model_dtype: str = "float32"
    device_map: str | None = None


@dataclass
class ValidateRun:
    """The typed result of an iti-validate run: what results.json holds (plus the merged answers)."""

    config: dict
    revision: str
    eval_revision: str
    cross_revision: dict | None
    folds: list[dict]
    per_question: list[dict]
    summary: dict
    summary_baseline: dict | None = None
    answers: list[dict] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        keys = set(headlines()) & set(columns("summary"))
        return {k: v for k, v in self.summary.items() if k in keys}

    def tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """The console tables, each (title, columns, rows): every fold's metrics, then the fold means with ITI
        and, when the baseline was run, of the plain model (`metrics.TABLES`: "fold", "summary")."""
        from ..metrics import column_label, fmt

        fold_keys, keys = columns("fold"), columns("summary")
        out = [(f"fold {f['fold']} ({f['n_questions']} questions)", [column_label(k) for k in fold_keys],
                [[fmt(k, f["metrics"].get(k)) for k in fold_keys]]) for f in self.folds]
        direction = self.config.get("iti", {}).get("direction", "")
        rows = [[f"alpha={self.config.get('alpha', 0):g} K={self.config.get('k')} {direction}"]
                + [fmt(k, self.summary.get(k)) for k in keys]]
        if self.summary_baseline:
            rows.append(["baseline (plain model)"] + [fmt(k, self.summary_baseline.get(k)) for k in keys])
        out.append(("fold means", [""] + [column_label(k, short=True) for k in keys], rows))
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "config": self.config, "revision": self.revision,
                "eval_revision": self.eval_revision, "cross_revision": self.cross_revision, "folds": self.folds,
                "per_question": self.per_question, "summary": self.summary,
                "summary_baseline": self.summary_baseline}

    @classmethod
    def from_json(cls, d: dict) -> "ValidateRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "iti-validate", SCHEMA_VERSION)
        return cls(config=d.get("config", {}), revision=d.get("revision", "2021"),
                   eval_revision=d.get("eval_revision", d.get("revision", "2021")),
                   cross_revision=d.get("cross_revision"), folds=d.get("folds", []),
                   per_question=d.get("per_question", []), summary=d.get("summary", {}),
                   summary_baseline=d.get("summary_baseline"), schema_version=v)

    def write(self, run) -> None:
        """per_question.csv, answers.csv / answers.jsonl and results.json (last: it marks the run finished)."""
        import json

        run.write_csv("per_question.csv", self.per_question)
        if self.answers:
            run.write_csv("answers.csv", self.answers)
            (run.path / "answers.jsonl").write_text(
                "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in self.answers), encoding="utf-8")
        run.finish(self.to_json(), headline=self.headline())


def run_validate(cfg: ValidateConfig, out: str | Path, *, overwrite: bool = False,
                 log: Callable[[str], None] = print) -> ValidateRun:
    """k-fold ITI as `veracity iti validate` runs it: resolve the settings, check the run folder (before
    loading anything), load the model and the probe data, fit and evaluate each fold, write the run folder
    (config.json, log.txt, intervention_fold*, per_question.csv, answers.*, results.json). `log` gets the
    messages meant for the user (the preset, the revision matching)."""
    from ..runs import RunFolder
    from ..validation import BadInput
    from .iti_common import (check_revisions, iti_config, load_data, load_model, preset_lines,
                             resolve_settings, settings_record)

    eval_revision = cfg.eval_revision or cfg.revision
    st = resolve_settings(cfg.reproduce, cfg.direction, cfg.data, cfg.sigma_from, cfg.contiguous_folds,
                          cfg.mc_shift_from, cfg.seed)
    check_revisions(cfg.revision, eval_revision, st)
    icfg = iti_config(cfg.direction, st["sigma_from"], st["seed"], max_k=cfg.num_heads, st=st)
    run = RunFolder(out, "iti-validate", {"model": cfg.model, "data": "truthfulqa", "num_heads": cfg.num_heads,
                                          "revision": cfg.revision, "eval_revision": eval_revision,
                                          "alpha": cfg.alpha, "direction": cfg.direction, "folds": cfg.folds,
                                          "judge": cfg.judge, "protocol": cfg.protocol, "limit": cfg.limit,
                                          **settings_record(st), "baseline": cfg.baseline,
                                          "model_dtype": cfg.model_dtype, "device_map": cfg.device_map,
                                          "binary": cfg.binary, "side_effects": list(cfg.side_effects),
                                          "side_effect_n": dict(cfg.side_effect_n)},
                    overwrite=overwrite, seed=st["seed"], defer=True)  # checked now, created below
    for line in preset_lines(st):
        log(line)
    lm = load_model(cfg.model, cfg.device, cfg.model_dtype, cfg.device_map, num_heads=cfg.num_heads)
    data, items, cross = load_data(lm, cfg.data_dir, cfg.limit, cfg.acts, st, cfg.revision, eval_revision,
                                   folds=cfg.folds)
    if cross:
        log(f"fitted on {cfg.revision}, evaluated on {eval_revision}: {cross['matched']} questions matched by "
            f"text; {len(cross['removed'])} have no {eval_revision} version (not evaluated), "
            f"{len(cross['unmatched_eval'])} {eval_revision} questions have none in {cfg.revision}")
    ecfg = FoldEvalConfig(protocol=cfg.protocol, judge=cfg.judge, data_dir=cfg.data_dir,
                      generate_positions=cfg.gen_positions, ce_texts=cfg.ce_texts,
                      mc_shift_from=st["mc_shift_from"], binary=cfg.binary, side_effects=tuple(cfg.side_effects),
                      side_effect_n=dict(cfg.side_effect_n), seed=st["seed"])
    run.start()
    from ..runs import Checkpoint

    ck = Checkpoint(run.file("progress.json"), {"config": {k: v for k, v in run.config.items() if k not in ("created", "argv")},
                                                "model_fingerprint": lm.fingerprint,
                                                "data": dict(data.source)})
    try:
        res = validate(lm, data, items, icfg, cfg.num_heads, cfg.alpha, cfg.folds, st["contiguous"], ecfg,
                       out=run.path, log=run.log, baseline=cfg.baseline, checkpoint=ck)
    except RuntimeError as e:
        raise BadInput(str(e)) from None
    result = ValidateRun(
        config=dict(res.config, reproduce=st["reproduce"], remaining_differences=st["remaining_differences"]),
        revision=cfg.revision, eval_revision=eval_revision, cross_revision=cross,
        folds=[{k: v for k, v in f.items() if k not in ("per_question", "answers", "baseline_answers")}
               for f in res.folds],
        per_question=[dict(r, fold=f["fold"]) for f in res.folds for r in f["per_question"]],
        summary=res.summary, summary_baseline=res.summary_baseline, answers=merge_answers(res.folds))
    result.write(run)
    return result
