"""`ccs-distractor`: which feature CCS finds at each distractor strength and layer."""

from __future__ import annotations

from ..page import Page, Run, records_table


def render(page: Page, run: Run) -> None:
    """Draw a `ccs-distractor` run's tables and figures into the page, from its typed result read back from
    results.json."""
    from ...experiments.probe_sanity import DistractorRun

    res = DistractorRun.from_json(run.results)
    picked = sum(r["picks"] == "distractor" for r in res.rows)
    records_table(page, res.rows, ("strength", "layer", "picks"),
                  f"CCS with a planted distractor: the distractor picked in {picked} of {len(res.rows)} cells (test "
                  "accuracy either sign; |cos| with truth and with the distractor)", labels=False)
