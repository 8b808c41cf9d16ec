"""`eval`: TruthfulQA per fold and the fold means (its answers are the before side of an ITI run's
examples, see `iti_validate`)."""

from __future__ import annotations

from dataclasses import asdict

from ..page import Page, Run, num
from .common import fold_tables


def render(page: Page, run: Run) -> None:
    """Draw a `eval` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.truthfulqa import EvalOutput

    res = EvalOutput.from_json(run.results)
    fold_tables(page, [{k: v for k, v in asdict(f.metrics).items() if k == "fold" or num(v)} for f in res.folds],
                res.summary)
