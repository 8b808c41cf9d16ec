"""One module per run kind, each with `render(page, run)`: it reads the kind's typed result
(`Result.from_json(run.results)`) and draws its figures and tables.

SECTIONS maps every registered study's kind (`experiments.registry.STUDIES`) to (its `section`, its render):
the one in RENDERS where the kind has a module here (for figures), else `render_tables` (its headline and
`tables()`). Kinds that share a heading share a page section; the page follows RENDERS' order, then the
other registered kinds in registration order. A new study is its registration (and, for figures, one module
here with one line in RENDERS)."""

from __future__ import annotations

from typing import Callable

from ...experiments.registry import STUDIES
from ..page import Page, Run
from . import ccs, demo, detect, distractor, finetune, interventions, iti_sweep, iti_validate, polarity, probe, spec
from . import steer_compare, steer_sweep, sycophancy, truthfulqa

#: kind -> its section's render, in page order
RENDERS: dict[str, Callable[[Page, Run], None]] = {
    "demo": demo.render,
    "probe": probe.render,
    "ccs": ccs.render,
    "eval": truthfulqa.render,
    "iti-validate": iti_validate.render,
    "iti-sweep": iti_sweep.render,
    "compare-interventions": interventions.render,
    "sycophancy": sycophancy.render,
    "spec": spec.render,
    "finetune": finetune.render,
    "steer-sweep": steer_sweep.render,
    "steer-compare": steer_compare.render,
    "probe-polarity": polarity.render,
    "ccs-distractor": distractor.render,
    "detect": detect.render,
}


def render_tables(page: Page, run: Run) -> None:
    """A registered study's section without a module here: its headline and its Result's `tables()`, read
    back from results.json (so a new study renders with its registration alone)."""
    from ..page import table

    res = STUDIES[run.kind].result.from_json(run.results)
    head = res.headline()
    if head:
        table(page, list(head), [list(head.values())], caption="headline")
    for title, columns, rows in res.tables():
        table(page, list(columns), [list(r) for r in rows], caption=title)


SECTIONS: dict[str, tuple[str, Callable[[Page, Run], None]]] = {
    k: (STUDIES[k].section, RENDERS.get(k, render_tables)) for k in dict.fromkeys([*RENDERS, *STUDIES])
    if k in STUDIES}


def section_of(kind: str) -> tuple[str, Callable[[Page, Run], None]] | None:
    """(heading, render) of `kind`: SECTIONS', else a study registered since (its `section`, `render_tables`),
    else None."""
    if kind in SECTIONS:
        return SECTIONS[kind]
    if kind in STUDIES:
        return STUDIES[kind].section, render_tables
    return None
