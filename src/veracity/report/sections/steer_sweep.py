"""`steer-sweep`: the layer x alpha grid (fold means), each cell's gain against its side effects, the one chart of
target gain against cost with its Pareto front, and whether the steerability predictors foretold the outcome."""

from __future__ import annotations

from ..page import Page, Run, records_table, table
from .common import gain_cost_chart, gain_vs_side_effects, steerability_table


def render(page: Page, run: Run) -> None:
    """Draw a `steer-sweep` run's tables and figures into the page, from its typed result read back from
    results.json."""
    from ...experiments.steer_sweep import SteerSweepRun

    res = SteerSweepRun.from_json(run.results)
    records_table(page, res.grid, ("layer", "alpha", "best"),
                  f"{res.method} grid (mean over folds; layer -1: the plain model; best by {res.metric})")
    rows = [r for r in res.grid if r["layer"] >= 0]  # ACE's alpha 0 (an ablation) is a steered row
    cols, vals = gain_vs_side_effects(rows, res.baseline, (res.metric,))
    if cols:
        table(page, ["layer", "alpha"] + cols, [[r["layer"], r["alpha"]] + v for r, v in zip(rows, vals)],
              caption="target gain against side effects: change from alpha 0")
    gain_cost_chart(page, res.gain_cost(), f"{res.method} sweep")
    steerability_table(page, rows)
