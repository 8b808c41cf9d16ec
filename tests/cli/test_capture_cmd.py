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


# the demo is tested in tests/experiments/test_demo.py
