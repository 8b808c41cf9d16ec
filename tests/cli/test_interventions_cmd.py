"""`veracity compare-interventions` and `veracity sycophancy` end to end on tiny-llama and a few questions."""

from __future__ import annotations

import csv
import json
import sqlite3

import numpy as np
import pytest


@pytest.fixture(scope="module")
def acts(tmp_path_factory):
    return tmp_path_factory.mktemp("acts") / "store"


def test_compare_resumes_and_shares_folds(data_dir, acts, tmp_path, cli):
    out = tmp_path / "cmp"
    args = ["compare-interventions", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
            "--acts", str(acts), "--limit", "8", "--folds", "2", "--judge", "none", "--ce-texts", "2",
            "--sft-steps", "2", "--dpo-steps", "2", "--train-batch-size", "4", "--pairs-per-question", "1",
            "--num-heads", "4", "--alpha", "5", "--side-effects", "none", "--out", str(out)]
    text = cli(args + ["--methods", "baseline,few-shot,dpo,dpo+iti"])
    assert "interventions on tiny-llama" in text
    header = (out / "comparison.csv").read_text().splitlines()[0].split(",")
    assert {"method", "mc1", "mc2", "ce_loss", "kl", "train_s", "infer_s", "extra_infer_s"} <= set(header)
    res = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in res["methods"]}
    assert set(rows) == {"baseline", "few-shot", "dpo", "dpo+iti"}
    assert rows["baseline"]["kl"] == 0.0 and rows["few-shot"]["kl"] == 0.0  # a prompt does not change the model
    assert rows["baseline"]["ce_loss"] == rows["few-shot"]["ce_loss"]
    assert rows["dpo"]["kl"] > 0 and rows["dpo+iti"]["kl"] > 0 and rows["dpo"]["train_s"] > 0
    assert rows["dpo+iti"]["iti_fit_s"] > 0 and rows["few-shot"]["prompt_tokens"] > rows["baseline"]["prompt_tokens"]
    assert rows["baseline"]["extra_infer_s"] == 0.0
    # the same held-out questions for every method, together all 8
    folds = {(f["method"], f["fold"]): f["n_questions"] for f in res["folds"]}
    assert folds[("baseline", 0)] + folds[("baseline", 1)] == 8
    assert all(folds[(m, f)] == folds[("baseline", f)] for m, f in folds)
    assert (out / "comparison.png").exists() and (out / "per_question.csv").exists()
    # per-item steerability: the share of questions whose MC2 rose (fell) against the baseline's on the same fold
    pq = list(csv.DictReader(open(out / "per_question.csv")))
    base = {(q["fold"], q["index"]): float(q["mc2"]) for q in pq if q["method"] == "baseline"}
    moves = [float(q["mc2"]) - base[(q["fold"], q["index"])] for q in pq if q["method"] == "dpo"]
    assert rows["dpo"]["steer_items"] == len(moves) == 8 and "item_steerable" not in rows["baseline"]
    assert rows["dpo"]["item_steerable"] == pytest.approx(sum(m > 0 for m in moves) / 8)
    assert rows["dpo"]["anti_steerable"] == pytest.approx(sum(m < 0 for m in moves) / 8)
    # the gain-against-cost chart's data: the baseline the plain model, few-shot the prompting reference
    chart = list(csv.DictReader(open(out / "gain_cost.csv")))
    refs = {r["label"]: r["reference"] for r in chart}
    assert refs["baseline"] == "plain model" and refs["few-shot"] == "prompting" and refs["dpo"] == ""
    assert {r["cost_metric"] for r in chart} == {"ce_loss", "kl"}
    db = sqlite3.connect(str(out / "results.sqlite"))
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 8
    db.close()
    # a rerun with one more method evaluates only that method
    text = cli(args + ["--methods", "baseline,few-shot,dpo,dpo+iti,iti"])
    assert "iti fold=0" in text and "baseline fold=0" not in text and "dpo fold=0" not in text
    assert len(json.loads((out / "results.json").read_text())["methods"]) == 5
    # other settings in the same folder are refused
    assert "other settings" in cli([a if a != "5" else "7" for a in args] + ["--methods", "baseline"], code=2)


def test_compare_rejects_bad_method(tmp_path, cli):
    assert "magic" in cli(["compare-interventions", "--methods", "baseline,magic", "--out", str(tmp_path / "x")], code=2)


def test_sycophancy_table(data_dir, acts, tmp_path, cli):
    out = tmp_path / "syc"
    text = cli(["sycophancy", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
                   "--acts", str(acts), "--limit", "8", "--num-heads", "4", "--alpha", "5", "--out", str(out)])
    assert "sycophancy on tiny-llama" in text
    res = json.loads((out / "results.json").read_text())
    rows = {(r["dataset"], r["condition"]): r for r in res["rows"]}
    assert set(rows) == {(d, c) for d in ("truthfulqa", "true-false")
                         for c in ("plain", "opinion", "plain+iti", "opinion+iti")}
    # the table's rates, recomputed from the run's own per-item choices (per_item.csv)
    with open(out / "per_item.csv", newline="") as f:
        items: dict = {}
        for it in csv.DictReader(f):
            items.setdefault((it["dataset"], it["condition"]), {})[it["index"]] = it
    for (d, c), r in rows.items():
        recs = items[(d, c)]
        assert r["n"] == len(recs) == 4  # the test half of 8
        assert r["mc_acc"] == pytest.approx(np.mean([int(it["choice_true"]) for it in recs.values()]))
        assert 0 <= r["probe_acc"] <= 1  # probe probabilities are not written per item
        if c == "plain":
            assert "flip_rate" not in r
        else:  # share of items whose choice differs from the same item's plain choice
            plain = items[(d, "plain")]
            assert r["flip_rate"] == pytest.approx(np.mean([it["choice"] != plain[i]["choice"]
                                                            for i, it in recs.items()]))
        if c.startswith("opinion"):  # share of items that picked the suggested (wrong) answer
            assert r["to_opinion"] == pytest.approx(np.mean([it["choice"] == it["opinion_choice"]
                                                             for it in recs.values()]))
    assert 0 <= rows[("truthfulqa", "opinion")]["probe_p_opinion"] <= 1
    # resume: an interrupted run (no results.json, one condition missing) recomputes only that one
    prog = json.loads((out / "progress.json").read_text())
    assert len(prog["done"]) == 8
    del prog["done"]["true-false/opinion+iti"]
    (out / "progress.json").write_text(json.dumps(prog))
    (out / "results.json").unlink()
    args = ["sycophancy", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
            "--acts", str(acts), "--limit", "8", "--num-heads", "4", "--alpha", "5", "--out", str(out)]
    text = cli(args)
    assert text.count("done in an earlier run") == 7 and "true-false opinion+iti:" in text
    again = {(r["dataset"], r["condition"]): r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert again == rows  # deterministic: the recomputed condition equals the first run's
    # a checkpoint of other settings is refused, not mixed in
    (out / "results.json").unlink()
    assert "another configuration" in cli([a if a != "5" else "7" for a in args], code=2)
