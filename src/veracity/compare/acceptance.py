"""Acceptance by group under speculative decoding: per prompt, batched speculative decoding
(`speculative.generate`), the two models' distances at the last prompt position and along the generated tokens
(`distances.prompt_distances`), and toxicity of the very same completions. Groups are compared on per-prompt
means (the prompt is the unit: a prompt with many steps does not weigh more), with a bootstrap 95% CI
(resampling prompts within each group) and a two-sided permutation p-value (shuffling group labels), both seeded.
The measurement the spec study and the fine-tuning milestones share (`veracity.experiments.spec`,
`veracity.experiments.finetune_milestones`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..data.prompts import GroupedPrompt
if TYPE_CHECKING:
    from .speculative import SpecRecord

#: the per-prompt acceptance statistics of speculative decoding (SpecRecord fields), averaged per group; not
#: TruthfulQA metrics (those are `veracity.metrics`)
ACCEPTANCE_STATS = ("mean_accepted", "acceptance_rate", "tokens_per_call")


@dataclass
class PromptResult:
    """One prompt's row of the acceptance study: its group, completion, speculative acceptance figures and
    main/assistant distances."""
    index: int
    group: str
    prompt: str
    completion: str
    n_tokens: int
    main_calls: int
    mean_accepted: float
    acceptance_rate: float
    tokens_per_call: float
    kl_last: float
    kl_reverse_last: float
    js_last: float
    one_minus_tv_last: float
    kl_gen: float
    one_minus_tv_gen: float
    n_rejected: int
    rejected_p_minus_q: float  # mean over rejected draft tokens of p_main - q_assistant
    rejected_log_ratio: float  # mean of ln(q_assistant / p_main): how much likelier under the assistant


@dataclass
class Comparison:
    """One metric compared between two groups: both means, their difference (a - b) with its 95% interval, and a
    p-value."""
    metric: str
    group_a: str
    group_b: str
    mean_a: float
    mean_b: float
    difference: float  # a - b
    ci95: tuple[float, float]
    p_value: float


def bootstrap_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% CI of mean(a) - mean(b), resampling each group with replacement."""
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
    db = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return float(lo), float(hi)


def permutation_p(a: np.ndarray, b: np.ndarray, n_perm: int = 2000, seed: int = 0) -> float:
    """Two-sided permutation p-value of |mean(a) - mean(b)| (with the +1 correction)."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([a, b])
    obs = abs(a.mean() - b.mean())
    hits = 0
    for _ in range(n_perm):
        perm = rng.permutation(pooled)
        hits += abs(perm[:len(a)].mean() - perm[len(a):].mean()) >= obs - 1e-12
    return (hits + 1) / (n_perm + 1)


def _corr(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": int(ok.sum())}
    return {"pearson": float(pearsonr(x[ok], y[ok])[0]), "spearman": float(spearmanr(x[ok], y[ok])[0]),
            "n": int(ok.sum())}


def _mean(v: Sequence[float]) -> float:
    return float(np.mean(v)) if len(v) else float("nan")


def prompt_results(prompts: Sequence[GroupedPrompt], records: Sequence[SpecRecord], dist_last, dist_gen) -> list[PromptResult]:
    """Join each prompt with its speculative record and distances into one `PromptResult` row (rejected-token
    statistics included)."""
    out = []
    for i, (p, r) in enumerate(zip(prompts, records)):
        rej = [(pm, q) for pm, q, a in zip(r.p_main, r.q_assistant, r.accepted) if not a]
        out.append(PromptResult(
            index=i, group=p.group, prompt=p.text, completion=r.text, n_tokens=len(r.tokens),
            main_calls=r.main_calls, mean_accepted=r.mean_accepted, acceptance_rate=r.acceptance_rate,
            tokens_per_call=r.tokens_per_call,
            kl_last=float(dist_last.kl_main_assistant[i]), kl_reverse_last=float(dist_last.kl_assistant_main[i]),
            js_last=float(dist_last.js[i]), one_minus_tv_last=float(dist_last.one_minus_tv[i]),
            kl_gen=float(dist_gen.kl_main_assistant[i]) if dist_gen is not None else float("nan"),
            one_minus_tv_gen=float(dist_gen.one_minus_tv[i]) if dist_gen is not None else float("nan"),
            n_rejected=len(rej), rejected_p_minus_q=_mean([pm - q for pm, q in rej]),
            rejected_log_ratio=_mean([math.log(max(q, 1e-30) / max(pm, 1e-30)) for pm, q in rej])))
    return out


def summarize(rows: Sequence[PromptResult], records: Sequence[SpecRecord], n_boot: int = 2000, n_perm: int = 2000,
              seed: int = 0) -> dict:
    """Per-group statistics, the group comparison (first two groups in sorted order), correlations."""
    groups = sorted({r.group for r in rows})
    per_group = {}
    for g in groups:
        rs = [r for r in rows if r.group == g]
        recs = [records[r.index] for r in rs]
        rej = [(pm, q) for rec in recs for pm, q, a in zip(rec.p_main, rec.q_assistant, rec.accepted) if not a]
        steps = [m for rec in recs for m in rec.n_matches]
        per_group[g] = {
            "n_prompts": len(rs),
            **{m: _mean([getattr(r, m) for r in rs]) for m in ACCEPTANCE_STATS},
            "pooled_mean_accepted_per_step": _mean(steps),
            "pooled_acceptance_rate": sum(steps) / max(1, sum(p for rec in recs for p in rec.proposals)),
            "pooled_tokens_per_call": sum(len(rec.tokens) for rec in recs) / max(1, sum(rec.main_calls for rec in recs)),
            "kl_last": _mean([r.kl_last for r in rs]), "one_minus_tv_last": _mean([r.one_minus_tv_last for r in rs]),
            "kl_gen": _mean([r.kl_gen for r in rs]), "one_minus_tv_gen": _mean([r.one_minus_tv_gen for r in rs]),
            "rejected_tokens": len(rej),
            "rejected_p_minus_q": _mean([pm - q for pm, q in rej]),
            "rejected_log_ratio_q_over_p": _mean([math.log(max(q, 1e-30) / max(pm, 1e-30)) for pm, q in rej]),
        }
    comparisons: list[Comparison] = []
    if len(groups) >= 2:
        ga, gb = groups[0], groups[1]
        for m in ACCEPTANCE_STATS + ("kl_last", "one_minus_tv_last", "rejected_log_ratio"):
            a = np.array([getattr(r, m) for r in rows if r.group == ga], dtype=float)
            b = np.array([getattr(r, m) for r in rows if r.group == gb], dtype=float)
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            if len(a) < 2 or len(b) < 2:
                continue
            comparisons.append(Comparison(m, ga, gb, float(a.mean()), float(b.mean()), float(a.mean() - b.mean()),
                                          bootstrap_ci(a, b, n_boot, seed), permutation_p(a, b, n_perm, seed)))
    acc = np.array([r.mean_accepted for r in rows])
    correlations = {f"{d}_vs_mean_accepted": _corr(np.array([getattr(r, d) for r in rows]), acc)
                    for d in ("kl_last", "one_minus_tv_last", "kl_gen", "one_minus_tv_gen")}
    return {"groups": groups, "per_group": per_group, "comparisons": [asdict(c) for c in comparisons],
            "correlations": correlations}


@dataclass
class StudyResult:
    """Everything a study run produces: the per-prompt rows, the raw speculative records, the group summary and
    toxicity."""
    rows: list[PromptResult]
    records: list[SpecRecord]
    summary: dict
    toxicity: dict


def run_study(main, assistant, prompts: Sequence[GroupedPrompt], gamma: int = 5, batch_size: int = 16,
              max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0,
              schedule: str = "constant", seed: int = 0, n_boot: int = 2000, n_perm: int = 2000,
              data_dir: str | Path | None = None, toxicity_classifier=None) -> StudyResult:
    """Generate speculatively for every prompt, then compute distances, group statistics and toxicity."""
    from .distances import prompt_distances
    from .speculative import generate
    from ..compare.toxicity import honest_score

    texts = [p.text for p in prompts]
    records = generate(main, assistant, texts, gamma=gamma, batch_size=batch_size, do_sample=do_sample,
                       temperature=temperature, max_new_tokens=max_new_tokens, schedule=schedule, seed=seed)
    d_last = prompt_distances(main, assistant, texts, batch_size=batch_size).distances
    d_gen = None
    if all(len(r.tokens) for r in records):
        d_gen = prompt_distances(main, assistant, texts, [r.tokens for r in records], batch_size=batch_size).distances
    rows = prompt_results(prompts, records, d_last, d_gen)
    summary = summarize(rows, records, n_boot, n_perm, seed)
    try:
        tox = asdict(honest_score([r.text for r in records], [p.group for p in prompts],
                                  classifier=toxicity_classifier, data_dir=data_dir))
    except FileNotFoundError as e:
        tox = {"error": str(e)}
    return StudyResult(rows, list(records), summary, tox)
