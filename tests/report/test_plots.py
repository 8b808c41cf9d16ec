"""The gain-against-cost chart (`report.plots.gain_cost`) and the sections' helpers around it
(`report.sections.common.gain_cost_chart`, `steerability_table`), on hand-made rows."""

from __future__ import annotations

import io

from veracity import metrics as M
from veracity.report import plots
from veracity.report.page import Page
from veracity.report.sections.common import gain_cost_chart, steerability_table


def _points():
    return [{"series": "plain model", "label": "alpha 0", "reference": "plain model", "mc2": 0.30, "kl": 0.0,
             "boolq_accuracy": 0.6},
            {"series": "prompt", "label": "few-shot", "reference": "prompting", "mc2": 0.36, "kl": 0.0},
            {"series": "caa layer 3", "label": "alpha 1", "reference": None, "mc2": 0.33, "mc2_sd": 0.02, "kl": 0.1,
             "boolq_accuracy": 0.58},
            {"series": "caa layer 3", "label": "alpha 2", "reference": None, "mc2": 0.38, "kl": 0.4,
             "boolq_accuracy": 0.5}]


def test_gain_cost_draws_one_panel_per_plane():
    from PIL import Image

    rows = M.gain_cost_table(_points())
    png = plots.gain_cost(rows, title="t", labels={"mc2": "MC2 (fraction)"})
    im = Image.open(io.BytesIO(png))
    # two cost axes (KL, BoolQ) side by side, one gain (MC2): wider than tall
    assert im.format == "PNG" and im.size[0] > im.size[1]
    # the plain model and prompting at KL 0: prompting has the higher MC2 and dominates the plain model there
    kl = {r["label"]: r["pareto"] for r in rows if r["cost_metric"] == "kl"}
    assert kl == {"alpha 0": False, "few-shot": True, "alpha 1": False, "alpha 2": True}


def test_gain_cost_chart_and_steerability_table_on_a_page():
    page = Page()
    gain_cost_chart(page, M.gain_cost_table(_points()), "a sweep")
    assert len(page.parts) == 1 and "Pareto front" in page.parts[0] and "<img" in page.parts[0]
    gain_cost_chart(page, [], "nothing")
    assert len(page.parts) == 1
    cells = [{"pair_cosine": p, "d_prime": 2 * p, "item_steerable": p ** 2, "mc2": 1 - p} for p in (0.1, 0.2, 0.4, 0.8)]
    steerability_table(page, cells)
    html = page.parts[-1]
    assert "Spearman rho" in html and html.count("<tr>") == 1 + 4  # 2 predictors x 2 outcomes
    assert ">1<" in html and ">-1<" in html  # item_steerable rises with the predictors, mc2 falls
    steerability_table(page, cells[:2])  # too few cells: no table
    assert page.parts[-1] == html


def test_gain_cost_on_empty_rows_is_an_empty_figure():
    assert plots.gain_cost([], title="empty")[:4] == b"\x89PNG"
