"""The one fold evaluator: `evaluate(pm, items, plan)` measures a `PreparedMethod` on one fold's held-out
TruthfulQA questions and returns one typed `FoldEvaluation`: MC in either protocol (or TruthfulQA's binary
task as the MC measure, or beside it), CE on held-out text and KL against the original, greedy answers judged
true / informative with their health, the selected side effects, and what it cost.

Every study evaluates through it: `veracity eval` (`evaluate_fold`), ITI validation and the ITI sweep
(`evaluate_intervention`), compare-interventions and the steer sweep (`methods.evaluate.evaluate_prepared`)
are adapters of a few lines that keep their callers' signatures and result shapes; the sycophancy study
scores its MC through the same `methods.scoring` path.

With a kept detector (`FoldPlan.detector`, `--detector`: `veracity.evaluate.detector`), the fold also reports what the
model *believes* next to what it *says*: the detector scores the method's greedy answers from the hidden
states of their own generation (`capture.generation`, under the method's prompt and hooks; no second
forward). When judges run, that generation gives the judged answers (the same greedy tokens as without a
detector); otherwise short answers (`detector_tokens`, stopped after the first line, which is all the
detector reads) are generated for the detector alone. Reported: the mean P(correct) and the share flagged
at the detector's threshold (`detector_belief`, `detector_flagged`). A trained method's answers are read
with the same detector (fitted on the original model). A plain model or a bare steer is a `PreparedMethod`
without a prompt (`as_method`): it is posed in the protocol's own prompt (TruthfulQA's instruction + primer,
lm-eval's primer), a method's prompt poses it otherwise."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..constraints import AnyOf, Checked, Count, Instance, ListOf, Options
from ..evaluate.binary import metric_name, score_binary
from ..evaluate.health import HEALTH_KEYS, generation_health
from ..evaluate.judges import THRESHOLD, Judge
from ..evaluate.lm_metrics import LMMetrics, compute_lm_metrics
from ..evaluate.truthfulqa import EVAL_PROTOCOLS, INSTRUCTIONS, MCResult
from ..metrics import METRICS, aggregate_folds, with_true_info
from ..models.scoring import InterventionFactory
from . import options as o
from .prepare import MethodSpec, PreparedMethod
from .scoring import generate_prompted, generation_prompts, score_mc_prompted

if TYPE_CHECKING:
    from ..evaluate.detector import Detector
    from ..steer.intervention import Intervention

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


@dataclass
class FoldPlan(Checked):
    """What `evaluate` measures on a fold and how: every study's evaluation settings map onto it."""

    _constraints = {"protocol": [Options(EVAL_PROTOCOLS)],
                    "measures": [ListOf([Options(MEASURES)], unique=True)], "binary": o.BOOL,
                    "instruction": [Options(tuple(INSTRUCTIONS))], "gen_style": o.GEN_STYLE,
                    "max_new_tokens": o.COUNT, "batch_size": [AnyOf(Count(), Options(("auto",)))],
                    "mc_batch_size": [None, AnyOf(Count(), Options(("auto",)))],
                    "lm_source": o.MODEL, "n_docs": o.COUNT0, "max_tokens": o.COUNT, "data_dir": o.OPTIONAL_TEXT,
                    "mc_shift_from": o.MC_SHIFT_FROM, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N, "seed": o.SEED,
                    "detector": [None, Instance("veracity.evaluate.detector:Detector")], "detector_tokens": o.COUNT}

    protocol: str = "truthfulqa"  # the MC protocol; "binary": the binary task is the MC measure
    measures: tuple = MEASURES  # of "mc", "ce", "kl", "judge" (judging implies generating)
    binary: bool = False  # also the binary task (every variant) beside MC
    instruction: str = "default"  # the protocol prompt's instruction (a method's prompt has its own)
    gen_style: str = "original"  # the protocol's generation prompt: original (few-shot) or chat
    max_new_tokens: int = 50
    batch_size: int | str = 16
    mc_batch_size: int | str | None = None  # MC and the binary task (None: batch_size); batches change float sums
    lm_source: str = "boolq"  # CE/KL documents when no texts are given
    n_docs: int = 100
    max_tokens: int = 128  # first tokens of each CE/KL document
    data_dir: str | None = None
    mc_shift_from: str = "answer-start"  # ITI's MC shift start: answer-start | legacy (honest_llama)
    side_effects: tuple = ()  # methods.side_effects on the fold
    side_effect_n: dict = field(default_factory=dict)  # their sample sizes (default side_effects.DEFAULT_N)
    seed: int = 0  # the side effects' samples
    detector: Detector | None = None  # a kept detector, loaded once by the study: its belief in the answers
    detector_tokens: int = 24  # new tokens of the detector's own answers when no judge generates them


@dataclass
class FoldEvaluation:
    """Everything `evaluate` measured on one fold: the fold result (metrics, per-question records with answers
    and judge scores, MC scores, CE/KL), the MC results, the side effects and what the evaluation cost."""

    result: FoldResult
    mc: list[MCResult] = field(default_factory=list)
    side_effects: dict = field(default_factory=dict)  # registered side-effect metrics
    side_costs: dict = field(default_factory=dict)  # their sample sizes (<name>_n) and seconds (<name>_s)
    detector: dict = field(default_factory=dict)  # with a detector: detector_belief, detector_flagged
    #: with a detector, per question index: the exact answer span it read (detector_answer), its score
    #: (detector_score, higher = more likely correct), P(correct) (detector_belief) and flag (detector_flagged)
    verdicts: dict = field(default_factory=dict)
    infer_s: float = 0.0  # MC and generation
    side_effects_s: float = 0.0
    prompt_tokens: float = 0.0  # mean MC context tokens

    def metrics(self) -> dict:
        """The registered metrics the fold measured (binary variants and side effects included), with True*Info."""
        m = self.result.metrics
        out = {k: getattr(m, k) for k in METRICS if getattr(m, k, None) is not None}
        with_true_info(out)
        out.update({metric_name(v): acc for v, acc in (m.binary or {}).items()})
        out.update(self.side_effects)
        out.update(self.detector)
        return out


@dataclass(frozen=True)
class Hooks:
    """A bare intervention factory (phase -> context manager) in a steer's place, so a caller's own hooks
    evaluate as a method."""

    fn: InterventionFactory

    def factory(self, lm, generate_positions: str = "last") -> InterventionFactory:
        """The factory itself (its positions were chosen by whoever built it)."""
        return self.fn


def as_method(lm, steer=None, generate_positions: str = "last") -> PreparedMethod:
    """A plain model (`steer` None), a fitted steer (`veracity.steer.Steer`) or a bare phase -> context-manager
    factory as a method without prompt or trainer: the questions are posed in the protocol's own prompt."""
    from ..steer.intervention import Intervention
    if steer is not None and not hasattr(steer, "factory"):
        steer = Hooks(steer)
    family = None if steer is None else "iti" if isinstance(steer, Intervention) else getattr(steer, "method", "hooks")
    return PreparedMethod(MethodSpec("protocol" + (f"+{family}" if family else ""), prompt=None, steer=family), lm,
                          steer, generate_positions=generate_positions)


def _judge_scores(judge: Judge, questions, answers) -> np.ndarray:
    s = judge.score(list(questions), list(answers))
    s = s[0] if isinstance(s, tuple) else s
    return np.asarray(s, dtype=np.float64).reshape(-1)


def _captured_answers(pm: PreparedMethod, sel: Sequence, plan: FoldPlan, factory, max_new_tokens: int, stop):
    """Greedy answers (cut at the next "Q:") and their `CapturedAnswer`s, hidden states read by hooks on the
    generation's own forwards under the method's prompt and hooks (`capture.generation`), at the layers the
    plan's detector reads."""
    from ..capture.generation import generate_with_capture
    from ..evaluate.generation import cut_answer

    enc = generation_prompts(pm, [it.question for it in sel], style=plan.gen_style, instruction=plan.instruction)
    caps = generate_with_capture(pm.lm, enc, item_ids=[str(it.index) for it in sel], max_new_tokens=max_new_tokens,
                                 stop=stop, batch_size=plan.batch_size, intervention=factory,
                                 layers=plan.detector.layers)
    return [cut_answer(c.text) for c in caps], caps


def _detector_verdicts(detector: Detector, sel: Sequence, caps: Sequence) -> tuple[dict, dict]:
    """The fold's figures (the mean belief that the answers are correct, the share flagged wrong at the
    detector's threshold) and the verdict on every answer, by question index (`FoldEvaluation.verdicts`)."""
    import torch

    scores, probs, flags = detector.verdicts(torch.stack([c.features for c in caps]) if caps else [])
    verdicts = {it.index: {"detector_answer": c.answer, "detector_score": float(s), "detector_belief": float(p),
                           "detector_flagged": bool(f)} for it, c, s, p, f in zip(sel, caps, scores, probs, flags)}
    if not len(scores):
        return {}, verdicts
    return {"detector_belief": float(np.mean(probs)), "detector_flagged": float(np.mean(flags))}, verdicts


def evaluate(pm: PreparedMethod, items: Sequence, plan: FoldPlan, *,
             judges: tuple[Judge | None, Judge | None] = (None, None), texts: Sequence[str] | None = None,
             reference=None, lm_result: LMMetrics | None = None, lm_cache: dict | None = None, fold: int = 0,
             log: Callable[[str], None] | None = None) -> FoldEvaluation:
    """Evaluate the method `pm` on `items` (one fold's held-out questions, in the order given).

    MC (or the binary task) is scored under the method's model and hooks, posed in its prompt or, without
    one, the protocol's (`methods.scoring`); the binary task always uses its own prompts. CE/KL run on
    `texts` (default `plan.n_docs` documents of `plan.lm_source`) against `reference` (the original model of
    a trained method; default the same model without the hooks); `lm_result` reuses CE/KL computed elsewhere,
    `lm_cache` keeps an unchanged model's across calls. Judging generates greedy answers; `judges` = (truth,
    info), either may be None. Side effects pose their questions in the method's prompt (the baseline prompt
    for a method without one) and reuse the fold's answers. `plan.detector` scores the greedy answers from
    their generation's hidden states (module doc)."""
    from ..steer.intervention import Intervention
    say = log or (lambda m: None)
    sel = list(items)
    recs = {it.index: QuestionRecord(it.index, fold, it.question, it.category) for it in sel}
    fm = FoldMetrics(fold, len(sel))
    ev = FoldEvaluation(FoldResult(fm, [recs[it.index] for it in sel]))
    bs = plan.batch_size
    mc_batch = bs if plan.mc_batch_size is None else plan.mc_batch_size
    factory = pm.factory()
    # ITI's per-question MC start (every other phase is the same); nothing to shift without a steer (alpha 0's
    # plain model, the baseline a validation compares against)
    if plan.mc_shift_from != "answer-start" and pm.intervention is not None:
        if not isinstance(pm.intervention, Intervention):
            raise ValueError("mc_shift_from='legacy' is ITI's MC shift; it needs an ITI intervention")
        factory = pm.intervention.factory(pm.lm, pm.generate_positions, plan.mc_shift_from)
    t0 = time.time()
    if "mc" in plan.measures and plan.protocol != "binary":
        say(f"fold {fold}: MC ({plan.protocol}) on {len(sel)} questions")
        ev.mc, ev.prompt_tokens = score_mc_prompted(
            pm, sel, plan.protocol, mc_batch, instruction=plan.instruction, factory=factory,
            progress=lambda i, n: say(f"fold {fold}: MC {i}/{n}") if i % 100 == 0 else None)
        for r in ev.mc:
            recs[r.index].mc1, recs[r.index].mc2 = r.mc1, r.mc2
            ev.result.mc_scores.append({"index": r.index, "protocol": r.protocol, "choices": r.choices,
                                        "scores": r.scores, "mc1_choice_ids": r.mc1_choice_ids,
                                        "mc1_labels": r.mc1_labels, "mc2_choice_ids": r.mc2_choice_ids,
                                        "mc2_labels": r.mc2_labels})
        if ev.mc:
            fm.mc1, fm.mc2 = float(np.mean([r.mc1 for r in ev.mc])), float(np.mean([r.mc2 for r in ev.mc]))
    as_mc = "mc" in plan.measures and plan.protocol == "binary"
    if as_mc or plan.binary:
        say(f"fold {fold}: binary task on {len(sel)} questions")
        bin_ = score_binary(pm.lm, sel, instruction=plan.instruction if as_mc else "default", batch_size=mc_batch,
                            intervention=factory,
                            progress=lambda i, n: say(f"fold {fold}: binary {i}/{n}") if i % 100 == 0 else None)
        for r in bin_.results if as_mc else ():  # the MC measure's records; beside MC only the fold's rates
            recs[r.index].binary = {**(recs[r.index].binary or {}), r.variant: r.correct}
            ev.result.mc_scores.append({"index": r.index, "protocol": "binary", "variant": r.variant,
                                        "score_right": r.score_right, "score_wrong": r.score_wrong})
        fm.binary = {v: d["accuracy"] for v, d in bin_.variants.items()}
    ev.infer_s = time.time() - t0
    want_ce, want_kl = "ce" in plan.measures, "kl" in plan.measures
    changes_model = pm.trained or pm.intervention is not None
    if lm_result is None and lm_cache is not None and not changes_model:
        lm_result = lm_cache.get("original")
    if lm_result is None and (want_ce or want_kl):
        say(f"fold {fold}: CE/KL on {plan.n_docs} documents x {plan.max_tokens} tokens")
        lm_result = compute_lm_metrics(pm.lm.model, pm.lm.tokenizer, texts=texts, source=plan.lm_source,
                                       n_docs=plan.n_docs, max_tokens=plan.max_tokens, data_dir=plan.data_dir,
                                       reference=reference, intervention=factory, ce=want_ce, kl=want_kl)
        if lm_cache is not None and not changes_model:
            lm_cache["original"] = lm_result
    ev.result.lm = lm_result
    if lm_result is not None:
        fm.ce_loss = lm_result.ce_loss if want_ce else None
        fm.kl = lm_result.kl if want_kl else None
    answers, caps = None, None
    if "judge" in plan.measures:
        say(f"fold {fold}: generating {len(sel)} answers" + (" (captured for the detector)" if plan.detector else ""))
        t1 = time.time()
        every = 4 * (bs if isinstance(bs, int) else 16)
        if plan.detector is not None:  # the same greedy answers, read by the detector as they are generated
            from ..evaluate.generation import answer_ended

            answers, caps = _captured_answers(pm, sel, plan, factory, plan.max_new_tokens, answer_ended)
        else:
            answers = generate_prompted(pm, [it.question for it in sel], plan.max_new_tokens, bs,
                                        style=plan.gen_style, instruction=plan.instruction, factory=factory,
                                        progress=lambda i, n: say(f"fold {fold}: generated {i}/{n}")
                                        if i == n or i % every == 0 else None)
        ev.infer_s += time.time() - t1
        for it, a in zip(sel, answers):
            recs[it.index].answer = a
        fm.health = generation_health(list(answers))
        for k in HEALTH_KEYS:
            setattr(fm, k, fm.health[k])
        say(f"fold {fold}: judging {len(answers)} answers")
        qs = [it.question for it in sel]
        for judge, attr in ((judges[0], "true"), (judges[1], "info")):
            if judge is None:
                continue
            for it, p in zip(sel, _judge_scores(judge, qs, answers)):
                setattr(recs[it.index], attr + "_score", float(p))
                setattr(recs[it.index], attr, bool(p >= THRESHOLD))
        fm.true = mean_present([float(r.true) for r in recs.values() if r.true is not None])
        fm.info = mean_present([float(r.info) for r in recs.values() if r.info is not None])
        both = [float(r.true and r.info) for r in recs.values() if r.true is not None and r.info is not None]
        fm.true_info_per_answer = mean_present(both)
    if plan.detector is not None:
        if caps is None:  # no judge: short answers for the detector alone (it reads their first line)
            from ..data.qa import first_line_done

            say(f"fold {fold}: generating {len(sel)} short answers for the detector")
            t1 = time.time()
            _, caps = _captured_answers(pm, sel, plan, factory, plan.detector_tokens, first_line_done)
            ev.infer_s += time.time() - t1
        ev.detector, ev.verdicts = _detector_verdicts(plan.detector, sel, caps)
    if plan.side_effects:
        from dataclasses import replace

        from .side_effects import side_effect_metrics

        say(f"fold {fold}: side effects ({', '.join(plan.side_effects)})")
        own = pm.spec.prompt is None
        spm = replace(pm, spec=replace(pm.spec, prompt="baseline")) if own else pm
        t1 = time.time()
        ev.side_effects, ev.side_costs = side_effect_metrics(
            spm, sel, plan.side_effects, plan.side_effect_n, plan.seed, bs, plan.max_new_tokens, plan.data_dir,
            answers=answers or None, mc=ev.mc if not own and plan.protocol == "truthfulqa" and ev.mc else None)
        ev.side_effects_s = time.time() - t1
    return ev


def _mc_batch(batch_size):
    """The MC batch of `veracity eval` and ITI's evaluation: at least 8 continuations per forward."""
    return max(8, batch_size) if isinstance(batch_size, int) else batch_size


def evaluate_fold(lm, items, indices: Sequence[int] | None = None, *, fold: int = 0, protocol: str = "truthfulqa",
                  metrics: Sequence[str] = MEASURES, truth_judge: Judge | None = None, info_judge: Judge | None = None,
                  intervention: InterventionFactory | None = None, reference=None,
                  lm_result: LMMetrics | None = None, lm_texts: Sequence[str] | None = None,
                  lm_source: str = "boolq", n_docs: int = 100, max_tokens: int = 128, data_dir=None,
                  instruction: str = "default", gen_style: str = "original", max_new_tokens: int = 50,
                  batch_size: int | str = 16, log: Callable[[str], None] | None = None) -> FoldResult:
    """`evaluate` as `veracity eval` runs it: `lm` (with the phase factory `intervention`, if any) in the
    protocol's own prompt on the questions `indices` (CSV row indices into `items`; default all)."""
    bad = set(metrics) - set(MEASURES)
    if bad:
        raise ValueError(f"unknown metrics {sorted(bad)}; choose from {', '.join(MEASURES)}")
    by_index = {it.index: it for it in items}
    indices = sorted(by_index) if indices is None else list(indices)
    plan = FoldPlan(protocol, tuple(metrics), instruction=instruction, gen_style=gen_style,
                    max_new_tokens=max_new_tokens, batch_size=batch_size, mc_batch_size=_mc_batch(batch_size),
                    lm_source=lm_source, n_docs=n_docs,
                    max_tokens=max_tokens, data_dir=None if data_dir is None else str(data_dir))
    return evaluate(as_method(lm, intervention), [by_index[i] for i in indices], plan,
                    judges=(truth_judge, info_judge), texts=lm_texts, reference=reference, lm_result=lm_result,
                    fold=fold, log=log).result


def summary_keys() -> list[str]:
    """The keys a fold summary keeps, in order: every registered metric (targets, CE/KL, the answers' health,
    the binary task, side effects; `veracity.metrics`), so a metric registered later is kept too."""
    return list(METRICS)


@dataclass
class FoldEvalConfig(Checked):
    """What `evaluate_intervention` measures on each held-out fold (a subset of the evaluation driver's
    options; `experiments.truthfulqa.EvalConfig` configures a whole plain-model evaluation)."""

    _constraints = {"protocol": o.PROTOCOL, "judge": o.JUDGE, "ce_texts": o.COUNT0,
                    "ce_tokens": o.COUNT, "generate_positions": o.GEN_POSITIONS,
                    "mc_shift_from": o.MC_SHIFT_FROM, "batch_size": o.BATCH,
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
                          fold: int = 0, kl: bool = True, detector: Detector | None = None) -> dict:
    """`evaluate` as ITI validation and the ITI sweep run it: `lm` with `intervention` (None: the plain model)
    in the protocol's own prompt; MC on every answer token, CE/KL(original || intervened) on `ce_texts`,
    generation (last position of every forward call by default) and the judges unless judge == "none";
    `detector` (loaded once by the study) scores the answers (`FoldPlan.detector`).
    Returns {"metrics": {...summary keys...}, "per_question": [...], "answers": [...]}."""
    from ..evaluate.judges import get_judge

    measures = (("mc",) + ((("ce", "kl") if kl else ("ce",)) if ce_texts else ()) +
                (() if cfg.judge == "none" else ("judge",)))
    plan = FoldPlan(cfg.protocol, measures, cfg.binary, batch_size=cfg.batch_size,
                    mc_batch_size=_mc_batch(cfg.batch_size),
                    n_docs=len(ce_texts) if ce_texts else 0, max_tokens=cfg.ce_tokens, data_dir=cfg.data_dir,
                    mc_shift_from=cfg.mc_shift_from, side_effects=tuple(cfg.side_effects),
                    side_effect_n=dict(cfg.side_effect_n), seed=cfg.seed, detector=detector)
    ev = evaluate(as_method(lm, intervention, cfg.generate_positions), list(items), plan,
                  judges=(get_judge(cfg.judge, "truth"), get_judge(cfg.judge, "info")),
                  texts=list(ce_texts) if ce_texts else None, fold=fold, log=log)
    qs = ev.result.questions
    answers = [{"index": q.index, "question": q.question, "answer": q.answer, "true": q.true, "info": q.info,
                "true_score": q.true_score, "info_score": q.info_score} for q in qs if q.answer is not None]
    return {"metrics": ev.metrics(), "per_question": [asdict(q) | ev.verdicts.get(q.index, {}) for q in qs],
            "answers": answers}


def summarise(fold_metrics: list[dict], weights: Sequence[int] | None = None) -> dict:
    """Mean over folds of every summary key present in all folds (ITI reports the fold mean); True*Info
    as the product of the fold means (the ITI convention; `veracity.metrics`)."""
    return aggregate_folds(fold_metrics, summary_keys())
