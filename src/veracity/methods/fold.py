"""The TruthfulQA evaluation driver on one fold: MC (either protocol, or the binary task), CE/KL, generation with
truth/info judges and the answers' health, with an optional intervention factory entered as `intervention(phase)`
around the model calls of each phase ("mc", "lm", "generate"); and `evaluate_intervention`, the same for a fitted
steer with the binary task and side effects, which ITI validation and the ITI sweep share.
(`methods.evaluate.evaluate_prepared` is the other fold evaluator, for prompt/trainer/steer methods; the two are
to merge into one.)"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..constraints import Checked, Options
from ..evaluate.binary import score_binary
from ..evaluate.generation import generate_answers
from ..evaluate.health import HEALTH_KEYS, generation_health
from ..evaluate.judges import THRESHOLD, Judge
from ..evaluate.lm_metrics import LMMetrics, compute_lm_metrics
from ..evaluate.truthfulqa import score_mc
from ..metrics import METRICS, aggregate_folds, with_true_info
from ..models.scoring import InterventionFactory
from ..steer.apply import intervention_factory
from ..steer.intervention import Intervention
from . import options as o

#: what `evaluate_fold` can measure (the `--metrics` choices), not metric names: the MC task, CE, KL, judges
MEASURES = ("mc", "ce", "kl", "judge")


@dataclass
class QuestionRecord:
    """Everything measured for one question."""

    index: int
    fold: int
    question: str
    category: str
    mc1: float | None = None
    mc2: float | None = None
    answer: str | None = None
    true_score: float | None = None
    info_score: float | None = None
    true: bool | None = None
    info: bool | None = None
    binary: dict | None = None  # protocol "binary": variant -> 1.0 / 0.0


@dataclass
class FoldMetrics:
    """Every figure one fold measures (MC, judged True/Info, CE/KL, the binary task, answer health); None where not
    measured."""
    fold: int
    n_questions: int
    mc1: float | None = None
    mc2: float | None = None
    true: float | None = None
    info: float | None = None
    true_info_per_answer: float | None = None  # rate of answers both true and informative
    ce_loss: float | None = None
    kl: float | None = None
    binary: dict | None = None  # protocol "binary": variant -> accuracy (chance 0.5)
    health: dict | None = None  # generation health of the fold's answers (health.generation_health)
    refusal_rate: float | None = None  # the HEALTH_KEYS, flat, for tables and fold means
    distinct_2: float | None = None
    mean_longest_repeat: float | None = None
    mean_words: float | None = None
    degenerate_rate: float | None = None


@dataclass
class FoldResult:
    """One fold's metrics with the per-question records (and MC scores, LM metrics) they were computed from."""
    metrics: FoldMetrics
    questions: list[QuestionRecord]
    mc_scores: list[dict] = field(default_factory=list)  # per question: choices and their log-probs
    lm: LMMetrics | None = None


def mean_present(xs) -> float | None:
    """The mean of the values that are not None (None when none are): folds that skipped a metric do not count as
    zero."""
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def evaluate_fold(lm, items, indices: Sequence[int] | None = None, *, fold: int = 0, protocol: str = "truthfulqa",
                  metrics: Sequence[str] = MEASURES, truth_judge: Judge | None = None, info_judge: Judge | None = None,
                  intervention: InterventionFactory | None = None, reference=None,
                  lm_result: LMMetrics | None = None, lm_texts: Sequence[str] | None = None,
                  lm_source: str = "boolq", n_docs: int = 100, max_tokens: int = 128, data_dir=None,
                  instruction: str = "default", gen_style: str = "original", max_new_tokens: int = 50,
                  batch_size: int | str = 16, log: Callable[[str], None] | None = None) -> FoldResult:
    """Evaluate `lm` on the questions `indices` (CSV row indices into `items`; default all).

    `intervention(phase)` is entered around MC continuation forwards ("mc"), CE/KL forwards ("lm") and
    generate() ("generate"); `reference` (a LoadedModel or module; default the same model without the
    intervention) is the original model for KL. `lm_result` reuses CE/KL computed elsewhere (they do
    not depend on the fold). Judging needs the answers, so "judge" implies generation.
    """
    bad = set(metrics) - set(MEASURES)
    if bad:
        raise ValueError(f"unknown metrics {sorted(bad)}; choose from {', '.join(MEASURES)}")
    by_index = {it.index: it for it in items}
    indices = sorted(by_index) if indices is None else list(indices)
    sel = [by_index[i] for i in indices]
    say = log or (lambda m: None)
    recs = {it.index: QuestionRecord(it.index, fold, it.question, it.category) for it in sel}
    fm = FoldMetrics(fold, len(sel))
    mc_scores: list[dict] = []
    if "mc" in metrics and protocol == "binary":
        say(f"fold {fold}: binary task on {len(sel)} questions")
        bs = score_binary(lm, sel, instruction=instruction,
                          batch_size=max(8, batch_size) if isinstance(batch_size, int) else batch_size,
                          intervention=intervention,
                          progress=lambda i, n: say(f"fold {fold}: binary {i}/{n}") if i % 100 == 0 else None)
        for r in bs.results:
            recs[r.index].binary = {**(recs[r.index].binary or {}), r.variant: r.correct}
            mc_scores.append({"index": r.index, "protocol": "binary", "variant": r.variant,
                              "score_right": r.score_right, "score_wrong": r.score_wrong})
        fm.binary = {v: d["accuracy"] for v, d in bs.variants.items()}
    elif "mc" in metrics:
        say(f"fold {fold}: MC ({protocol}) on {len(sel)} questions")
        mc = score_mc(lm, sel, protocol, instruction=instruction,
                      batch_size=max(8, batch_size) if isinstance(batch_size, int) else batch_size,
                      intervention=intervention,
                      progress=lambda i, n: say(f"fold {fold}: MC {i}/{n}") if i % 100 == 0 else None)
        for r in mc.results:
            recs[r.index].mc1, recs[r.index].mc2 = r.mc1, r.mc2
            mc_scores.append({"index": r.index, "protocol": r.protocol, "choices": r.choices, "scores": r.scores,
                              "mc1_choice_ids": r.mc1_choice_ids, "mc1_labels": r.mc1_labels,
                              "mc2_choice_ids": r.mc2_choice_ids, "mc2_labels": r.mc2_labels})
        fm.mc1, fm.mc2 = mc.mc1, mc.mc2
    want_ce, want_kl = "ce" in metrics, "kl" in metrics
    if lm_result is None and (want_ce or want_kl):
        say(f"fold {fold}: CE/KL on {n_docs} documents x {max_tokens} tokens")
        lm_result = compute_lm_metrics(lm.model, lm.tokenizer, texts=lm_texts, source=lm_source, n_docs=n_docs,
                               max_tokens=max_tokens, data_dir=data_dir, reference=reference,
                               intervention=intervention, ce=want_ce, kl=want_kl)
    if lm_result is not None:
        fm.ce_loss = lm_result.ce_loss if want_ce else None
        fm.kl = lm_result.kl if want_kl else None
    if "judge" in metrics:
        say(f"fold {fold}: generating {len(sel)} answers")
        answers = generate_answers(lm, [it.question for it in sel], [it.index for it in sel], style=gen_style,
                                   instruction=instruction, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                   intervention=intervention,
                                   progress=lambda i, n: say(f"fold {fold}: generated {i}/{n}")
                                   if i == n or i % (4 * (batch_size if isinstance(batch_size, int) else 16)) == 0
                                   else None)
        for a in answers:
            recs[a.index].answer = a.answer
        qs, ans = [a.question for a in answers], [a.answer for a in answers]
        fm.health = generation_health(ans)
        for k in HEALTH_KEYS:
            setattr(fm, k, fm.health[k])
        say(f"fold {fold}: judging {len(ans)} answers")
        for judge, attr in ((truth_judge, "true"), (info_judge, "info")):
            if judge is None:
                continue
            p = judge.score(qs, ans)
            for a, s in zip(answers, p):
                setattr(recs[a.index], attr + "_score", float(s))
                setattr(recs[a.index], attr, bool(s >= THRESHOLD))
        fm.true = mean_present([float(r.true) for r in recs.values() if r.true is not None])
        fm.info = mean_present([float(r.info) for r in recs.values() if r.info is not None])
        both = [float(r.true and r.info) for r in recs.values() if r.true is not None and r.info is not None]
        fm.true_info_per_answer = mean_present(both)
    return FoldResult(fm, [recs[i] for i in indices], mc_scores, lm_result)


def summary_keys() -> list[str]:
    """The keys a fold summary keeps, in order: every registered metric (targets, CE/KL, the answers' health,
    the binary task, side effects; `veracity.metrics`), so a metric registered later is kept too."""
    return list(METRICS)


@dataclass
class FoldEvalConfig(Checked):
    """What `evaluate_intervention` measures on each held-out fold (a subset of the evaluation driver's
    options; `experiments.truthfulqa.EvalConfig` configures a whole plain-model evaluation)."""

    _constraints = {"protocol": [Options(("truthfulqa", "lm-eval"))], "judge": o.JUDGE, "ce_texts": o.COUNT0,
                    "ce_tokens": o.COUNT, "generate_positions": o.GEN_POSITIONS,
                    "mc_shift_from": [Options(("answer-start", "legacy"))], "batch_size": o.BATCH,
                    "data_dir": o.OPTIONAL_TEXT, "binary": o.BOOL, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N, "seed": o.SEED}
    _options = {"generate_positions": "--gen-positions"}

    protocol: str = "truthfulqa"
    judge: str = "none"  # none | local | hf:<id> | openai:<model>
    ce_texts: int = 100  # held-out documents for CE / KL
    ce_tokens: int = 128  # first tokens of each
    generate_positions: str = "last"
    mc_shift_from: str = "answer-start"  # MC shift start: answer-start (veracity) | legacy (honest_llama)
    batch_size: int = 16
    data_dir: str | None = None
    binary: bool = False  # also TruthfulQA's binary task (best vs best incorrect answer), every variant
    side_effects: tuple = ()  # methods.side_effects on each fold: sycophancy, boolq, honest, health
    side_effect_n: dict = field(default_factory=dict)  # their sample sizes (default side_effects.DEFAULT_N)
    seed: int = 0  # the side effects' samples


def evaluate_intervention(lm, items: Sequence, intervention: Intervention | None, cfg: FoldEvalConfig,
                  ce_texts: Sequence[str] | None = None, log: Callable[[str], None] | None = None,
                  fold: int = 0, kl: bool = True) -> dict:
    """Metrics of `lm` with `intervention` (None: the plain model) on these TruthfulQA items, through the
    evaluation driver: MC on every answer token, CE/KL(original || intervened) on every text token,
    generation (last position of every forward call by default) and the judges unless judge == "none".
    Returns {"metrics": {...summary keys...}, "per_question": [...], "answers": [...]}."""
    from ..evaluate.judges import get_judge

    factory = (intervention_factory(lm, intervention, cfg.generate_positions, cfg.mc_shift_from)
               if intervention is not None else None)
    wanted = (["mc"] + (["ce"] + (["kl"] if kl else []) if ce_texts else []) +
              ([] if cfg.judge == "none" else ["judge"]))
    res = evaluate_fold(lm, list(items), [it.index for it in items], protocol=cfg.protocol, metrics=wanted,
                truth_judge=get_judge(cfg.judge, "truth"), info_judge=get_judge(cfg.judge, "info"),
                intervention=factory, lm_texts=list(ce_texts) if ce_texts else None,
                n_docs=len(ce_texts) if ce_texts else 0, max_tokens=cfg.ce_tokens, batch_size=cfg.batch_size,
                data_dir=cfg.data_dir, log=log, fold=fold)
    m = res.metrics
    metrics = {k: getattr(m, k) for k in METRICS if getattr(m, k, None) is not None}  # what the fold measured
    with_true_info(metrics)
    if cfg.binary:
        from ..evaluate.binary import metric_name, score_binary

        if log:
            log(f"fold {fold}: binary task on {len(items)} questions")
        bs = score_binary(lm, list(items), intervention=factory, batch_size=cfg.batch_size)
        metrics.update({metric_name(v): d["accuracy"] for v, d in bs.variants.items()})
    if cfg.side_effects:
        from .prepare import PreparedMethod, parse_method
        from .side_effects import side_effect_metrics

        if log:
            log(f"fold {fold}: side effects ({', '.join(cfg.side_effects)})")
        pm = PreparedMethod(parse_method("iti" if intervention is not None else "baseline"), lm, intervention,
                            generate_positions=cfg.generate_positions)
        got, _ = side_effect_metrics(pm, list(items), cfg.side_effects, cfg.side_effect_n, cfg.seed, cfg.batch_size,
                                     data_dir=cfg.data_dir,
                                     answers=[q.answer for q in res.questions if q.answer is not None] or None)
        metrics.update(got)
    per_q = [asdict(q) for q in res.questions]
    answers = [{"index": q.index, "question": q.question, "answer": q.answer, "true": q.true, "info": q.info,
                "true_score": q.true_score, "info_score": q.info_score}
               for q in res.questions if q.answer is not None]
    return {"metrics": metrics, "per_question": per_q, "answers": answers}


def summarise(fold_metrics: list[dict], weights: Sequence[int] | None = None) -> dict:
    """Mean over folds of every summary key present in all folds (ITI reports the fold mean); True*Info
    as the product of the fold means (the ITI convention; `veracity.metrics`)."""
    return aggregate_folds(fold_metrics, summary_keys())
