"""`veracity iti fit|bake|validate|sweep` end to end on tiny-llama and a few TruthfulQA questions."""

from __future__ import annotations

import json
import random
import re
import sqlite3

import numpy as np
import pytest
import torch

from veracity.data.boolq import load_boolq


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    return tmp_path_factory.mktemp("acts") / "store"


def common(data_dir, acts):
    return ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--acts", str(acts),
            "--limit", "12"]


def test_fit_and_bake(data_dir, acts, tmp_path, tiny_llama, cli):
    cli(["iti", "fit", *common(data_dir, acts), "--num-heads", "4", "--alpha", "5", "--out", str(tmp_path / "iv")])
    meta = json.loads((tmp_path / "iv.json").read_text())
    assert meta["k"] == 4 and meta["alpha"] == 5.0 and meta["provenance"]["direction"] == "com"
    out = cli(["iti", "bake", "--model", "tiny-llama", "--device", "cpu", "--intervention", str(tmp_path / "iv"),
                  "--out", str(tmp_path / "baked")])
    # the printed check is small, and the baked folder, loaded by plain transformers, gives the hooked
    # model's logits at every position
    assert float(re.search(r"max \|logit diff\|.*?: (\S+)", out).group(1)) < 1e-4
    from transformers import AutoModelForCausalLM

    from veracity.steer import Intervention, apply

    baked = AutoModelForCausalLM.from_pretrained(str(tmp_path / "baked"), dtype=torch.float32)
    ids = torch.tensor([tiny_llama.tokenizer("The capital of France is Paris")["input_ids"]])
    with torch.no_grad():
        with apply(tiny_llama, Intervention.load(tmp_path / "iv"), positions="all"):
            want = tiny_llama.model(input_ids=ids).logits
        plain = tiny_llama.model(input_ids=ids).logits
        got = baked(input_ids=ids).logits
    assert (got - want).abs().max() < 1e-4 and (plain - want).abs().max() > 1e-3  # the intervention acts


def test_validate_writes_driver_summary(data_dir, acts, tmp_path, cli):
    out = cli(["iti", "validate", *common(data_dir, acts), "--num-heads", "4", "--alpha", "5", "--folds", "2",
                  "--judge", "none", "--ce-texts", "3", "--out", str(tmp_path / "run")])
    assert "MC1" in out and "KL wrt Orig" in out
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["summary"]) >= {"mc1", "mc2", "ce_loss", "kl"}
    assert res["summary"]["kl"] > 0
    assert sum(f["n_questions"] for f in res["folds"]) == 12
    assert (tmp_path / "run" / "intervention_fold0.safetensors").exists()
    # alpha 0 is the plain model: KL exactly 0
    cli(["iti", "validate", *common(data_dir, acts), "--num-heads", "4", "--alpha", "0", "--folds", "2",
            "--judge", "none", "--ce-texts", "3", "--out", str(tmp_path / "base")])
    base = json.loads((tmp_path / "base" / "results.json").read_text())
    assert base["summary"]["kl"] == 0.0


def test_sweep_resumes(data_dir, acts, tmp_path, tiny_llama, cli):
    args = ["iti", "sweep", *common(data_dir, acts), "--alphas", "0,5", "--num-heads", "2,4", "--folds", "2",
            "--judge", "none", "--ce-texts", "2", "--side-effects", "boolq", "--side-effect-n", "boolq=4",
            "--out", str(tmp_path / "sw")]
    out = cli(args)
    db = sqlite3.connect(str(tmp_path / "sw" / "results.sqlite"))
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8  # 2 alphas x 2 K x 2 folds
    db.close()
    assert len(re.findall(r"alpha=0 K=\d+ fold=", out)) == 2  # baseline once per fold, shared by every K
    res = json.loads((tmp_path / "sw" / "results.json").read_text())
    assert res["metric"] == "mc2" and res["best"] is not None  # no judge: falls back to MC2
    # the side effect rides along on every grid row; alpha 0 is the plain model on the same 4 BoolQ items
    assert len({r["boolq_accuracy"] for r in res["grid"] if r["alpha"] == 0}) == 1
    # ... and equals the plain model's " Yes" vs " No" by whole forwards on the seeded (seed 0) sample of 4
    tok, model = tiny_llama.tokenizer, tiny_llama.model

    def logprob(ctx: str, cont: str) -> float:
        n, ids = len(tok(ctx)["input_ids"]), tok(ctx + cont)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        return float(sum(lp[t - 1, ids[t]] for t in range(n, len(ids))))

    bq = load_boolq(data_dir)
    right = []
    for b in (bq[i] for i in sorted(random.Random(0).sample(range(len(bq)), 4))):
        ctx = f"Q: {b.passage}\n\nQuestion: {b.question}?\nA:"
        right.append((logprob(ctx, " Yes") > logprob(ctx, " No")) == b.answer)
    base = next(r for r in res["grid"] if r["alpha"] == 0)
    assert base["boolq_accuracy"] == pytest.approx(np.mean(right))
    assert (tmp_path / "sw" / "heatmap_mc2.png").exists() and (tmp_path / "sw" / "heatmap_kl.png").exists()
    # the gain-against-cost chart's data: the plain model once, each (alpha 5, K) a point, per (gain, cost) plane
    import csv

    chart = list(csv.DictReader(open(tmp_path / "sw" / "gain_cost.csv")))
    planes = {(r["gain_metric"], r["cost_metric"]) for r in chart}
    assert ("mc2", "kl") in planes and ("mc2", "boolq_accuracy") in planes
    kl = [r for r in chart if (r["gain_metric"], r["cost_metric"]) == ("mc2", "kl")]
    assert [r["reference"] for r in kl] == ["plain model", "", ""] and kl[0]["pareto"] == "True"  # KL 0: nothing cheaper
    again = cli(args)
    assert "fold=" not in again  # nothing re-evaluated
    # other fixed settings into the same folder: refused, never mixed with the stored rows
    assert "other settings" in cli(args + ["--direction", "random"], code=2)
