"""`detect`: does the model know when its own answer is wrong? ROC and risk-coverage curves per detector, a
reliability diagram, and the table of every detector against every baseline on the test split."""

from __future__ import annotations

from .. import plots
from ..page import Page, Run, fmt, img, table


def render(page: Page, run: Run) -> None:
    """Draw a `detect` run from its typed result read back from results.json."""
    from ...experiments.detect import DetectResult

    res = DetectResult.from_json(run.results)
    hl = res.headline()
    page.note(f"greedy answers: {fmt(hl['n_correct'])} right / {fmt(hl['n_wrong'])} wrong; best detector "
              f"(chosen on validation): {fmt(hl['best_detector'])}, test AUROC {fmt(hl['detect_auroc'])} against the "
              f"text-only baseline's {fmt(hl['text_auroc'])}; single-layer spike: {fmt(hl['spike'])}")
    for title, columns, rows in res.tables():
        table(page, columns, rows, caption=title)
    for key, xl, yl, what in (("roc", "false-positive rate (correct answers flagged)", "recall (wrong answers flagged)",
                               "ROC of flagging wrong answers, per detector"),
                              ("risk_coverage", "coverage (share answered)", "risk (error rate among answered)",
                               "risk-coverage curve per detector (lower is better)"),
                              ("reliability", "calibrated P(correct) (Platt on validation)", "share correct",
                               "reliability diagram (the diagonal is perfect calibration)")):
        series = {n: (c[key][0], c[key][1]) for n, c in res.curves.items() if c.get(key)}
        if series:
            img(page, plots.lines(series, xlabel=xl, ylabel=yl, title=what, integer_x=False), what)
    for line in res.lines():
        page.note(line)
