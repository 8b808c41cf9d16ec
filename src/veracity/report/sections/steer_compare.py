"""`steer-compare`: every steering method's sweep on the same folds: the best cell per method, the one chart of
target gain against cost over every method's every cell (prompting and the plain model as references, the Pareto
front among all of them), and whether the steerability predictors foretold the outcome across methods and layers."""

from __future__ import annotations

from ..page import Page, Run, records_table, table
from .common import gain_cost_chart


def render(page: Page, run: Run) -> None:
    """Draw a `steer-compare` run's tables and its gain-cost chart into the page, from its typed result read back
    from results.json."""
    from ...experiments.steer_compare import SteerCompareResult

    res = SteerCompareResult.from_json(run.results)
    head = res.headline()
    if head:
        table(page, list(head), [list(head.values())], caption=f"the best method by {res.metric} (its best cell)")
    records_table(page, res.best, ("method", "setting"),
                  f"best cell per method by {res.metric} (mean over folds; _sd: standard deviation over folds)")
    gain_cost_chart(page, res.gain_cost, "every steering method on the same folds (bars: s.d. over folds)")
    if res.paired:
        table(page, ["method", "setting", "against", "questions", f"{res.metric} difference", "95% low", "95% high",
                     "share up", "share down", "call"],
              [[r["method"], r["setting"], r["against"], r["n"], r["difference"], r["low"], r["high"], r["up"],
                r["down"], r["call"]] for r in res.paired],
              caption=f"each method's best cell against the plain model and the prompts, paired by held-out question "
                      f"(per-question {res.metric}; 95% bootstrap interval over questions)")
    if res.predictors:
        table(page, ["scope", "predictor", "outcome", "cells", "distinct values", "Spearman rho", "95% low",
                     "95% high"],
              [[r["scope"], r["predictor"], r["outcome"], r["n"], r.get("distinct"), r["spearman"], r["low"],
                r["high"]] for r in res.predictors],
              caption="did the steerability predictors (fitted on the training fold, before any generation) foretell "
                      f"the outcome across methods and layers? {res.verdict}")
