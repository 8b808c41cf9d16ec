"""`veracity probe-polarity` and `veracity ccs-distractor` end to end on tiny models."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from veracity.capture import capture


def test_probe_polarity_cli(data_dir, tmp_path, tiny_llama, cli):
    out = tmp_path / "pol"
    assert "done; run folder" in cli(["probe-polarity", "--model", "tiny-llama", "--device", "cpu", "--data-dir",
                                      str(data_dir), "--limit", "24", "--layers", "1,-1", "--out", str(out)])
    rows = list(csv.DictReader(open(out / "polarity_scores.csv")))
    methods = {r["method"] for r in rows}
    assert methods == {"logistic", "mass-mean", "ttpd"}
    assert {r["layer"] for r in rows} == {"1", "3"}
    pairs = {(r["train"], r["test"]) for r in rows}
    assert ("affirmative", "negated") in pairs and ("topic!=cities", "cities:negated") in pairs
    assert ("topic!=sp_en_trans", "sp_en_trans:affirmative") in pairs
    ttpd_aff = [r for r in rows if r["method"] == "ttpd" and r["train"] == "affirmative"]
    assert ttpd_aff and all(r["accuracy"] == "" for r in ttpd_aff)  # TTPD needs both polarities
    # logistic, affirmative -> negated at layer 3 = sklearn on the same statements' activations, split by
    # hand: whole twin groups (a fact and its negation) to test, in a seeded order, up to 20% of the rows
    from veracity.probes.sanity import polarity_statements

    ds = polarity_statements(("cities", "sp_en_trans"), data_dir=data_dir, limit=24, seed=0)
    X = capture(tiny_llama, ds.texts, "resid.3", progress=False)["resid.3"].float().numpy()
    y, pol = np.asarray(ds.labels), np.asarray([m["polarity"] for m in ds.meta])
    _, gid = np.unique([m["twin"] for m in ds.meta], return_inverse=True)
    order = np.random.default_rng(0).permutation(gid.max() + 1)
    is_test = np.isin(gid, order[np.cumsum(np.bincount(gid)[order]) <= round(0.2 * len(y))])
    tr, te = ~is_test & (pol == 1), is_test & (pol == -1)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(X[tr], y[tr])
    key = ("logistic", "3", "affirmative", "negated")
    got = [r for r in rows if (r["method"], r["layer"], r["train"], r["test"]) == key]
    assert len(got) == 1 and float(got[0]["accuracy"]) == pytest.approx(accuracy_score(y[te], clf.predict(X[te])))
    assert json.loads((out / "config.json").read_text())["rows"] == 24 * 4


def test_probe_polarity_rejects_bad_input_before_work(data_dir, tmp_path, cli):
    for args, msg in ((["--methods", "nope"], "--methods must be one of logistic, "),
                      (["--sets", "larger_than"], "(the sets with negated twins), got 'larger_than'"),
                      (["--sets", "cities,neg_cities"], "--sets must be one of cities, neg_companies, neg_facts, "
                                                        "sp_en_trans (the sets with negated twins), got 'neg_cities'")):
        assert msg in cli(["probe-polarity", "--model", "tiny-llama", "--data-dir", str(data_dir),
                           "--out", str(tmp_path / "x")] + args, code=2)
        assert not (tmp_path / "x").exists()


def test_ccs_distractor_cli(tmp_path, tiny_llama, cli):
    """Plumbing on a real contrast-store layout (x+ rows then x- rows); CCS's behaviour on planted pairs is
    tested in tests/probes/test_sanity.py."""
    n = 60
    y = np.random.default_rng(0).integers(0, 2, n)
    store = capture(tiny_llama, [f"Is {i} even? Yes" for i in range(n)] + [f"Is {i} even? No" for i in range(n)], "resid.0",
                    labels=list(y) * 2, out=tmp_path / "acts", progress=False)
    assert store.n_rows == 2 * n
    cli(["ccs-distractor", "--acts", str(tmp_path / "acts"), "--strengths", "0,3",
         "--n-restarts", "2", "--epochs", "50", "--out", str(tmp_path / "d")])
    rows = list(csv.DictReader(open(tmp_path / "d" / "distractor.csv")))
    assert [r["strength"] for r in rows] == ["0.0", "3.0"] and {r["picks"] for r in rows} <= {"truth", "distractor"}
    cli(["ccs-distractor", "--acts", str(tmp_path / "acts"), "--strengths", "x", "--out", str(tmp_path / "e")], code=2)
    assert not (tmp_path / "e").exists()
