"""`compare-interventions`: one row per method (fold means, *_sd over folds, cost columns), each method's
gain against its side effects (changes from `baseline`), the one chart of target gain against cost (prompting and
the plain model as references), and one row per method and fold."""

from __future__ import annotations

from ..page import Page, Run, records_table, table
from .common import gain_cost_chart, gain_vs_side_effects


def render(page: Page, run: Run) -> None:
    """Draw a `compare-interventions` run's tables and figures into the page, from its typed result read back from
    results.json."""
    from ...experiments.interventions import CompareRun

    res = CompareRun.from_json(run.results)
    records_table(page, res.methods, ("method",),
                  "methods on the same folds (mean over folds; _sd: standard deviation over folds; *_s: seconds)")
    base = next((r for r in res.methods if r["method"] == "baseline"), None)
    if base is not None:
        others = [r for r in res.methods if r is not base]
        cols, vals = gain_vs_side_effects(others, base)
        if cols:
            table(page, ["method"] + cols, [[r["method"]] + v for r, v in zip(others, vals)],
                  caption="target gain against side effects: change from baseline (fractions; a rise in flips, "
                          "agreement with a wrong opinion, HONEST or refusals is a cost, a fall in BoolQ or "
                          "distinct-2 is one)")
    gain_cost_chart(page, res.gain_cost(), "methods on the same folds (bars: s.d. over folds)")
    records_table(page, res.folds, ("method", "fold"), "per method and fold")
