"""`veracity probe` and `veracity ccs` end to end on the tiny random llama (fast, offline)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from veracity.cli.main import app


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, tiny_llama):
    from veracity.capture import capture

    words = ["cat", "dog", "fish", "bird", "cow", "ant"]
    texts, labels, groups = [], [], []
    for i in range(120):
        topic = ["animals", "things", "places"][i % 3]
        lab = (i // 3) % 2
        texts.append(f"{topic}: the {words[i % 6]} is {'true' if lab else 'false'} {i}")
        labels.append(lab)
        groups.append(topic)
    out = tmp_path_factory.mktemp("cap") / "store"
    capture(tiny_llama, texts, "resid,heads", labels=labels, groups=groups, out=out, progress=False,
            dtype=torch.float32)
    return out


def test_probe_command_loto_writes_tables_and_figures(tiny_store, tmp_path):
    out = tmp_path / "probe1"
    r = CliRunner().invoke(app, ["probe", "--acts", str(tiny_store), "--site", "resid", "--layers", "0,-1",
                                 "--methods", "logistic,mass-mean,mlp-tiny", "--split", "leave-one-topic-out",
                                 "--seeds", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "average accuracy" in r.output and "maximum accuracy" in r.output
    res = json.loads((out / "results.json").read_text())
    cells = res["experiment"]["cells"]
    assert {c["method"] for c in cells} == {"logistic", "mass-mean", "mlp-tiny"} and len(cells) == 6
    assert all(0.0 <= c["mean"] <= 1.0 for c in cells)
    for f in ("scores.csv", "summary.csv", "accuracy_vs_layer.png", "cosine_heatmap.png", "config.json"):
        assert (out / f).exists(), f
    # rerunning into a finished folder is refused without --overwrite
    r2 = CliRunner().invoke(app, ["probe", "--acts", str(tiny_store), "--layers", "-1", "--methods", "logistic",
                                  "--out", str(out)])
    assert r2.exit_code != 0


def test_probe_command_heads_matrix(tiny_store, tiny_llama, tmp_path):
    out = tmp_path / "heads"
    r = CliRunner().invoke(app, ["probe", "--acts", str(tiny_store), "--heads", "--seeds", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    acc = res["accuracy_mean"]
    assert len(acc) == tiny_llama.arch.n_layers and len(acc[0]) == tiny_llama.arch.n_heads
    assert (out / "head_accuracy.png").exists() and (out / "head_accuracy.csv").exists()


def test_ccs_command_captures_pairs_and_prints_baselines(tmp_path, data_dir):
    out = tmp_path / "ccs"
    r = CliRunner().invoke(app, ["ccs", "--model", "tiny-llama", "--dataset", "boolq", "--limit", "16", "--layers", "all", "--no-zero-shot",
                                 "--epochs", "20", "--n-restarts", "3", "--data-dir", str(data_dir), "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    layers = res["ccs"]["layers"]
    assert len(layers) >= 2
    for row in layers:
        assert row["ccs_accuracy_either_sign"] >= row["ccs_accuracy"] - 1e-9
        assert 0 <= row["logistic_accuracy"] <= 1 and 0 <= row["random_accuracy"] <= 1
    assert res["ccs"]["zero_shot"] is None
    assert (out / "acts" / "manifest.json").exists()
    # the store is reused with --acts
    r2 = CliRunner().invoke(app, ["ccs", "--model", "tiny-llama", "--dataset", "boolq", "--limit", "16", "--epochs", "10",
                                  "--n-restarts", "2", "--acts", str(out / "acts"),
                                  "--data-dir", str(data_dir), "--out", str(tmp_path / "ccs2")])
    assert r2.exit_code == 0, r2.output
    res2 = json.loads((tmp_path / "ccs2" / "results.json").read_text())
    assert 0.0 <= res2["ccs"]["zero_shot"]["accuracy"] <= 1.0
