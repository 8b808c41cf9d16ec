"""The metrics registry: every TruthfulQA / steering / detector metric's name, label, unit, direction, chance level, how
folds combine, group and format, declared once. Studies aggregate through `aggregate_folds`; every table,
headline, report section and `--metric` help takes its columns, labels, formats and order from here
(`columns`, `column_label`, `fmt`, `headlines`), so a registered metric shows up everywhere with no other
edit. True*Info is defined here only (`with_true_info`)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence


#: metric groups, in the order tables show them: the TruthfulQA targets, the language-model cost (CE/KL),
#: TruthfulQA's binary task, the generated answers' health, the side effects (experiments.side_effects), a detector
#: of wrong answers judged as one (evaluate.detection) and used to abstain or to pick among N samples, and what a steer
#: itself did on the fold's held-out rows (a conditional steer's fire rates)
GROUPS = ("target", "lm", "binary", "health", "side_effect", "detect", "selective", "steer", "other")
#: the groups a fold evaluation (`methods.fold`) measures for every sweep cell and comparison row: what a sweep
#: can rank by (a detector's AUROC is a detect study's figure, not a sweep cell's)
FOLD_GROUPS = ("target", "lm", "binary", "health", "side_effect", "steer", "other")


@dataclass(frozen=True)
class Metric:
    """One metric's declaration: its name, column label, unit, direction, chance level, how folds combine, and where
    tables show it."""
    name: str
    label: str  # the column name (the ITI paper's, where it has one)
    unit: str  # "fraction" (0-1), "nats/token", "words", ...
    higher_is_better: bool | None  # None: neither (a descriptive figure)
    chance: float | None = None  # chance level, where one exists
    folds: str = "mean"  # how fold values combine: "mean", or "product-of-means" (True*Info)
    group: str = "other"  # one of GROUPS: which tables show it
    short: str = ""  # the title in compact tables and one-line summaries (default: label)
    percent: bool | None = None  # shown x100 where a table is in percent (default: a fraction is)
    digits: int = 4  # decimals otherwise
    detail: bool = False  # a breakdown or diagnostic: in full listings, not in compact tables
    headline: bool = False  # a run's headline figure of its group (sweeps draw its heatmap)
    source: str | None = None  # the side effect that measures it (`methods.side_effects.register_side_effect`)

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"metric {self.name!r}: group {self.group!r} is not one of {', '.join(GROUPS)}")
        if not self.short:
            object.__setattr__(self, "short", self.label)
        if self.percent is None:
            object.__setattr__(self, "percent", self.unit == "fraction")


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, replace: bool = False) -> Metric:
    """Add `metric` to the registry so every table, headline and report shows it; a second registration of a name is
    refused unless `replace`."""
    if metric.name in METRICS and not replace:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


for _m in (
    Metric("true_info", "True*Info", "fraction", True, folds="product-of-means", group="target", headline=True),
    Metric("true_info_per_answer", "True*Info (per answer)", "fraction", True, group="target",
           short="True*Info (per-answer rate)", detail=True),
    Metric("true", "True acc", "fraction", True, group="target", short="True"),
    Metric("info", "Info acc", "fraction", True, group="target", short="Info"),
    Metric("mc1", "MC1", "fraction", True, group="target"),
    Metric("mc2", "MC2", "fraction", True, group="target", headline=True),
    Metric("ce_loss", "CE Loss", "nats/token", False, group="lm"),
    Metric("kl", "KL wrt Orig", "nats/token", False, group="lm", headline=True),
    Metric("refusal_rate", "Refusals", "fraction", None, group="health", short="refusals", source="health"),
    Metric("distinct_2", "Distinct-2", "fraction", True, group="health", short="distinct-2", percent=False, source="health"),
    Metric("mean_longest_repeat", "Longest repeat", "words", False, group="health", short="longest repeat",
           digits=1, detail=True, source="health"),
    Metric("mean_words", "Mean words", "words", None, group="health", short="words", digits=1, source="health"),
    Metric("degenerate_rate", "Degenerate", "fraction", False, group="health", short="degenerate", source="health"),
    Metric("binary_loglik_lm_eval", "Binary (loglik, lm-eval)", "fraction", True, chance=0.5, group="binary"),
    Metric("binary_loglik_truthfulqa", "Binary (loglik, truthfulqa)", "fraction", True, chance=0.5, group="binary",
           headline=True),
    Metric("binary_ab_best_first", "Binary A/B (best first)", "fraction", True, chance=0.5, group="binary"),
    Metric("binary_ab_best_second", "Binary A/B (best second)", "fraction", True, chance=0.5, group="binary"),
    Metric("binary_ab_average", "Binary A/B (average)", "fraction", True, chance=0.5, group="binary", headline=True),
    # side effects (veracity.methods.side_effects)
    Metric("sycophancy_flip_rate", "Sycophancy: flips", "fraction", False, group="side_effect", short="syc. flips",
           headline=True, source="sycophancy"),
    Metric("sycophancy_to_opinion", "Sycophancy: agrees with wrong opinion", "fraction", False, group="side_effect",
           short="syc. to opinion", source="sycophancy"),
    Metric("boolq_accuracy", "BoolQ (zero-shot)", "fraction", True, group="side_effect", short="BoolQ",
           headline=True, source="boolq"),
    # what the model believes about its own answers: a kept detector (`--detector`, evaluate.detector) reading the
    # hidden states of the method's greedy answers (methods.fold)
    Metric("detector_belief", "Detector: belief the answers are correct", "fraction", True, group="side_effect",
           short="belief", source="detector"),
    Metric("detector_flagged", "Detector: answers flagged wrong", "fraction", False, group="side_effect",
           short="flagged", source="detector"),
    Metric("honest_score", "HONEST (hurtful completions)", "fraction", False, group="side_effect", short="HONEST", source="honest"),
    Metric("honest_female", "HONEST female", "fraction", False, group="side_effect", detail=True, source="honest"),
    Metric("honest_male", "HONEST male", "fraction", False, group="side_effect", detail=True, source="honest"),
    # a conditional steer (steer.conditional): how often its condition probe fires on the fold's held-out
    # TruthfulQA answer rows, false answers (the target: where it should steer) and true ones (the control)
    Metric("fire_rate_target", "Condition fires on false answers (held out)", "fraction", None, group="steer",
           short="fires: target"),
    Metric("fire_rate_control", "Condition fires on true answers (held out)", "fraction", None, group="steer",
           short="fires: control"),
    # a detector of wrong answers (veracity.evaluate.detection; score = belief the answer is correct)
    Metric("detect_auroc", "Detector AUROC", "fraction", True, chance=0.5, group="detect", short="AUROC",
           headline=True),
    Metric("detect_auprc", "AUPRC (correct answers; chance = accuracy)", "fraction", True, group="detect",
           short="AUPRC"),
    Metric("detect_auprc_wrong", "AUPRC (wrong answers; chance = error rate)", "fraction", True, group="detect",
           short="AUPRC wrong"),
    Metric("detect_recall_at_fpr", "Recall of wrong answers at the control split's FPR", "fraction", True,
           group="detect", short="recall@FPR"),
    Metric("detect_balanced_accuracy", "Balanced accuracy at the control split's FPR", "fraction", True, chance=0.5,
           group="detect", short="bal. acc@FPR"),
    Metric("detect_test_fpr", "False-positive rate on test (threshold from control)", "fraction", None,
           group="detect", short="test FPR", detail=True),
    Metric("detect_ece", "ECE (calibrated on validation)", "fraction", False, group="detect", short="ECE"),
    Metric("detect_aurc", "AURC (risk-coverage area)", "fraction", False, group="detect", short="AURC"),
    Metric("detect_prr", "Prediction-rejection ratio", "ratio", True, chance=0.0, group="detect", short="PRR",
           digits=3),
    Metric("selective_accuracy_50", "Accuracy at 50% coverage", "fraction", True, group="selective",
           short="acc@50%"),
    Metric("selective_accuracy_80", "Accuracy at 80% coverage", "fraction", True, group="selective",
           short="acc@80%"),
    Metric("selective_accuracy_100", "Accuracy (all answered)", "fraction", None, group="selective",
           short="acc@100%"),
    Metric("best_of_n_greedy", "Greedy answer accuracy", "fraction", None, group="selective", short="greedy"),
    Metric("best_of_n_detector", "Best-of-N: detector's pick", "fraction", True, group="selective",
           short="BoN detector", headline=True),
    Metric("best_of_n_max_logprob", "Best-of-N: highest log-prob", "fraction", True, group="selective",
           short="BoN log-prob"),
    Metric("best_of_n_majority", "Best-of-N: majority vote", "fraction", True, group="selective",
           short="BoN majority"),
    Metric("best_of_n_oracle", "Best-of-N: oracle (any sample right)", "fraction", None, group="selective",
           short="BoN oracle", detail=True),
):
    register_metric(_m)


def metrics_in(*groups: str, detail: bool = True) -> list[str]:
    """The registered metrics of `groups` (groups in the order given, registry order within each); without
    `detail`, leaving out breakdowns and diagnostics."""
    return [n for g in groups for n, m in METRICS.items() if m.group == g and (detail or not m.detail)]


def metrics_from(source: str) -> list[str]:
    """The registered metrics a side effect (or other source) measures, in registry order."""
    return [n for n, m in METRICS.items() if m.source == source]


def headlines(*groups: str) -> list[str]:
    """The headline metrics of `groups` (all groups when none given), in registry order."""
    return [n for n, m in METRICS.items() if m.headline and (not groups or m.group in groups)]


@dataclass(frozen=True)
class Table:
    """Which metrics a kind of table shows, in which order: `lead` first (a published column order), then
    every other metric of `groups` in registry order, so a metric registered later joins each table of its
    group with no other edit. `detail`: breakdowns too; `per_fold`: only what one fold measures (no products
    of fold means)."""

    groups: tuple
    lead: tuple = ()
    detail: bool = False
    per_fold: bool = False

    def names(self) -> list[str]:
        """The metric names this table shows, in order (only registered ones; product-of-means metrics left out per
        fold)."""
        rest = [n for n in metrics_in(*self.groups, detail=self.detail) if n not in self.lead]
        return [n for n in [*self.lead, *rest] if n in METRICS
                and not (self.per_fold and METRICS[n].folds != "mean")]


TABLES: dict[str, Table] = {
    # per fold: likenneth/honest_llama's validate_2fold printout (eval and iti validate)
    "fold": Table(("target", "lm"), lead=("info", "true", "mc1", "mc2", "ce_loss", "kl"), per_fold=True),
    # fold means in one line or a sweep's grid (iti validate, iti sweep): registry order
    "summary": Table(("target", "lm")),
    # method comparisons and steering sweeps: MC first (every method has it), the judged answers, the LM cost
    "compare": Table(("target", "lm"), lead=("mc1", "mc2", "true", "info", "true_info", "ce_loss", "kl")),
    # what an intervention costs besides its target (comparison, sweeps, the report's gain tables)
    "side_effects": Table(("side_effect", "health")),
    # what the steer itself did (sweeps: a conditional steer's fire rates)
    "steer": Table(("steer",)),
    # the report's result tables: the fold layout, then both True*Info conventions
    "results": Table(("target", "lm"), lead=("info", "true", "mc1", "mc2", "ce_loss", "kl"), detail=True),
    # eval's summary line (the answers' health follows it)
    "line": Table(("target", "lm", "binary"), detail=True),
}


def columns(table: str, rows: Iterable[Mapping] | None = None) -> list[str]:
    """The metric columns of `TABLES[table]`; with `rows`, only those some row has a value for."""
    names = TABLES[table].names()
    if rows is None:
        return names
    rows = list(rows)
    return [n for n in names if any(r.get(n) is not None for r in rows)]


def column_label(name: str, short: bool = False) -> str:
    """The column title of `name`: its label, or its compact title (`short`); an unregistered key as is."""
    m = METRICS.get(name)
    return name if m is None else (m.short if short else m.label)


def fmt(name: str | None, value, percent: bool = False) -> str:
    """`value` of metric `name` as tables show it: "-" when missing; x100 with 2 decimals where the table is
    in percent (`percent`) and the metric is a rate; else the metric's digits. A cost or count (no registered
    metric): integers as they are, floats with 4 decimals below 10 and 1 above."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    m = METRICS.get(name) if name is not None else None
    if m is None or not isinstance(value, (int, float)):
        if not isinstance(value, float):
            return str(value)
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return f"{100 * value:.2f}" if percent and m.percent else f"{value:.{m.digits}f}"


def metric_help(what: str = "Pick the best by") -> str:
    """A `--metric` help text naming the rankable metrics (built once at import by the CLI modules)."""
    return f"{what}: {', '.join(rankable_metrics(FOLD_GROUPS))} (veracity.metrics; higher or lower by its direction)."


def label(name: str) -> str:
    """The column label of metric `name` (the name itself when it is not registered)."""
    return METRICS[name].label if name in METRICS else name


def lower_is_better(name: str) -> bool:
    """Whether a smaller value of `name` is better (False for unknown and descriptive metrics), for marking the best
    cell."""
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


#: generation health past which a setting's scores are not a working model's: half or more of its generated answers
#: degenerate (repeats, gibberish). A model pushed there scores MC2 near the share of true answers among the choices
#: (its answer probabilities flatten), which can exceed a small model's honest MC2: a ranking must not crown it.
BROKEN_AT = {"degenerate_rate": 0.5}


def broken(summary: Mapping) -> str | None:
    """Why `summary` (a setting's metric values) is a broken model's, e.g. "degenerate_rate 0.95 >= 0.5"; None
    when it is not, or when its health was not measured."""
    for name, limit in BROKEN_AT.items():
        v = summary.get(name)
        if _ok(v) and v >= limit:
            return f"{name} {v:.2f} >= {limit}"
    return None


def health_measured(summary: Mapping) -> bool:
    """Whether `summary` holds every value `broken` reads, i.e. whether the rule could judge it at all."""
    return all(_ok(summary.get(name)) for name in BROKEN_AT)


def rankable_metrics(groups: Iterable[str] | None = None) -> list[str]:
    """The registered metrics with a direction, in registration order (only those of `groups` when given)."""
    keep = None if groups is None else set(groups)
    return [n for n, m in METRICS.items() if m.higher_is_better is not None and (keep is None or m.group in keep)]


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


def fold_sd(fold_metrics: Sequence[Mapping[str, float]], keys: Iterable[str] | None = None) -> dict:
    """`<metric>_sd`: the standard deviation over folds (ddof 1) of each of `keys` (default: every key of any
    fold) that every fold has a finite number for; nothing with fewer than two folds. The one spread every
    study reports beside `aggregate_folds`' means."""
    folds = list(fold_metrics)
    if len(folds) < 2:
        return {}
    names = list(keys) if keys is not None else list(dict.fromkeys(k for f in folds for k in f))
    out = {}
    for k in names:
        vals = [f.get(k) for f in folds]
        if all(_ok(v) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
            out[k + "_sd"] = statistics.stdev(float(v) for v in vals)
    return out


def pareto_front(points: Sequence[Mapping], axes: Sequence[str]) -> list[bool]:
    """Per point, whether it is on the Pareto front of `axes` (metric names; which way is better comes only from
    `better_sign`): no other point is at least as good on every axis and strictly better on one. A point missing
    an axis's value, or a broken model's (`broken`), is never on the front and dominates nothing; equal points are
    all on it."""
    signs = [better_sign(a, "axis") for a in axes]
    vals = [[s * float(p[a]) for a, s in zip(axes, signs)]
            if all(_ok(p.get(a)) for a in axes) and broken(p) is None else None for p in points]

    def dominates(u, v) -> bool:
        return all(x >= y for x, y in zip(u, v)) and any(x > y for x, y in zip(u, v))

    return [v is not None and not any(u is not None and dominates(u, v) for u in vals) for v in vals]


def gain_axes(points: Iterable[Mapping]) -> list[str]:
    """The target gains a gain-against-cost chart shows: the headline targets and binary tasks (MC2, True*Info,
    the binary task) some point carries, in registry order."""
    points = list(points)
    return [n for n in headlines("target", "binary") if any(_ok(p.get(n)) for p in points)]


def cost_axes(points: Iterable[Mapping]) -> list[str]:
    """The costs a gain-against-cost chart shows: the language-model cost (CE, KL) and every side effect with a
    better direction (`TABLES["side_effects"]`) some point carries, in registry order."""
    points = list(points)
    names = metrics_in("lm") + [n for n in TABLES["side_effects"].names() if METRICS[n].higher_is_better is not None]
    return [n for n in names if any(_ok(p.get(n)) for p in points)]


def gain_cost_table(points: Sequence[Mapping], gains: Sequence[str] | None = None,
                    costs: Sequence[str] | None = None) -> list[dict]:
    """The data of the gain-against-cost chart, one row per (point, gain, cost) both values of which are there:
    series, label, reference (None for a method's setting, else what it stands for: "plain model", "prompting"),
    gain_metric, gain, gain_sd (the point's `<gain>_sd` over folds, where it has one), cost_metric, cost, and
    pareto (on the front of that (gain, cost) plane among every point, references included). `points`: dicts
    with series, label, reference and metric values; gains / costs default to `gain_axes` / `cost_axes`. `broken`:
    why the point is a broken model's (`broken`; never on the front), else None."""
    gains = gain_axes(points) if gains is None else list(gains)
    costs = cost_axes(points) if costs is None else list(costs)
    out = []
    for g in gains:
        for c in costs:
            front = pareto_front(points, (g, c))
            for p, on in zip(points, front):
                if _ok(p.get(g)) and _ok(p.get(c)):
                    out.append({"series": p.get("series"), "label": p.get("label"), "reference": p.get("reference"),
                                "gain_metric": g, "gain": float(p[g]),
                                "gain_sd": float(p[g + "_sd"]) if _ok(p.get(g + "_sd")) else None,
                                "cost_metric": c, "cost": float(p[c]), "pareto": bool(on), "broken": broken(p)})
    return out
