"""The sweep's executors: `veracity iti sweep --executor ray` on a local Ray instance records the local
executor's results and resumes like it; without Ray the executor says how to install it."""

from __future__ import annotations

import json
import re
import sqlite3
import sys

import numpy as np
import pytest

from veracity.experiments.executors import RayExecutor
from veracity.steer.iti import ITIConfig, load_iti_data
from veracity.experiments.iti_sweep import run_sweep
from veracity.methods.fold import FoldEvalConfig

try:
    import ray
except ImportError:  # the optional extra: pip install 'veracity[ray]'
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'veracity[ray]')")
LIMIT = 8
ALPHAS, KS, FOLDS = [0.0, 5.0], [2, 4], 2


def rows(folder) -> dict:
    db = sqlite3.connect(str(folder / "results.sqlite"))
    out = {(json.loads(c)["alpha"], json.loads(c)["k"], f): m
           for c, f, m in db.execute("SELECT cell, fold, metrics FROM results")}
    db.close()
    return out


def same(m1: str, m2: str) -> bool:
    a, b = json.loads(m1), json.loads(m2)
    return a.keys() == b.keys() and all(np.isclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)


@pytest.fixture(scope="module")
def setup(data_dir, tiny_llama, tmp_path_factory):
    """The same sweep through the local executor, on what the CLI builds from the same options."""
    from veracity.data import load_truthfulqa

    tmp = tmp_path_factory.mktemp("executors")
    data = load_iti_data(tiny_llama, data_dir=data_dir, limit=LIMIT, acts=tmp / "acts", progress=False).first_questions(LIMIT)
    items = load_truthfulqa(data_dir)[:LIMIT]
    ecfg = FoldEvalConfig(judge="none", ce_texts=2, data_dir=str(data_dir))
    iti = ITIConfig(max_k=max(KS))
    run_sweep(tiny_llama, data, items, iti, ALPHAS, KS, FOLDS, tmp / "local", ecfg=ecfg, log=lambda m: None)
    return {"tmp": tmp, "local": rows(tmp / "local")}


@pytest.fixture(scope="module")
def ray_instance():
    if ray is None:
        pytest.skip("ray is not installed (pip install 'veracity[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20)
    yield ray
    ray.shutdown()


@needs_ray
def test_cli_ray_sweep_matches_local_and_resumes(setup, data_dir, ray_instance, cli):
    """alpha 0, 5 x K 2, 4 x two folds on two Ray workers: the store holds the local executor's results;
    a rerun evaluates nothing (and starts no worker)."""
    out = setup["tmp"] / "ray"
    args = ["iti", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
            "--acts", str(setup["tmp"] / "acts"), "--limit", str(LIMIT), "--alphas", ",".join(f"{a:g}" for a in ALPHAS),
            "--num-heads", ",".join(map(str, KS)), "--folds", str(FOLDS), "--judge", "none", "--ce-texts", "2",
            "--side-effects", "none", "--executor", "ray", "--ray-workers", "2", "--ray-gpus-per-worker", "0", "--out", str(out)]
    text = cli(args)
    assert "on 2 workers" in text
    done = sorted(re.findall(r"alpha=(\S+) K=(\d+) fold=(\d)", text))
    # alpha 0 is the plain model: evaluated once per fold, recorded for both K
    assert [d for d in done if d[0] == "0"] in ([("0", "2", "0"), ("0", "2", "1")], [("0", "4", "0"), ("0", "4", "1")])
    assert [d for d in done if d[0] == "5"] == [("5", k, f) for k in ("2", "4") for f in ("0", "1")]
    got, want = rows(out), setup["local"]
    assert len(want) == len(ALPHAS) * len(KS) * FOLDS and got.keys() == want.keys()
    assert all(same(got[key], want[key]) for key in want), (got, want)
    assert (out / "fold0_fit.json").exists() and (out / "fold1_fit.safetensors").exists()
    assert (out / "results.json").exists() and (out / "heatmap_mc2.png").exists()
    assert ray.is_initialized()  # an instance it did not start is left running
    again = cli(args)
    assert "fold=" not in again and "workers" not in again


def test_without_ray_says_how_to_install(monkeypatch, tmp_path, cli):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RuntimeError, match=re.escape("pip install 'veracity[ray]'")):
        RayExecutor("tiny-llama")
    assert "veracity[ray]" in cli(["iti", "sweep", "--model", "tiny-llama", "--executor", "ray",
                                   "--out", str(tmp_path / "r")], code=2)
    assert not (tmp_path / "r").exists()  # refused before anything was loaded or written


def test_unknown_executor_refused(tmp_path, cli):
    assert "--executor must be one of local, ray, got 'dask'" in cli(["iti", "sweep", "--model", "tiny-llama",
                                                                      "--executor", "dask", "--out", str(tmp_path / "r")],
                                                                     code=2)
