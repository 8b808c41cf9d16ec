"""veracity's `lm-eval` TruthfulQA MC protocol against the real lm-evaluation-harness.

The harness lives in its own venv (CI does not install it): point $VERACITY_LM_EVAL_PYTHON at that venv's
python to run the slow check (`-m slow`); without it the check skips. The full 817-question comparison is
`benchmarks/check_lm_eval.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "check_lm_eval.py"


def _harness_python() -> str:
    py = os.environ.get("VERACITY_LM_EVAL_PYTHON", "")
    if not py:
        pytest.skip("lm-evaluation-harness not configured: set VERACITY_LM_EVAL_PYTHON to the python of a venv "
                    "with lm-eval installed")
    if not os.access(py, os.X_OK):
        pytest.skip(f"VERACITY_LM_EVAL_PYTHON={py} is not an executable")
    r = subprocess.run([py, "-c", "import lm_eval"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"lm_eval is not importable with VERACITY_LM_EVAL_PYTHON={py}")
    return py


def test_check_script_says_when_the_harness_is_missing(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--harness-python", sys.executable, "--limit", "1",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    if r.returncode == 0:  # lm_eval installed in this very venv: nothing to check here
        pytest.skip("lm_eval is importable in the project venv")
    assert r.returncode == 2
    assert "lm_eval" in r.stderr and "not importable" in r.stderr


def test_check_script_says_when_the_harness_python_does_not_exist(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--harness-python", str(tmp_path / "no-python"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "not found" in r.stderr


@pytest.mark.slow
@pytest.mark.real
def test_lm_eval_protocol_matches_the_harness(tmp_path, data_dir):
    py = _harness_python()
    from veracity.models import list_aliases

    if not next(a for a in list_aliases() if a["alias"] == "smollm2")["offline"]:
        pytest.skip("the smollm2 model is not available offline")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", VERACITY_DATA=str(data_dir))
    r = subprocess.run([sys.executable, str(SCRIPT), "--harness-python", py, "--limit", "5",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=1800)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    rep = json.loads(r.stdout)
    assert rep["n_questions"] == 5
    assert rep["n_choices_missing_in_veracity"] == 0 and rep["n_contexts_differing"] == 0
    assert rep["n_choices_compared"] > 0
    assert rep["max_abs_loglik_diff"] <= 1e-3, rep["worst_choices"]
    assert rep["mc1_diff_points"] <= 0.2 and rep["mc2_diff_points"] <= 0.2
    assert rep["pass"] and r.returncode == 0
