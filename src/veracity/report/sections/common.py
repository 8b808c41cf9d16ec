"""What several sections draw: per-layer accuracy tables, the layers x heads map, TruthfulQA fold tables,
answers before and after an intervention, and a method's gain against its side effects."""

from __future__ import annotations

from typing import Sequence

from ... import metrics as _metrics
from .. import plots
from ..page import METRIC_LABELS, Page, img, num, records_table, table

#: side-effect metrics (veracity.methods.side_effects), in the order the gain tables show them
SIDE_EFFECT_KEYS = ("sycophancy_flip_rate", "sycophancy_to_opinion", "boolq_accuracy", "honest_score", "refusal_rate",
                    "distinct_2", "mean_words", "degenerate_rate")


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
        both = [k for k in ("true_info", "true_info_per_answer") if k in summary]
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


def gain_vs_side_effects(rows: list[dict], base: dict, targets: tuple = ("mc2", "true_info")) -> tuple[list, list]:
    """(columns, rows): per row, its change from `base` in each target metric and in each side effect
    (the same sign convention for all: row - base), for the rows that carry a side effect."""
    keys = [k for k in SIDE_EFFECT_KEYS if num(base.get(k)) and any(num(r.get(k)) for r in rows)]
    tks = [k for k in targets if num(base.get(k)) and any(num(r.get(k)) for r in rows)]
    if not keys or not tks:
        return [], []
    cols = [f"Δ {METRIC_LABELS.get(k, _metrics.label(k))}" for k in tks + keys]
    out = [[(float(r[k]) - float(base[k])) if num(r.get(k)) else None for k in tks + keys] for r in rows]
    return cols, out
