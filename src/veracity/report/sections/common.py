"""What several sections draw: per-layer accuracy tables, the layers x heads map, TruthfulQA fold tables,
answers before and after an intervention, and a method's gain against its side effects."""

from __future__ import annotations

from typing import Sequence

from ... import metrics as _metrics
from .. import plots
from ..page import Page, img, num, records_table, table


def series_tables(page: Page, series: dict[str, dict], layers: Sequence, what: str, stats: dict[str, int]) -> None:
    """One table per statistic: rows = methods, columns = layers; `series` is {method: {layer: values}} and
    `stats` {label: index into values} ({"": 0} for a single value)."""
    for label, i in stats.items():
        rows = [[name] + [s[l][i] if l in s else None for l in layers] for name, s in series.items()]
        cap = f"{what}, {label} over seeds" if label else what
        table(page, ["method"] + [f"L{l}" for l in layers], rows, caption=f"{cap} (rows = methods, columns = layers)")


def heads_heatmap(page: Page, m: list[list], layers: Sequence, title: str, cbar_label: str,
                  marks: Sequence[tuple[int, int]] = ()) -> None:
    """A layers x heads map; `marks` are (row, head) cells boxed in red."""
    img(page, plots.heatmap(m, xlabel="attention head index", ylabel="layer (decoder block index)", title=title,
                            cbar_label=cbar_label, x_ticklabels=list(range(len(m[0]))), y_ticklabels=list(layers),
                            marks=list(marks), annotate=False),
        "layers x heads: " + title)


def fold_tables(page: Page, folds: list[dict], summary: dict) -> None:
    """The per-fold metrics and their fold means, under the ITI paper's column names."""
    records_table(page, folds, ("fold",), "per fold")
    summary_table(page, summary, "summary (mean over folds)")


def summary_table(page: Page, summary: dict, caption: str) -> None:
    """One row of fold means; says which True*Info is which when both are there."""
    if summary:
        both = [k for k in _metrics.METRICS if k in summary and _metrics.label(k).startswith("True*Info")]
        records_table(page, [summary], (), caption,
                      note="True*Info is given as " + ", ".join(both) + " (the product of fold means is the ITI "
                           "paper's convention; the per-answer rate counts answers both true and informative)"
                      if len(both) > 1 else "")


def answers_table(page: Page, rows: list[dict], title: str) -> None:
    """Answers before and after an intervention: rows of question, before, after, true_before, true_after
    (the columns nobody filled are left out)."""
    def answer(v):  # an empty generation (EOS first) is shown as such, not as a blank cell
        return "(empty answer)" if isinstance(v, str) and not v.strip() else v

    keys = ("question", "before", "after", "true_before", "true_after")
    cols = ("question", "before ITI", "after ITI", "true before", "true after")
    keep = [i for i, k in enumerate(keys) if any(r.get(k) is not None for r in rows)]
    table(page, [cols[i] for i in keep],
          [[answer(r.get(keys[i])) if i in (1, 2) else r.get(keys[i]) for i in keep] for r in rows], caption=title)


def gain_vs_side_effects(rows: list[dict], base: dict, targets: tuple | None = None) -> tuple[list, list]:
    """(columns, rows): per row, its change from `base` in each target metric (default: the comparison's
    headline targets, MC2 and True*Info) and in each side effect (`metrics.TABLES["side_effects"]`; the same
    sign convention for all: row - base), for the rows that carry a side effect."""
    if targets is None:
        targets = tuple(k for k in _metrics.columns("compare") if k in _metrics.headlines("target"))
    keys = [k for k in _metrics.columns("side_effects") if num(base.get(k)) and any(num(r.get(k)) for r in rows)]
    tks = [k for k in targets if num(base.get(k)) and any(num(r.get(k)) for r in rows)]
    if not keys or not tks:
        return [], []
    cols = [f"Δ {_metrics.label(k)}" for k in tks + keys]
    out = [[(float(r[k]) - float(base[k])) if num(r.get(k)) else None for k in tks + keys] for r in rows]
    return cols, out


def gain_cost_chart(page: Page, rows: list[dict], what: str) -> None:
    """The one picture of target gain against cost (`plots.gain_cost` of `metrics.gain_cost_table` rows, the
    gain_cost.csv the study wrote), axes titled by the registry with units; nothing when no plane has data."""
    if not rows:
        return
    names = {r[k] for r in rows for k in ("gain_metric", "cost_metric")}
    labels = {n: f"{_metrics.label(n)} ({_metrics.METRICS[n].unit})" for n in names if n in _metrics.METRICS}
    title = f"{what}: target against cost (Pareto front in red; black: references)"
    img(page, plots.gain_cost(rows, title=title, labels=labels), title)


def steerability_table(page: Page, rows: list[dict], outcomes: tuple = ("item_steerable", "mc2"),
                       seed: int = 0) -> None:
    """Did the before-steering predictors foretell the outcome across cells? Spearman's rho of each predictor
    (`steer.steerability.PREDICTORS`) with each outcome (the share of items steered the intended way, the
    target) over the rows that carry both, with a 95% bootstrap interval; nothing when no pair has three cells."""
    from ...steer.steerability import PREDICTORS, rank_agreement

    got = [rank_agreement(rows, p, o, seed=seed) for p in PREDICTORS for o in outcomes]
    got = [g for g in got if g["spearman"] is not None]
    if got:
        table(page, ["predictor", "outcome", "cells", "Spearman rho", "95% low", "95% high"],
              [[g["predictor"], g["outcome"], g["n"], g["spearman"], g["low"], g["high"]] for g in got],
              caption="did the steerability predictors (fitted on the training fold, before any generation) "
                      "foretell the outcome across layers and strengths? rank correlation over the cells, "
                      "bootstrap interval over cells")
