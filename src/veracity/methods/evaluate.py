"""A prepared method's row on one fold, as compare-interventions and the steer sweep record it: the one fold
evaluator (`methods.fold.evaluate`) with the method's prompt, read back into the row's metrics, per-question
records, answers and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..constraints import Checked
from ..evaluate.binary import metric_name
from ..evaluate.health import HEALTH_KEYS
from . import options as o
from .fold import FoldPlan, evaluate
from .prepare import PreparedMethod


@dataclass
class MethodEvalConfig(Checked):
    """How a prepared method is evaluated (a study's config gives it through its `evaluation()`)."""

    _constraints = {"protocol": o.PROTOCOL, "max_new_tokens": o.COUNT,
                    "ce_tokens": o.COUNT, "batch_size": o.BATCH, "seed": o.SEED, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N, "binary": o.BOOL}

    protocol: str = "truthfulqa"
    max_new_tokens: int = 50
    ce_tokens: int = 128
    batch_size: int = 16
    seed: int = 0  # side effects' draws
    side_effects: tuple[str, ...] = ()  # methods.side_effects: sycophancy, boolq, honest, health
    side_effect_n: dict = field(default_factory=dict)  # sample sizes (default side_effects.DEFAULT_N)
    binary: bool = False  # also TruthfulQA's binary task (best vs best incorrect answer), every variant


def load_judges(name: str, data_dir=None):
    """(truth judge, info judge) for a --judge spec (`veracity.evaluate.judges.get_judge`)."""
    from ..evaluate.judges import get_judge

    return get_judge(name, "truth", data_dir=data_dir), get_judge(name, "info", data_dir=data_dir)


def evaluate_prepared(pm: PreparedMethod, original, items: Sequence, cfg: MethodEvalConfig,
                      texts: Sequence[str] | None, lm_cache: dict, judges=None, data_dir=None,
                      detector=None) -> dict:
    """`methods.fold.evaluate` as compare-interventions and the steer sweep record a row: MC under the method's
    prompt, CE on `texts` and KL against `original` (for a trained method; else the unsteered model), greedy
    answers judged by `judges` = (truth, info) with their health, the side effects, a conditional steer's fire
    rates, and the costs. `lm_cache` keeps the original model's CE across calls (a prompt or no method does not
    change the model). `detector` (a kept `veracity.evaluate.detector.Detector`, loaded once by the study) adds
    its belief in the answers."""
    plan = FoldPlan(cfg.protocol, ("mc",) + (("ce", "kl") if texts else ()) + (("judge",) if judges else ()),
                    max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                    n_docs=len(texts) if texts else 0, max_tokens=cfg.ce_tokens,
                    data_dir=None if data_dir is None else str(data_dir), side_effects=tuple(cfg.side_effects),
                    side_effect_n=dict(cfg.side_effect_n), seed=cfg.seed, detector=detector, binary=cfg.binary)
    ev = evaluate(pm, items, plan, judges=tuple(judges) if judges else (None, None), texts=texts,
                  reference=original if pm.trained else None, lm_cache=lm_cache)
    m, qs = ev.result.metrics, ev.result.questions
    metrics: dict = {"mc1": m.mc1, "mc2": m.mc2}
    metrics.update({metric_name(v): acc for v, acc in (m.binary or {}).items()})  # the binary task's variants
    per_q = [{"index": q.index, "mc1": q.mc1, "mc2": q.mc2} for q in qs]
    answers: list[dict] = []
    if judges:
        metrics.update(true=m.true, info=m.info, true_info_rate=m.true_info_per_answer)
        metrics.update({k: m.health[k] for k in HEALTH_KEYS if m.health[k] is not None})
        for r, q in zip(per_q, qs):
            r.update(p_true=q.true_score, p_info=q.info_score)
        answers = [{"index": q.index, "question": q.question, "answer": q.answer} for q in qs]
    metrics.update(ev.side_effects)
    metrics.update(ev.detector)
    from ..steer.conditional import held_out_fire_metrics

    metrics.update(held_out_fire_metrics(pm.intervention))  # a conditional steer's fire rates
    for r in per_q:
        r.update(ev.verdicts.get(r["index"], {}))
    if texts:
        metrics["ce_loss"], metrics["kl"] = m.ce_loss, m.kl
    costs = {"train_s": pm.train_seconds, "iti_fit_s": pm.iti_seconds, "infer_s": ev.infer_s,
             "side_effects_s": ev.side_effects_s, **ev.side_costs, "prompt_tokens": ev.prompt_tokens,
             "train_steps": len(pm.train_losses),
             "train_loss_first": pm.train_losses[0] if pm.train_losses else None,
             "train_loss_last": pm.train_losses[-1] if pm.train_losses else None}
    return {"metrics": metrics, "costs": costs, "per_question": per_q, "answers": answers}
