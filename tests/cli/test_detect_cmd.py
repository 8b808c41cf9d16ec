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
