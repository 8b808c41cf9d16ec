"""`iti-sweep`: the alpha x K grid (fold means) as one heatmap per metric with the best cell starred, the
grid as a table, the best configuration's metrics, and the one chart of target gain against cost."""

from __future__ import annotations

from ... import metrics as _metrics
from .. import plots
from ..page import Page, Run, fmt, img, num, records_table
from .common import gain_cost_chart, summary_table


def _shown() -> list[str]:
    """The metrics drawn as heatmaps, in this order (those the grid has): the summary's, headlines first."""
    return sorted(_metrics.columns("summary"), key=lambda m: m not in _metrics.headlines())


def render(page: Page, run: Run) -> None:
    """Draw a `iti-sweep` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.iti_sweep import SweepRun

    res = SweepRun.from_json(run.results)
    cap = "summary (mean over folds)"
    if res.best:
        cap += f" of the best configuration: alpha = {fmt(res.best['alpha'])}, K = {fmt(res.best['k'])}, by {res.metric}"
    summary_table(page, res.summary, cap)
    alphas = sorted({r["alpha"] for r in res.grid})
    ks = sorted({r["k"] for r in res.grid})
    cell = {(r["alpha"], r["k"]): r for r in res.grid}
    for m in [m for m in _shown() if any(num(r.get(m)) for r in res.grid)]:
        grid = [[cell.get((a, k), {}).get(m) for k in ks] for a in alphas]
        outline = [(i, j) for i, a in enumerate(alphas) if a == 0 for j in range(len(ks))]
        star = (alphas.index(res.best["alpha"]), ks.index(res.best["k"])) if res.best and m == res.metric else None
        label = _metrics.label(m)
        unit = f" ({_metrics.METRICS[m].unit})"
        t = (f"{label} by alpha and K (mean over folds)" + ("; alpha = 0 baseline in dashed boxes" if outline else "")
             + ("; best starred" if star else ""))
        img(page, plots.heatmap(grid, xlabel="K (number of intervened heads)", ylabel="alpha (shift in sigmas)",
                                title=t, cbar_label=label + unit, x_ticklabels=ks, y_ticklabels=[fmt(a) for a in alphas],
                                outline=outline, star=star, cmap="magma" if _metrics.lower_is_better(m) else "viridis"),
            t)
    gain_cost_chart(page, res.gain_cost(), "ITI sweep")
    records_table(page, [{"alpha": r["alpha"], "K": r["k"], **{k: v for k, v in r.items() if k not in ("alpha", "k")}}
                         for r in sorted(res.grid, key=lambda r: (r["alpha"], r["k"]))],
                  ("alpha", "K"), "sweep grid (mean over folds; alpha = 0 is the baseline)")
