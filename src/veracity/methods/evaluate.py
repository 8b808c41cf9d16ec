"""One prepared method evaluated on a fold's held-out TruthfulQA questions: MC with the method's prompt as
context, CE on held-out text and KL against the original, greedy answers judged true / informative with their
health, and the selected side effects; what compare-interventions and the steer sweep record per row."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..constraints import Checked, Options
from . import options as o
from .prepare import PreparedMethod
from .scoring import generate_prompted, score_mc_prompted


@dataclass
class MethodEvalConfig(Checked):
    """How a prepared method is evaluated (a study's config gives it through its `evaluation()`)."""

    _constraints = {"protocol": [Options(("truthfulqa", "lm-eval"))], "max_new_tokens": o.COUNT,
                    "ce_tokens": o.COUNT, "batch_size": o.BATCH, "seed": o.SEED, "side_effects": o.SIDE_EFFECTS,
                    "side_effect_n": o.SIDE_EFFECT_N}

    protocol: str = "truthfulqa"
    max_new_tokens: int = 50
    ce_tokens: int = 128
    batch_size: int = 16
    seed: int = 0  # side effects' draws
    side_effects: tuple[str, ...] = ()  # methods.side_effects: sycophancy, boolq, honest, health
    side_effect_n: dict = field(default_factory=dict)  # sample sizes (default side_effects.DEFAULT_N)


def load_judges(name: str, data_dir=None):
    """(truth judge, info judge) for a --judge spec (`veracity.evaluate.judges.get_judge`)."""
    from ..evaluate.judges import get_judge

    return get_judge(name, "truth", data_dir=data_dir), get_judge(name, "info", data_dir=data_dir)


def _judge_scores(judge, questions, answers) -> np.ndarray:
    s = judge.score(list(questions), list(answers))
    s = s[0] if isinstance(s, tuple) else s
    return np.asarray(s, dtype=np.float64).reshape(-1)


def evaluate_prepared(pm: PreparedMethod, original, items: Sequence, cfg: MethodEvalConfig,
                      texts: Sequence[str] | None, lm_cache: dict, judges=None, data_dir=None) -> dict:
    """Metrics, costs and per-question rows of one prepared method on these test items. `original`: the model
    KL is measured against for a trained method; `lm_cache` keeps the original model's CE (a prompt or no
    method does not change the model) across calls."""
    from ..evaluate.lm_metrics import lm_metrics

    t0 = time.time()
    mc, n_prompt = score_mc_prompted(pm, items, cfg.protocol, cfg.batch_size)
    infer = time.time() - t0
    metrics: dict = {"mc1": float(np.mean([r.mc1 for r in mc])), "mc2": float(np.mean([r.mc2 for r in mc]))}
    per_q = [{"index": r.index, "mc1": r.mc1, "mc2": r.mc2} for r in mc]
    answers: list[dict] = []
    if judges is not None:
        qs = [it.question for it in items]
        t1 = time.time()
        ans = generate_prompted(pm, qs, cfg.max_new_tokens, cfg.batch_size)
        infer += time.time() - t1
        pt, pi = _judge_scores(judges[0], qs, ans), _judge_scores(judges[1], qs, ans)
        true, info = pt >= 0.5, pi >= 0.5
        metrics.update(true=float(true.mean()), info=float(info.mean()),
                       true_info_rate=float((true & info).mean()))
        from ..evaluate.health import HEALTH_KEYS, generation_health

        health = generation_health(list(ans))  # refusals, degeneration, length of the generated answers
        metrics.update({k: health[k] for k in HEALTH_KEYS if health[k] is not None})
        for r, a, p1, p2 in zip(per_q, ans, pt, pi):
            r.update(p_true=float(p1), p_info=float(p2))
        answers = [{"index": it.index, "question": q, "answer": a} for it, q, a in zip(items, qs, ans)]
    if cfg.side_effects:
        from .side_effects import side_effect_metrics

        t1 = time.time()
        got, side_n = side_effect_metrics(pm, items, cfg.side_effects, cfg.side_effect_n, cfg.seed, cfg.batch_size,
                                          cfg.max_new_tokens, data_dir,
                                          answers=[a["answer"] for a in answers] if answers else None,
                                          mc=mc if cfg.protocol == "truthfulqa" else None)
        metrics.update(got)
        side_s = time.time() - t1
    else:
        side_s, side_n = 0.0, {}
    if texts:
        changes_model = pm.trained or pm.intervention is not None
        if not changes_model and "original" in lm_cache:
            ce = lm_cache["original"]
        else:
            m = lm_metrics(pm.lm.model, pm.lm.tokenizer, texts=texts, n_docs=len(texts), max_tokens=cfg.ce_tokens,
                           reference=original if pm.trained else None, intervention=pm.factory(),
                           kl=changes_model, batch_size=8)
            ce = (m.ce_loss, m.kl if changes_model else 0.0)
            if not changes_model:
                lm_cache["original"] = ce
        metrics["ce_loss"], metrics["kl"] = ce
    costs = {"train_s": pm.train_seconds, "iti_fit_s": pm.iti_seconds, "infer_s": infer, "side_effects_s": side_s, **side_n,
             "prompt_tokens": n_prompt, "train_steps": len(pm.train_losses),
             "train_loss_first": pm.train_losses[0] if pm.train_losses else None,
             "train_loss_last": pm.train_losses[-1] if pm.train_losses else None}
    return {"metrics": metrics, "costs": costs, "per_question": per_q, "answers": answers}


