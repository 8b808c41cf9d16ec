"""`sycophancy`: MC and probe accuracy per data set and condition (plain, opinion, with ITI)."""

from __future__ import annotations

from ..page import Page, Run, records_table, table


def render(page: Page, run: Run) -> None:
    """Draw a `sycophancy` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.sycophancy import SycophancyRun

    res = SycophancyRun.from_json(run.results)
    records_table(page, res.rows, ("dataset", "condition"),
                  "accuracy without and with an incorrect opinion in the prompt (opinion), and with ITI", labels=False)
    if res.best_layers:
        table(page, ["dataset", "probe layer (best on validation)"], [[k, v["layer"]] for k, v in res.best_layers.items()],
              caption="probe layers")
