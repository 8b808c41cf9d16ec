"""CAA / LAT as compare-interventions methods: fitted on a fold's training questions only, applied by hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from veracity.data import load_truthfulqa
from veracity.evaluate.truthfulqa import build_mc_question, make_requests, score_requests
from veracity.methods.prepare import MethodSettings, MethodSpec, parse_method, prepare_method
from veracity.steer.residual import ResidualSteer
from veracity.steer.residual_tqa import fit_residual, load_residual_data


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def test_parse_residual_methods():
    assert parse_method("caa") == MethodSpec("caa", steer="caa")
    assert parse_method("few-shot+lat") == MethodSpec("few-shot+lat", prompt="few-shot", steer="lat")
    assert parse_method("iti") == MethodSpec("iti", steer="iti")
    for bad in ("iti+caa", "caa+lat", "caa+caa"):
        with pytest.raises(ValueError, match="steering"):
            parse_method(bad)


def test_prepare_caa_and_lat_on_a_fold(tiny_llama, data_dir, tmp_path):
    items = load_truthfulqa(data_dir)[:8]
    train, test = items[:5], [it.index for it in items[5:]]
    settings = MethodSettings(residual_layers=(1, 2), residual_alpha=2.0)
    caa = prepare_method(parse_method("caa"), tiny_llama, train, test, settings, data_dir=data_dir, limit=8,
                         acts=tmp_path / "orig")
    assert (tmp_path / "orig-resid").is_dir()  # the resid store sits beside the ITI store, never inside it
    st = caa.intervention
    assert isinstance(st, ResidualSteer) and st.method == "caa" and st.layers == [1, 2] and st.alpha == 2.0
    assert st.provenance["train_questions"] == sorted(it.index for it in train)
    # independent: class means of the training questions' rows, read straight from the store
    data = load_residual_data(tiny_llama, data_dir=data_dir, limit=8, acts=tmp_path / "orig-resid")
    rows = np.isin(data.question, [it.index for it in train])
    assert 0 < rows.sum() < len(rows)
    X, y = data.X[torch.as_tensor(rows)].float(), data.labels[torch.as_tensor(rows)].bool()
    for i, l in enumerate([1, 2]):
        torch.testing.assert_close(st.vectors[i], X[y, l].mean(0) - X[~y, l].mean(0), atol=1e-5, rtol=1e-5)
    lat = prepare_method(parse_method("lat"), tiny_llama, train, test, settings, data_dir=data_dir, limit=8,
                         acts=tmp_path / "orig")
    assert lat.intervention.method == "lat" and lat.iti_seconds > 0
    # the LAT sign: true answers project above false ones on the training pairs
    u = lat.intervention.vectors[0]
    assert float((X[y, 1] @ u).mean()) > float((X[~y, 1] @ u).mean())
    # hooks change the scores and leave nothing behind
    q = build_mc_question(items[6], "truthfulqa", "none")
    reqs = make_requests(tiny_llama.tokenizer, "Q: x\nA:", q.choices[:2], "truthfulqa")
    base = score_requests(tiny_llama.model, reqs)
    assert score_requests(tiny_llama.model, reqs, intervention=caa.factory()) != pytest.approx(base, abs=1e-6)
    assert score_requests(tiny_llama.model, reqs) == pytest.approx(base, abs=0)


def test_fit_residual_default_layer_and_errors(tiny_llama, data_dir, tmp_path):
    data = load_residual_data(tiny_llama, data_dir=data_dir, limit=4, acts=tmp_path / "r")
    qs = sorted(set(data.question.tolist()))
    st = fit_residual(data, qs[:3], "caa")
    assert st.layers == [tiny_llama.arch.n_layers // 2]
    with pytest.raises(ValueError, match="residual method"):
        fit_residual(data, qs, "iti")
    with pytest.raises(ValueError, match="no rows"):
        fit_residual(data, [10_000], "caa")
    with pytest.raises(ValueError, match="out of range"):
        fit_residual(data, qs, "caa", layers=[tiny_llama.arch.n_layers])
    assert fit_residual(data, qs, "lat", layers=[-1]).layers == [tiny_llama.arch.n_layers - 1]


def test_compare_interventions_runs_caa_and_lat(data_dir, tmp_path, cli):
    out = tmp_path / "cmp"
    args = ["compare-interventions", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
            "--acts", str(tmp_path / "acts"), "--limit", "6", "--folds", "2", "--judge", "none", "--ce-texts", "2",
            "--num-heads", "4", "--alpha", "5", "--residual-layers", "1,-1", "--residual-alpha", "3",
            "--methods", "baseline,iti,caa,lat", "--out", str(out)]
    cli(args)
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["methods"]}
    assert set(rows) == {"baseline", "iti", "caa", "lat"}
    assert rows["caa"]["kl"] > 0 and rows["lat"]["kl"] > 0 and rows["caa"]["iti_fit_s"] > 0
    folds = {(f["method"], f["fold"]): f["n_questions"] for f in json.loads((out / "results.json").read_text())["folds"]}
    assert all(folds[(m, f)] == folds[("baseline", f)] for m, f in folds)  # the same folds as ITI
    cfg = json.loads((out / "results.json").read_text())["config"]["settings"]
    assert cfg["residual_layers"] == [1, -1] and cfg["residual_alpha"] == 3.0


def test_compare_interventions_rejects_bad_residual_normalize(tmp_path, cli):
    assert "--residual-normalize" in cli(["compare-interventions", "--model", "tiny-llama", "--methods", "caa",
                                          "--residual-normalize", "l2", "--out", str(tmp_path / "x")], code=2)
    assert not (tmp_path / "x").exists()
