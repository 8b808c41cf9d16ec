"""benchmarks/device_check.py keeps working without a GPU: every step on a tiny model on the CPU, one JSON
with sane throughputs and parity figures within their tolerances."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from veracity.models.precision import relative_tolerance

REPO = Path(__file__).resolve().parents[1]


def _device_check():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "benchmarks" / "device_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_device_check_tiny_cpu(data_dir, tmp_path, capsys):
    dc = _device_check()
    out = tmp_path / "dc.json"
    report = dc.main(["--tiny", "--device", "cpu", "--models", "tiny-llama", "--data-dir", str(data_dir),
                      "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["ok"] is True and report["ok"] is True
    assert printed["device"] == "cpu" and printed["dtype"] == "bfloat16" and printed["tiny"] is True
    assert printed["steps"] == list(dc.STEPS)
    m = printed["models"]["tiny-llama"]
    tol = relative_tolerance(torch.bfloat16, 4)
    assert m["relative_tolerance"] == pytest.approx(tol)

    cap = m["capture"]
    assert cap["rows"] == 24 and cap["rows_per_s"] > 0 and cap["peak_gib"] is None  # no GPU memory on CPU
    assert 0 < cap["rel_err_max"] <= tol and cap["store_dtype"] == "bfloat16"  # rounding, but not zero
    assert m["probes"]["coef_dtype"] == "torch.float32" and m["probes"]["mean_direction_cosine"] > 0.99
    for protocol in ("lm-eval", "truthfulqa"):
        mc = m["mc"][protocol]
        assert mc["questions"] == 4 and mc["requests"] > 4 and mc["requests_per_s"] > 0
        assert 0 <= mc["mc1"] <= 1 and 0 <= mc["mc2"] <= 1 and mc["mc2_diff_points"] <= 1.0
        assert 0 < mc["max_abs_score_diff_nats"] < 1.0
    lm = m["lm"]
    assert lm["ce_diff"] < 0.01 and 0 <= lm["kl_float32_to_half"] < 1e-3
    iti = m["iti_validate"]
    assert iti["questions"] == 8 and iti["questions_per_s"] > 0 and all(math.isfinite(iti[k]) for k in ("mc2", "kl"))
    assert m["bake"]["baked_dtype"] == "bfloat16" and m["bake"]["rel_err_logits"] <= tol
    assert m["residual"]["rel_err_logits"] <= tol and m["residual"]["hook_shift_rel"] > 10 * tol  # the steer acts
    sp = m["speculative"]
    assert sp["tokens_per_s"] > 0 and sp["assisted_tokens_per_s"] > 0 and sp["prompts"] == 4
    assert sp["identical_to_plain_greedy"] + len(sp["divergences"]) == 4
    assert all(d["near_tie"] for d in sp["divergences"])


def test_device_check_rejects_bad_steps():
    dc = _device_check()
    with pytest.raises(SystemExit):
        dc.parse_args(["--steps", "capture,warp"])
    with pytest.raises(SystemExit):
        dc.parse_args(["--batch-size", "zero"])
    a = dc.parse_args(["--device", "cpu"])
    assert a.tiny and a.models == list(dc.TINY) and a.n_mc == 4
    a = dc.parse_args(["--device", "cpu", "--models", "smollm2", "--n-mc", "100"])
    assert not a.tiny and a.n_mc == 100 and a.n_iti == 200
