"""The foundation's CLI commands, run through Typer's test runner on tiny models."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from veracity.cli.main import app

runner = CliRunner()


def test_models_lists_aliases():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    for alias in ("smollm2", "gemma3-270m", "tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"):
        assert alias in r.output


def test_capture_command_writes_store_and_resumes(tmp_path):
    out = tmp_path / "cap"
    args = ["capture", "--model", "tiny-llama", "--dataset", "synthetic", "--limit", "24", "--sites",
            "heads,resid", "--out", str(out), "--shard-size", "10", "--batch-size", "4"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["n_rows"] == 24 and len(m["shards"]) == 3
    assert m["dataset"]["name"] == "synthetic" and m["model"]["name"] == "tiny-llama"
    assert set(m["labels"]) == {0, 1}
    # rerunning the same command reuses the finished store
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0, r2.output
    # a different config is refused with a one-line error, not a traceback
    r3 = runner.invoke(app, args[:-4] + ["--sites", "resid", "--shard-size", "10"])
    assert r3.exit_code == 2 and "different config" in r3.output


def test_capture_bad_inputs(tmp_path):
    r = runner.invoke(app, ["capture", "--model", "tiny-llama", "--dataset", "no-such-set", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "error" in r.output
    r = runner.invoke(app, ["capture", "--model", "/no/such/model", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such model" in r.output
    r = runner.invoke(app, ["capture", "--model", "tiny-llama", "--sites", "attn", "--limit", "4", "--out",
                            str(tmp_path / "y")])
    assert r.exit_code == 2 and "unknown site" in r.output


def test_demo_on_tiny_model(tmp_path):
    from veracity.demo import run_demo

    res = run_demo(out=tmp_path / "demo", model="tiny-llama", n=40, progress=False)
    assert len(res["separation"]) == 4
    assert all(0.0 <= r.accuracy <= 1.0 and 0.0 <= r.auroc <= 1.0 for r in res["separation"])
    assert (tmp_path / "demo" / "results.json").exists() and (tmp_path / "demo" / "separation.csv").exists()


def test_demo_mass_mean_matches_hand_computation():
    import torch

    from veracity.demo import auroc, mass_mean_separation

    X = torch.tensor([[2.0, 0.0], [3.0, 1.0], [0.0, 0.0], [-1.0, 1.0], [2.5, 0.0], [-0.5, 0.0]])
    y = torch.tensor([1, 1, 0, 0, 1, 0])
    train, test = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5])
    # d = mean([2,0],[3,1]) - mean([0,0],[-1,1]) = [3, 0]; threshold = 0.5*([2,1] @ d) = 3
    acc, auc = mass_mean_separation(X, y, train, test)
    assert acc == 1.0 and auc == 1.0
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
