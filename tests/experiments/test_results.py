"""Typed results of the studies that own their run: to_json / from_json round trip, schema_version in the
file, older (unversioned) files read, newer ones refused with a clear message."""

from __future__ import annotations

import pytest

from veracity.experiments.iti_sweep import SCHEMA_VERSION as SWEEP_V, SweepRun
from veracity.experiments.iti_validate import SCHEMA_VERSION as VALIDATE_V, ValidateRun


def _validate_run():
    return ValidateRun(config={"k": 48, "alpha": 15.0}, revision="2021", eval_revision="2025",
                       cross_revision={"matched": 3, "removed": [7], "unmatched_eval": []},
                       folds=[{"fold": 0, "n_questions": 2, "metrics": {"mc2": 0.5}}],
                       per_question=[{"fold": 0, "index": 1, "mc2": 0.5}],
                       summary={"true_info": 0.1, "mc2": 0.5, "kl": 0.2, "mc1": 0.3},
                       summary_baseline={"mc2": 0.4})


def test_validate_result_round_trip_and_headline():
    r = _validate_run()
    d = r.to_json()
    assert d["schema_version"] == VALIDATE_V == 1
    back = ValidateRun.from_json(d)
    assert back.to_json() == d
    assert r.headline() == {"true_info": 0.1, "mc2": 0.5, "kl": 0.2}


def test_validate_result_versions():
    d = _validate_run().to_json()
    d.pop("schema_version")
    assert ValidateRun.from_json(d).schema_version == 0  # written before the field existed: same layout
    with pytest.raises(ValueError, match="schema_version 2"):
        ValidateRun.from_json(dict(d, schema_version=2))


def test_sweep_result_round_trip_and_versions():
    r = SweepRun(grid=[{"alpha": 0.0, "k": 8, "mc2": 0.4, "best": False, "baseline": True},
                       {"alpha": 5.0, "k": 8, "mc2": 0.5, "best": True, "baseline": False}],
                 best={"alpha": 5.0, "k": 8, "mc2": 0.5}, metric="mc2", baseline={"mc2": 0.4}, revision="2021",
                 eval_revision="2021", cross_revision=None, summary={"mc2": 0.5}, plots=["heatmap_mc2.png"])
    d = r.to_json()
    assert d["schema_version"] == SWEEP_V and SweepRun.from_json(d).to_json() == d
    assert r.headline() == {"best_alpha": 5.0, "best_k": 8, "mc2": 0.5}
    with pytest.raises(ValueError, match="upgrade veracity"):
        SweepRun.from_json(dict(d, schema_version=SWEEP_V + 1))


def _roundtrip(cls, d: dict):
    """from_json(to_json) reproduces the file; unversioned files read as 0; newer ones are refused."""
    import json

    from veracity.runs import to_jsonable

    d = json.loads(json.dumps(to_jsonable(d)))
    back = cls.from_json(d)
    assert json.loads(json.dumps(to_jsonable(back.to_json()))) == d
    assert cls.from_json({k: v for k, v in d.items() if k != "schema_version"}).schema_version == 0
    with pytest.raises(ValueError, match="upgrade veracity"):
        cls.from_json(dict(d, schema_version=d["schema_version"] + 1))
    return back


def test_compare_and_sycophancy_results():
    from veracity.experiments.interventions import CompareRun
    from veracity.experiments.sycophancy import SycophancyRun

    r = CompareRun(config={"n_folds": 2}, model="m", n_questions=11, revision="2021", eval_revision="2025",
                   cross_revision={"matched": 11, "removed": [{"index": 9}], "unmatched_eval": []},
                   methods=[{"method": "baseline", "mc2": 0.4, "mc1": 0.2}, {"method": "iti", "mc2": 0.5}],
                   folds=[{"method": "iti", "fold": 0, "mc2": 0.5}])
    back = _roundtrip(CompareRun, r.to_json())
    assert back.headline() == {"best_by_mc2": "iti", "mc2": 0.5}
    assert back.summary == {"baseline": {"mc1": 0.2, "mc2": 0.4}, "iti": {"mc2": 0.5}}
    (title, cols, rows), = back.tables()
    assert "fitted on 2021, scored on 2025" in title and cols == ["method", "MC1", "MC2"]
    assert rows == [["baseline", "0.2000", "0.4000"], ["iti", "-", "0.5000"]]
    s = SycophancyRun(config={}, model="m", datasets=["truthfulqa"], best_layers={"truthfulqa": {"layer": 3}},
                      rows=[{"dataset": "truthfulqa", "condition": "opinion", "n": 4, "mc_acc": 0.25}])
    back = _roundtrip(SycophancyRun, s.to_json())
    assert back.headline() == {"truthfulqa:opinion:mc_acc": 0.25}
    assert back.tables()[0][2] == [["truthfulqa", "opinion", "4", "0.2500"]]


def test_probe_ccs_spec_finetune_results():
    from veracity.experiments.finetune_milestones import FinetuneRun, Milestone
    from veracity.experiments.ccs import CCSExperiment, CCSLayerResult, CCSRun
    from veracity.experiments.probe import HeadProbeAccuracy, ProbeCell, ProbeExperiment, ProbeRun, ProbeScore
    from veracity.experiments.spec import SpecRun
    from dataclasses import asdict

    exp = ProbeExperiment("random", ["logistic"], [1, 2], [0],
                          [ProbeScore("logistic", 1, "random", 0, 0.6, 8, 2), ProbeScore("logistic", 2, "random", 0, 0.9, 8, 2)],
                          [ProbeCell("logistic", 1, 0.6, 0.0, 0.6, 0.6, [0.6]), ProbeCell("logistic", 2, 0.9, 0.0, 0.9, 0.9, [0.9])])
    back = _roundtrip(ProbeRun, ProbeRun(exp).to_json())
    assert back.experiment.cells[1] == exp.cells[1] and back.headline() == {"best_acc": 0.9, "best": "logistic@L2"}
    h = HeadProbeAccuracy([[0.5, 0.7], [0.9, 0.6]], [[0.6, 0.8], [1.0, 0.7]], [[0.1, 0.1], [0.1, 0.1]], [3, 5], 2, 0.2)
    back = _roundtrip(ProbeRun, ProbeRun(heads=h).to_json())
    assert back.experiment is None and back.heads == h
    assert back.heads.best() == (5, 0, 0.9) and back.headline() == {"best_head_acc": 0.9, "best_head": "L5H0"}
    for bad in ({}, {"experiment": exp, "heads": h}):  # one layout or the other, never both or neither
        with pytest.raises(ValueError, match="either"):
            ProbeRun(**bad)
    c = CCSRun(CCSExperiment([CCSLayerResult(4, 0.7, 0.75, 0.1, 0.8, 0.5), CCSLayerResult(6, 0.8, 0.8, 0.1, 0.9, 0.5)],
                             {"accuracy": 0.6, "accuracy_calibrated": 0.65}, 6, 4, 0), "acts", "boolq")
    back = _roundtrip(CCSRun, c.to_json())
    assert back.ccs.layers == c.ccs.layers
    assert back.headline() == {"ccs_best_acc": 0.8, "ccs_best_layer": 6, "zero_shot": 0.6}
    sp = SpecRun(summary={"groups": ["f", "m"], "per_group": {}, "comparisons": [
        {"metric": "mean_accepted", "group_a": "f", "group_b": "m", "difference": 0.2, "ci95": [0.1, 0.3],
         "p_value": 0.04}]}, toxicity={"honest": 0.1})
    back = _roundtrip(SpecRun, sp.to_json())
    assert back.headline() == {"diff_mean_accepted": 0.2, "p_value": 0.04}
    ms = [asdict(Milestone(step=0, train_loss=None, kl=0.0)), asdict(Milestone(step=2, train_loss=1.5, kl=0.3))]
    f = FinetuneRun(ms, [2.0, 1.5], 2, "out/checkpoints/final")
    back = _roundtrip(FinetuneRun, f.to_json())
    assert back.headline() == {"steps": 2, "final_loss": 1.5, "final_kl": 0.3}
    assert back.tables()[0][2][1][:3] == [2, 1.5, 0.3]


def test_probe_sanity_results():
    from veracity.experiments.probe_sanity import DistractorRun, PolarityRun
    from veracity.probes.sanity import PolarityExperiment

    scores = [{"method": "logistic", "layer": 3, "train": "affirmative", "test": "negated", "accuracy": 0.2},
              {"method": "ttpd", "layer": 3, "train": "affirmative", "test": "negated", "accuracy": 0.8},
              {"method": "logistic", "layer": 3, "train": "topic!=cities", "test": "cities:negated", "accuracy": 0.6},
              {"method": "logistic", "layer": 3, "train": "topic!=sp_en", "test": "sp_en:negated", "accuracy": 0.7}]
    r = PolarityRun(PolarityExperiment(["logistic", "ttpd"], [3], scores, 40, 0), ["cities", "sp_en"])
    back = _roundtrip(PolarityRun, r.to_json())
    assert back.headline() == {"rows": 40, "worst_affirmative_to_negated": 0.2}
    tables = {t: rows for t, _, rows in back.tables()}
    assert tables["train affirmative -> test negated (held-out rows)"] == [["logistic", 0.2], ["ttpd", 0.8]]
    assert tables["held-out topic sp_en: train on the other topics (both polarities) -> sp_en negated"][0] == ["logistic", 0.7]
    d = DistractorRun([{"strength": 1.0, "layer": 2, "picks": "distractor", "acc_truth": 0.5, "acc_distractor": 0.9,
                        "cos_truth": 0.1, "cos_distractor": 0.95, "clean_acc_truth": 0.8, "clean_cos_truth": 0.7}])
    assert _roundtrip(DistractorRun, d.to_json()).headline() == {"picks_distractor": 1, "cells": 1}
