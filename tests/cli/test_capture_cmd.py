"""The foundation's CLI commands, run through Typer's test runner on tiny models."""

from __future__ import annotations

import json


def test_models_lists_aliases(cli):
    text = cli(["models"])
    for alias in ("smollm2", "gemma3-270m", "tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"):
        assert alias in text


def test_capture_command_writes_store_and_resumes(tmp_path, cli):
    out = tmp_path / "cap"
    args = ["capture", "--model", "tiny-llama", "--dataset", "synthetic", "--limit", "24", "--sites",
            "heads,resid", "--out", str(out), "--shard-size", "10", "--batch-size", "4"]
    cli(args)
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] and m["n_rows"] == 24 and len(m["shards"]) == 3
    assert m["dataset"]["name"] == "synthetic" and m["model"]["name"] == "tiny-llama"
    assert set(m["labels"]) == {0, 1}
    # rerunning the same command reuses the finished store
    cli(args)
    # a different config is refused with a one-line error, not a traceback
    assert "different config" in cli(args[:-4] + ["--sites", "resid", "--shard-size", "10"], code=2)


def test_capture_bad_inputs(tmp_path, cli):
    assert "error" in cli(["capture", "--model", "tiny-llama", "--dataset", "no-such-set", "--out", str(tmp_path / "x")],
                          code=2)
    assert "no such model" in cli(["capture", "--model", "/no/such/model", "--out", str(tmp_path / "x")], code=2)
    assert "unknown site" in cli(["capture", "--model", "tiny-llama", "--sites", "attn", "--limit", "4", "--out",
                                  str(tmp_path / "y")], code=2)


# the demo is tested in tests/experiments/test_demo.py
