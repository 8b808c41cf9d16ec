"""The metrics registry: every TruthfulQA / steering metric's name, label, unit, direction, chance level and
how folds combine, declared once. Studies aggregate through `aggregate_folds`; reports and sweeps read labels
and directions from here. True*Info is defined here only (`with_true_info`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class Metric:
    name: str
    label: str  # the column name (the ITI paper's, where it has one)
    unit: str  # "fraction" (0-1), "nats/token", "words", ...
    higher_is_better: bool | None  # None: neither (a descriptive figure)
    chance: float | None = None  # chance level, where one exists
    folds: str = "mean"  # how fold values combine: "mean", or "product-of-means" (True*Info)


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, replace: bool = False) -> Metric:
    if metric.name in METRICS and not replace:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


for _m in (
    Metric("true_info", "True*Info", "fraction", True, folds="product-of-means"),
    Metric("true_info_per_answer", "True*Info (per answer)", "fraction", True),
    Metric("true", "True acc", "fraction", True),
    Metric("info", "Info acc", "fraction", True),
    Metric("mc1", "MC1", "fraction", True),
    Metric("mc2", "MC2", "fraction", True),
    Metric("ce_loss", "CE Loss", "nats/token", False),
    Metric("kl", "KL wrt Orig", "nats/token", False),
    Metric("refusal_rate", "Refusals", "fraction", None),
    Metric("distinct_2", "Distinct-2", "fraction", True),
    Metric("mean_longest_repeat", "Longest repeat", "words", False),
    Metric("mean_words", "Mean words", "words", None),
    Metric("degenerate_rate", "Degenerate", "fraction", False),
    Metric("binary_loglik_lm_eval", "Binary (loglik, lm-eval)", "fraction", True, chance=0.5),
    Metric("binary_loglik_truthfulqa", "Binary (loglik, truthfulqa)", "fraction", True, chance=0.5),
    Metric("binary_ab_best_first", "Binary A/B (best first)", "fraction", True, chance=0.5),
    Metric("binary_ab_best_second", "Binary A/B (best second)", "fraction", True, chance=0.5),
    Metric("binary_ab_average", "Binary A/B (average)", "fraction", True, chance=0.5),
    # side effects (veracity.methods.side_effects)
    Metric("sycophancy_flip_rate", "Sycophancy: flips", "fraction", False),
    Metric("sycophancy_to_opinion", "Sycophancy: agrees with wrong opinion", "fraction", False),
    Metric("boolq_accuracy", "BoolQ (zero-shot)", "fraction", True),
    Metric("honest_score", "HONEST (hurtful completions)", "fraction", False),
    Metric("honest_female", "HONEST female", "fraction", False),
    Metric("honest_male", "HONEST male", "fraction", False),
):
    register_metric(_m)


def label(name: str) -> str:
    return METRICS[name].label if name in METRICS else name


def lower_is_better(name: str) -> bool:
    m = METRICS.get(name)
    return bool(m is not None and m.higher_is_better is False)


def better_sign(name: str, option: str = "--metric") -> int:
    """+1 where a higher value of metric `name` is better, -1 where a lower one is: the one direction every
    ranking (sweeps' best cell, comparisons) uses. An unknown metric, or a descriptive one with no direction
    (refusal rate, mean words), cannot rank anything: `BadInput` naming the option."""
    from .validation import BadInput

    m = METRICS.get(name)
    if m is None:
        raise BadInput(f"{option} {name!r} is not a metric; rankable: {', '.join(rankable_metrics())}")
    if m.higher_is_better is None:
        raise BadInput(f"{option} {name!r} ({m.label}) has no better direction; rankable: {', '.join(rankable_metrics())}")
    return 1 if m.higher_is_better else -1


def rankable_metrics() -> list[str]:
    """The registered metrics with a direction, in registration order."""
    return [n for n, m in METRICS.items() if m.higher_is_better is not None]


def true_info(true: float | None, info: float | None) -> float | None:
    """True*Info as the ITI tables report it: the product of the (fold-mean) truth and informativeness
    rates, not the rate of answers that are both (that is `true_info_per_answer`)."""
    if true is None or info is None:
        return None
    return float(true) * float(info)


def with_true_info(d: dict) -> dict:
    """Set d["true_info"] from d["true"] and d["info"] when both are there (in place; returns d)."""
    v = true_info(d.get("true"), d.get("info"))
    if v is not None:
        d["true_info"] = v
    return d


def _ok(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def aggregate_folds(fold_metrics: Iterable[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict:
    """Combine per-fold metric dicts by each metric's rule: the mean over folds of every key present (and a
    number) in all folds; "product-of-means" metrics (True*Info) from the means of their parts."""
    folds = list(fold_metrics)
    names = list(keys) if keys is not None else list(dict.fromkeys(k for f in folds for k in f))
    out: dict = {}
    for k in names:
        if METRICS.get(k) is not None and METRICS[k].folds == "product-of-means":
            out[k] = None  # keeps its place in the order; filled from its parts below
            continue
        vals = [f.get(k) for f in folds]
        if folds and all(_ok(v) for v in vals):
            out[k] = sum(float(v) for v in vals) / len(vals)
    with_true_info(out)
    return {k: v for k, v in out.items() if v is not None}


def format_value(v) -> str:
    """A table cell: 4 decimals below 10, 1 above, "-" for a missing or NaN value, other values as str."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))
