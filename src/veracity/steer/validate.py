"""k-fold validation of ITI: for each fold, fit on the other folds and evaluate the held-out questions.

Evaluation goes through one function, `evaluate_fold`, so validate and sweep share it. It uses the
TruthfulQA evaluation driver (`veracity.evaluate`) when that exposes `evaluate_subset`; until then it
computes MC1/MC2 with `veracity.evaluate.truthfulqa.score_mc` (the driver's scorer, with the
intervention entered around the answer tokens) and CE / KL(original || intervened) on held-out text
here. Generation + judges need the driver; with `judge="none"` they are skipped, as in the driver.
Summary keys are the driver's: mc1, mc2, ce_loss, kl, true, info, true_info.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .apply import intervention_factory
from .intervention import Intervention
from .iti import ITIConfig, ITIData, fit_folds

SUMMARY_KEYS = ("true_info", "true", "info", "mc1", "mc2", "ce_loss", "kl")


@dataclass
class EvalConfig:
    """What to measure on each fold (the evaluation driver's options)."""

    protocol: str = "truthfulqa"
    judge: str = "none"  # none | local | hf:<id> | openai:<model>
    ce_texts: int = 100  # held-out documents for CE / KL
    ce_tokens: int = 128  # first tokens of each
    generate_positions: str = "last"
    batch_size: int = 16
    data_dir: str | None = None


def held_out_texts(data_dir, n: int) -> list[str]:
    """CE/KL text: BoolQ passages (Wikipedia), the evaluation driver's default."""
    from ..data import get_dataset

    return get_dataset("boolq-passages", data_dir=data_dir, limit=n).texts


@torch.no_grad()
def ce_and_kl(lm, texts: Sequence[str], factory: Callable | None, max_tokens: int = 128,
              batch_size: int = 8) -> tuple[float, float]:
    """(mean next-token CE of the intervened model, mean per-token KL(original || intervened)), nats, fp32.
    Right padding; only real next-token positions count. The intervention shifts every text token."""
    import contextlib

    from ..capture import pad_batch

    tok, model = lm.tokenizer, lm.model
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = [tok(t)["input_ids"][:max_tokens] for t in texts]
    ids = [s for s in ids if len(s) >= 2]
    ce_sum, kl_sum, n_tok = 0.0, 0.0, 0
    for i in range(0, len(ids), batch_size):
        x, m, p = pad_batch(ids[i:i + batch_size], pad, "right", lm.device)
        base = model(input_ids=x, attention_mask=m, position_ids=p).logits.float()
        with (factory("lm") if factory else contextlib.nullcontext()):
            new = model(input_ids=x, attention_mask=m, position_ids=p).logits.float()
        valid = (m[:, 1:] * m[:, :-1]).bool()
        lp_new = torch.log_softmax(new[:, :-1], -1)
        lp_base = torch.log_softmax(base[:, :-1], -1)
        tgt = x[:, 1:]
        ce = -lp_new.gather(-1, tgt[..., None]).squeeze(-1)
        kl = (lp_base.exp() * (lp_base - lp_new)).sum(-1)
        ce_sum += float(ce[valid].double().sum())
        kl_sum += float(kl[valid].double().sum())
        n_tok += int(valid.sum())
    return ce_sum / max(1, n_tok), kl_sum / max(1, n_tok)


def _driver():
    """The evaluation driver's subset function, when the evaluate package provides it."""
    import inspect

    try:
        from .. import evaluate as ev
    except ImportError:
        return None
    fn = getattr(ev, "evaluate_subset", None)
    if fn is None:
        return None
    params = inspect.signature(fn).parameters
    need = ("intervention", "protocol", "judge", "ce_texts", "batch_size")
    return fn if all(p in params for p in need) else None


def evaluate_fold(lm, items: Sequence, intervention: Intervention | None, cfg: EvalConfig,
                  ce_texts: Sequence[str] | None = None) -> dict:
    """Metrics of `lm` with `intervention` (None or alpha=0: the plain model) on these TruthfulQA items.
    Returns {"metrics": {...summary keys...}, "per_question": [...], "answers": [...]}."""
    factory = intervention_factory(lm, intervention, cfg.generate_positions) if intervention is not None else None
    drive = _driver()
    if drive is not None:
        return drive(lm, items, intervention=factory, protocol=cfg.protocol, judge=cfg.judge,
                     ce_texts=ce_texts, batch_size=cfg.batch_size)
    if cfg.judge != "none":
        raise RuntimeError("generation + judges need the evaluation driver (veracity.evaluate.evaluate_subset), "
                           "which this install lacks; use --judge none")
    from ..evaluate.truthfulqa import score_mc

    mc = score_mc(lm, list(items), cfg.protocol, batch_size=cfg.batch_size, intervention=factory)
    metrics = {"mc1": mc.mc1, "mc2": mc.mc2}
    if ce_texts:
        metrics["ce_loss"], metrics["kl"] = ce_and_kl(lm, ce_texts, factory, cfg.ce_tokens)
    per_q = [{"index": r.index, "mc1": r.mc1, "mc2": r.mc2} for r in mc.results]
    return {"metrics": metrics, "per_question": per_q, "answers": []}


@dataclass
class ValidateResult:
    folds: list[dict]
    summary: dict
    config: dict = field(default_factory=dict)


def summarise(fold_metrics: list[dict], weights: Sequence[int] | None = None) -> dict:
    """Mean over folds of every summary key present in all folds (ITI reports the fold mean); True*Info
    as the product of the fold means (the ITI convention) when true and info exist."""
    out = {}
    for k in SUMMARY_KEYS:
        vals = [m[k] for m in fold_metrics if m.get(k) is not None and not
                (isinstance(m[k], float) and math.isnan(m[k]))]
        if vals and len(vals) == len(fold_metrics):
            out[k] = float(np.mean(vals))
    if "true" in out and "info" in out:
        out["true_info"] = out["true"] * out["info"]
    return out


def restrict(data: ITIData, limit: int | None) -> ITIData:
    """The first `limit` questions (CSV order), as `--limit` does in the evaluation driver."""
    if limit is None:
        return data
    keep = np.flatnonzero(data.question < limit)
    return ITIData(data.X[keep], data.labels[keep], data.question[keep], dict(data.source, question_limit=limit))


def validate(lm, data: ITIData, items: Sequence, iti: ITIConfig, k: int, alpha: float, n_folds: int = 2,
             contiguous: bool = False, ecfg: EvalConfig | None = None, out: Path | None = None,
             log: Callable[[str], None] = print) -> ValidateResult:
    """Fit per fold on the other folds, evaluate on the held-out ones. `items`: TruthfulQA items indexed
    by CSV row (`load_truthfulqa`). Saves each fold's intervention under `out` when given."""
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
        res = evaluate_fold(lm, test_items, iv, ecfg, texts)
        log(f"fold {ff.fold}: {len(test_items)} questions, " +
            ", ".join(f"{key}={v:.4f}" for key, v in res["metrics"].items()))
        folds.append({"fold": ff.fold, "n_questions": len(test_items), "metrics": res["metrics"],
                      "heads": iv.heads, "per_question": res["per_question"], "answers": res.get("answers", [])})
    summary = summarise([f["metrics"] for f in folds])
    return ValidateResult(folds=folds, summary=summary,
                          config={"iti": asdict(iti), "k": k, "alpha": alpha, "folds": n_folds,
                                  "contiguous": contiguous, "eval": asdict(ecfg)})
