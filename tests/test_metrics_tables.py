"""The metrics registry is the only list of metrics: no module re-declares one, and a metric registered later
(a target, a side effect's) shows up in the tables, sweeps, comparison, report and `--metric` help with its
label and format, with no other edit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from veracity import metrics as M
from veracity.cli.iti_cmd import MetricHelp  # the help is built at import: before any test registers

SRC = Path(__file__).resolve().parents[1] / "src" / "veracity"


def _metric_lists(tree: ast.AST, names: set[str]):
    """(line, names) of every tuple, list or set literal whose strings are all metric names, two or more."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            strs = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(strs) >= 2 and all(s in names for s in strs):
                yield node.lineno, strs


def test_no_second_list_of_metrics():
    """Outside veracity/metrics.py, no literal tuple/list/set of two or more registered metric names: a table,
    headline or help derives its metrics from the registry (`metrics.columns`, `headlines`, `metrics_in`)."""
    names = set(M.METRICS)
    found = [f"{p.relative_to(SRC.parent)}:{line}: {strs}" for p in sorted(SRC.rglob("*.py")) if p != SRC / "metrics.py"
             for line, strs in _metric_lists(ast.parse(p.read_text()), names)]
    assert not found, "metric lists outside the registry (derive them from veracity.metrics):\n" + "\n".join(found)


def test_the_scan_finds_a_second_list():
    names = set(M.METRICS)
    tree = ast.parse('KEYS = ("mc1", "kl")\nCOLS = ["fold", "mc1", "mc2"]\nx = [name, "kl", "mc2"]\n')
    assert [line for line, _ in _metric_lists(tree, names)] == [1, 3]  # a mixed column list is not one


@pytest.fixture
def extra_metrics():
    """A target metric and a side effect's metric, registered for one test."""
    target = M.register_metric(M.Metric("calib_ece", "ECE (calibration)", "fraction", False, group="target",
                                        short="ECE", digits=3))
    side = M.register_metric(M.Metric("toxic_rate", "Toxic completions", "fraction", False, group="side_effect",
                                      short="toxic", digits=2))
    yield target, side
    M.METRICS.pop("calib_ece")
    M.METRICS.pop("toxic_rate")


def test_registered_metrics_join_every_table_of_their_group(extra_metrics):
    assert M.columns("summary")[-3:] == ["calib_ece", "ce_loss", "kl"]  # the targets, then the LM cost
    assert M.columns("compare")[-1] == "calib_ece"  # after the comparison's published columns
    assert "calib_ece" in M.columns("fold") and "calib_ece" in M.columns("results")
    assert M.columns("side_effects")[M.columns("side_effects").index("toxic_rate") - 1] == "honest_score"
    assert M.fmt("calib_ece", 0.12345) == "0.123" and M.fmt("calib_ece", 0.12345, percent=True) == "12.35"
    assert M.fmt("toxic_rate", 0.054) == "0.05" and M.fmt("kl", 0.5) == "0.5000" and M.fmt("mc2", None) == "-"
    assert M.column_label("calib_ece") == "ECE (calibration)" and M.column_label("calib_ece", short=True) == "ECE"
    assert "calib_ece" in M.metric_help() and "toxic_rate" in M.metric_help()


def test_a_registered_metric_shows_in_the_comparison_and_sweeps(extra_metrics):
    from veracity.experiments.interventions import CompareRun
    from veracity.experiments.steer_sweep import SteerSweepRun

    run = CompareRun(config={"n_folds": 2}, model="tiny", n_questions=10, revision="2021", eval_revision="2021",
                     cross_revision=None, folds=[],
                     methods=[{"method": "iti", "mc2": 0.5, "calib_ece": 0.1234, "toxic_rate": 0.056, "infer_s": 1.5}])
    (_, cols, rows), = run.tables()
    assert cols == ["method", "MC2", "ECE", "infer s", "toxic"] and rows == [["iti", "0.5000", "0.123", "1.5000", "0.06"]]
    assert run.summary == {"iti": {"mc2": 0.5, "calib_ece": 0.1234}}
    sweep = SteerSweepRun("caa", [{"layer": 3, "alpha": 1.0, "mc2": 0.5, "calib_ece": 0.2, "toxic_rate": 0.1,
                                   "best": True}], None, "mc2", {}, {})
    (_, cols, rows), = sweep.tables()
    assert cols == ["layer", "alpha", "mc2", "calib_ece", "toxic_rate", ""] and rows[0][2:5] == ["0.5000", "0.200", "0.10"]


def test_a_registered_metric_shows_in_the_eval_and_validate_output(extra_metrics):
    from veracity.experiments import truthfulqa as drv

    assert drv.fold_columns()[-1] == "ECE (calibration)"
    assert drv.summary_line({"mc2": 0.5, "calib_ece": 0.1234}) == "MC2 50.00, ECE 12.34"
    from veracity.experiments.iti_validate import ValidateRun

    run = ValidateRun(config={"alpha": 5.0, "k": 2, "iti": {"direction": "com"}}, revision="2021",
                      eval_revision="2021", cross_revision=None, folds=[], per_question=[],
                      summary={"mc2": 0.5, "calib_ece": 0.1234})
    (title, cols, rows), = run.tables()  # what `veracity iti validate` prints under the folds
    assert title == "fold means" and rows[0][0] == "alpha=5 K=2 com"
    assert dict(zip(cols, rows[0]))["ECE"] == "0.123" and cols[-3:] == ["ECE", "CE Loss", "KL wrt Orig"]


def test_a_registered_metric_shows_in_the_report(extra_metrics):
    from veracity.report.page import Page, records_table
    from veracity.report.sections.common import gain_vs_side_effects

    page = Page()
    records_table(page, [{"method": "iti", "calib_ece": 0.1, "mc2": 0.5}], ("method",), "methods")
    heads = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", page.parts[0])
    assert heads == ["method", "MC2", "ECE (calibration)"]
    cols, vals = gain_vs_side_effects([{"mc2": 0.6, "toxic_rate": 0.3}], {"mc2": 0.5, "toxic_rate": 0.1})
    assert cols == ["Δ MC2", "Δ Toxic completions"] and vals[0] == pytest.approx([0.1, 0.2])


def test_metric_help_lists_the_rankable_metrics(cli):
    """`--metric` of both sweeps names every metric a sweep cell measures and has a direction for, from the registry
    (built at import); a detector's figures (another study's) are not offered."""
    assert MetricHelp == M.metric_help() and all(n in MetricHelp for n in M.rankable_metrics(M.FOLD_GROUPS))
    assert "mean_words" not in MetricHelp.split(":", 1)[1]  # no direction: cannot rank
    detect = [n for n, m in M.METRICS.items() if m.group in ("detect", "selective")]
    assert detect and not any(re.search(rf"\b{n}\b", MetricHelp) for n in detect)
    for cmd in (["iti", "sweep"], ["steer", "sweep"]):
        out = re.sub(r"[\s│]+", "", cli([*cmd, "--help"]))
        assert "true_info_per_answer" in out and "sycophancy_to_opinion" in out and "honest_male" in out, cmd
