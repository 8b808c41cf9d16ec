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
