"""`--detector` on compare-interventions, `steer sweep` and `iti sweep` end to end on tiny-llama: every row and cell
reports the kept detector's belief in its answers (in the table, results.json, the per-question CSV and as a
`--metric`), a resume with another detector is refused, and so is a detector of another model."""

from __future__ import annotations

import csv
import json

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    return tmp_path_factory.mktemp("acts") / "store"


def _detector(lm, seed: int):
    """A seeded random two-component kept detector of `lm`."""
    import numpy as np

    from veracity.evaluate.detector import Detector

    g, d = np.random.default_rng(seed), lm.arch.hidden_size
    return Detector([0, 1], ["pre", "answer_last"], g.normal(size=(2, d)), g.normal(size=2), np.zeros((2, d)),
                    np.ones((2, d)), np.ones(2), 0.0, 0.0, {"method": "platt", "a": 1.0, "b": 0.0}, lm.fingerprint)


@pytest.fixture(scope="module")
def detectors(tmp_path_factory, tiny_llama):
    """Two kept detectors of tiny-llama (seeds 0, 1) and one of tiny-qwen2."""
    from veracity.models import load

    d = tmp_path_factory.mktemp("det")
    _detector(tiny_llama, 0).save(d / "a")
    _detector(tiny_llama, 1).save(d / "b")
    _detector(load("tiny-qwen2", device="cpu"), 0).save(d / "qwen")
    return d


def _common(data_dir, acts):
    return ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--acts", str(acts),
            "--limit", "6", "--folds", "2", "--judge", "none", "--ce-texts", "0", "--side-effects", "none"]


def test_compare_interventions_reports_the_detector(data_dir, acts, detectors, tmp_path, cli):
    out = tmp_path / "cmp"
    args = ["compare-interventions", *_common(data_dir, acts), "--methods", "baseline,few-shot", "--out", str(out)]
    text = cli(args + ["--detector", str(detectors / "a")])
    assert "belief" in text and "flagged" in text
    res = json.loads((out / "results.json").read_text())
    for row in res["methods"]:
        assert 0 <= row["detector_belief"] <= 1 and 0 <= row["detector_flagged"] <= 1
    with open(out / "per_question.csv") as f:
        pq = list(csv.DictReader(f))
    assert len(pq) == 12 and all(r["detector_belief"] != "" for r in pq)
    for m in ("baseline", "few-shot"):  # the row is the mean of its questions' beliefs over the folds
        folds = [[float(r["detector_belief"]) for r in pq if r["method"] == m and r["fold"] == str(f)] for f in (0, 1)]
        row = next(r for r in res["methods"] if r["method"] == m)
        assert row["detector_belief"] == pytest.approx(sum(sum(x) / len(x) for x in folds) / 2)
    err = cli(args + ["--detector", str(detectors / "b")], code=2)  # a resume with another detector
    assert "detector" in err


def test_steer_sweep_ranks_by_the_detector(data_dir, acts, detectors, tmp_path, cli):
    out = tmp_path / "sw"
    text = cli(["steer", "sweep", *_common(data_dir, acts), "--method", "caa", "--layers", "1", "--alphas", "0,2,8",
                "--metric", "detector_belief", "--detector", str(detectors / "a"), "--out", str(out)])
    assert "best by detector_belief" in text
    res = json.loads((out / "results.json").read_text())
    assert all(0 <= r["detector_belief"] <= 1 for r in res["grid"])
    steered = [r for r in res["grid"] if r["alpha"]]
    assert res["best"]["detector_belief"] == max(r["detector_belief"] for r in steered)
    err = cli(["steer", "sweep", *_common(data_dir, acts), "--detector", str(detectors / "qwen"), "--out",
               str(tmp_path / "other")], code=2)
    assert "fingerprint" in err and not (tmp_path / "other").exists()


def test_iti_sweep_reports_the_detector(data_dir, detectors, tmp_path, cli):
    out = tmp_path / "iti"
    cli(["iti", "sweep", *_common(data_dir, tmp_path / "heads"), "--alphas", "0,5", "--num-heads", "2",
         "--metric", "detector_flagged", "--detector", str(detectors / "a"), "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert all(0 <= r["detector_flagged"] <= 1 and 0 <= r["detector_belief"] <= 1 for r in res["grid"])
    assert res["metric"] == "detector_flagged" and res["best"] is not None
