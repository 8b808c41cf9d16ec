"""k-fold validation of ITI: for each fold, fit on the other folds and evaluate the held-out questions.

Evaluation goes through one function, `evaluate_fold`, so validate and sweep share it; it calls the
TruthfulQA evaluation driver (`veracity.experiments.truthfulqa.evaluate_fold`) with the intervention's phase
factory. With `judge="none"` generation and judging are skipped, as in the driver.
Summary keys are the driver's: mc1, mc2, ce_loss, kl, true, info, true_info.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from ..steer.apply import intervention_factory
from ..steer.intervention import Intervention
from ..metrics import aggregate_folds, with_true_info
from ..steer.iti import ITIConfig, ITIData, fit_folds

SUMMARY_KEYS = ("true_info", "true_info_per_answer", "true", "info", "mc1", "mc2", "ce_loss", "kl",
                # generation health of the answers (veracity.evaluate.health; present when answers were generated)
                "refusal_rate", "distinct_2", "mean_longest_repeat", "mean_words", "degenerate_rate",
                # TruthfulQA's binary task (EvalConfig.binary; veracity.evaluate.binary, chance 0.5)
                "binary_loglik_lm_eval", "binary_loglik_truthfulqa", "binary_ab_best_first",
                "binary_ab_best_second", "binary_ab_average")


@dataclass
class EvalConfig:
    """What to measure on each fold (the evaluation driver's options)."""

    protocol: str = "truthfulqa"
    judge: str = "none"  # none | local | hf:<id> | openai:<model>
    ce_texts: int = 100  # held-out documents for CE / KL
    ce_tokens: int = 128  # first tokens of each
    generate_positions: str = "last"
    mc_shift_from: str = "answer-start"  # MC shift start: answer-start (veracity) | legacy (honest_llama)
    batch_size: int = 16
    data_dir: str | None = None
    binary: bool = False  # also TruthfulQA's binary task (best vs best incorrect answer), every variant


def held_out_texts(data_dir, n: int) -> list[str]:
    """CE/KL text: BoolQ passages (Wikipedia), the evaluation driver's default."""
    from ..data import get_dataset

    return get_dataset("boolq-passages", data_dir=data_dir, limit=n).texts


def evaluate_fold(lm, items: Sequence, intervention: Intervention | None, cfg: EvalConfig,
                  ce_texts: Sequence[str] | None = None, log: Callable[[str], None] | None = None,
                  fold: int = 0, kl: bool = True) -> dict:
    """Metrics of `lm` with `intervention` (None: the plain model) on these TruthfulQA items, through the
    evaluation driver: MC on every answer token, CE/KL(original || intervened) on every text token,
    generation (last position of every forward call by default) and the judges unless judge == "none".
    Returns {"metrics": {...summary keys...}, "per_question": [...], "answers": [...]}."""
    from .truthfulqa import evaluate_fold as drive
    from ..evaluate.judges import get_judge

    factory = (intervention_factory(lm, intervention, cfg.generate_positions, cfg.mc_shift_from)
               if intervention is not None else None)
    wanted = (["mc"] + (["ce"] + (["kl"] if kl else []) if ce_texts else []) +
              ([] if cfg.judge == "none" else ["judge"]))
    res = drive(lm, list(items), [it.index for it in items], protocol=cfg.protocol, metrics=wanted,
                truth_judge=get_judge(cfg.judge, "truth"), info_judge=get_judge(cfg.judge, "info"),
                intervention=factory, lm_texts=list(ce_texts) if ce_texts else None,
                n_docs=len(ce_texts) if ce_texts else 0, max_tokens=cfg.ce_tokens, batch_size=cfg.batch_size,
                data_dir=cfg.data_dir, log=log, fold=fold)
    m = res.metrics
    metrics = {k: getattr(m, k) for k in ("mc1", "mc2", "ce_loss", "kl", "true", "info", "true_info_per_answer",
                                          "refusal_rate", "distinct_2", "mean_longest_repeat", "mean_words",
                                          "degenerate_rate")
               if getattr(m, k, None) is not None}
    with_true_info(metrics)
    if cfg.binary:
        from ..evaluate.binary import score_binary

        if log:
            log(f"fold {fold}: binary task on {len(items)} questions")
        bs = score_binary(lm, list(items), intervention=factory, batch_size=cfg.batch_size)
        metrics.update({"binary_" + v.replace("-", "_"): d["accuracy"] for v, d in bs.variants.items()})
    per_q = [asdict(q) for q in res.questions]
    answers = [{"index": q.index, "question": q.question, "answer": q.answer, "true": q.true, "info": q.info,
                "true_score": q.true_score, "info_score": q.info_score}
               for q in res.questions if q.answer is not None]
    return {"metrics": metrics, "per_question": per_q, "answers": answers}


@dataclass
class ValidateResult:
    folds: list[dict]
    summary: dict
    config: dict = field(default_factory=dict)
    summary_baseline: dict | None = None  # fold means of the plain model (validate(baseline=True))


def summarise(fold_metrics: list[dict], weights: Sequence[int] | None = None) -> dict:
    """Mean over folds of every summary key present in all folds (ITI reports the fold mean); True*Info
    as the product of the fold means (the ITI convention; `veracity.metrics`)."""
    return aggregate_folds(fold_metrics, SUMMARY_KEYS)


def restrict(data: ITIData, limit: int | None) -> ITIData:
    """The first `limit` questions (CSV order), as `--limit` does in the evaluation driver (sigma rows and
    the multiple-choice order restricted alike)."""
    if limit is None:
        return data
    out = data.restrict(data.questions[data.questions < limit])
    out.source = dict(data.source, question_limit=limit)
    return out


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
             contiguous: bool = False, ecfg: EvalConfig | None = None, out: Path | None = None,
             log: Callable[[str], None] = print, baseline: bool = False) -> ValidateResult:
    """Fit per fold on the other folds, evaluate on the held-out ones. `items`: TruthfulQA items indexed
    by CSV row (`load_truthfulqa`). Saves each fold's intervention under `out` when given. `baseline`: also
    evaluate the plain model on each fold (MC, CE, generation + judges), so every answer has a before and
    an after (`merge_answers`); with alpha = 0 the intervened run is the baseline and is reused."""
    ecfg = ecfg or EvalConfig()
    by_index = {it.index: it for it in items}
    fits = fit_folds(data, iti, n_folds=n_folds, contiguous=contiguous)
    texts = held_out_texts(ecfg.data_dir, ecfg.ce_texts) if ecfg.ce_texts else None
    folds = []
    for ff in fits:
        iv = ff.intervention(min(k, len(ff.heads)), alpha)
        if out is not None:
            iv.save(Path(out) / f"intervention_fold{ff.fold}")
        test_items = [by_index[int(q)] for q in ff.test_questions if int(q) in by_index]
        res = evaluate_fold(lm, test_items, iv, ecfg, texts, log=log, fold=ff.fold)
        log(f"fold {ff.fold}: {len(test_items)} questions, " +
            ", ".join(f"{key}={v:.4f}" for key, v in res["metrics"].items()))
        row = {"fold": ff.fold, "n_questions": len(test_items), "metrics": res["metrics"],
               "heads": iv.heads, "sigmas": iv.sigmas.tolist(), "per_question": res["per_question"],
               "answers": res.get("answers", [])}
        if baseline:
            base = res if alpha == 0 else evaluate_fold(lm, test_items, None, ecfg, texts, log=log, fold=ff.fold,
                                                        kl=False)
            log(f"fold {ff.fold} baseline: " + ", ".join(f"{key}={v:.4f}" for key, v in base["metrics"].items()))
            row.update(baseline_metrics=base["metrics"], baseline_answers=base.get("answers", []))
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
