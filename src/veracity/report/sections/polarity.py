"""`probe-polarity`: accuracy per method and layer for each train -> test polarity, and per held-out topic."""

from __future__ import annotations

from ..page import Page, Run, table

VIEWS = (("affirmative", "affirmative"), ("affirmative", "negated"), ("negated", "affirmative"), ("both", "negated"))


def render(page: Page, run: Run) -> None:
    """Draw a `probe-polarity` run's tables and figures into the page, from its typed result read back from
    results.json."""
    from ...experiments.probe_sanity import PolarityRun

    res = PolarityRun.from_json(run.results)
    exp = res.experiment
    views = [(tr, te, f"train {tr} -> test {te} (held-out rows of {exp.n_rows} statements; chance 0.5)")
             for tr, te in VIEWS]
    views += [(f"topic!={t}", f"{t}:negated", f"held-out topic {t}: other topics (both polarities) -> {t} negated")
              for t in res.topics]
    for tr, te, caption in views:
        rows = exp.table(tr, te)
        if any(v is not None for r in rows for v in r[1:]):  # a view the run did not score is left out
            table(page, ["method"] + [f"L{l}" for l in exp.layers], rows, caption=caption)
