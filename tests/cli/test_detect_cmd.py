"""`veracity detect` and `veracity detect-score` through the CLI on tiny-llama: the tables printed, the run
folder written, and the kept detector scoring new answers (refused for another model)."""

from __future__ import annotations

import json


def test_detect_then_score(cli, tmp_path):
    out = tmp_path / "run"
    text = cli(["detect", "--model", "tiny-llama", "--device", "cpu", "--tables", "continents", "--n-questions", "8",
                "--n-samples", "2", "--max-new-tokens", "4", "--layers", "0,1", "--positions", "pre,answer_last",
                "--probes", "logistic", "--n-boot", "20", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "detect" and "mean log-prob" in text and "greedy answers" in text
    assert res["counts"]["greedy_correct"] + res["counts"]["greedy_wrong"] == 8
    # a finished run is refused without --overwrite
    cli(["detect", "--model", "tiny-llama", "--device", "cpu", "--out", str(out)], code=2)


def test_detect_score_refuses_another_model(cli, tmp_path, tiny_llama):
    import numpy as np

    from veracity.evaluate.detector import Detector

    d = tiny_llama.arch.hidden_size
    Detector([0], ["answer_last"], np.ones((1, d)), np.zeros(1), np.zeros((1, d)), np.ones((1, d)), np.ones(1), 0.0,
             0.0, {"method": "platt", "a": 1.0, "b": 0.0}, tiny_llama.fingerprint, "t").save(tmp_path / "det")
    text = cli(["detect-score", "--model", "tiny-llama", "--device", "cpu", "--detector", str(tmp_path / "det"),
                "--n-questions", "2"])
    assert "detector scores" in text
    err = cli(["detect-score", "--model", "tiny-qwen2", "--device", "cpu", "--detector", str(tmp_path / "det"),
               "--n-questions", "2"], code=2)
    assert "fingerprint" in err


def test_detect_truthfulqa_needs_a_usable_judge(cli, tmp_path, data_dir):
    """--data qa,truthfulqa with --judge none, or a judge folder that holds none, stops before any model loads
    and writes no run folder; an unknown source or three sources are refused."""
    base = ["detect", "--model", "tiny-llama", "--device", "cpu", "--data", "qa,truthfulqa", "--data-dir",
            str(data_dir), "--n-truthfulqa", "4"]
    err = cli(base + ["--judge", "none", "--out", str(tmp_path / "a")], code=2)
    assert "truth judge" in err and not (tmp_path / "a" / "results.json").exists()
    err = cli(base + ["--judge", f"local:{tmp_path / 'no-judge'}", "--out", str(tmp_path / "b")], code=2)
    assert "judge" in err and not (tmp_path / "b" / "results.json").exists()
    cli(["detect", "--model", "tiny-llama", "--data", "qa,wiki", "--out", str(tmp_path / "c")], code=2)
    cli(["detect", "--model", "tiny-llama", "--data", "qa,truthfulqa,triviaqa", "--out", str(tmp_path / "d")], code=2)
