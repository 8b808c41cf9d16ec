"""The detect study on tiny-llama: questions whose aliases are set from the model's own greedy answers (so that
some answers are right and some wrong), the splits, the kept detector against the probe it came from, the run
contract (cache reuse), and one small run on smollm2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from veracity.experiments.detect import DetectConfig, DetectResult, linear_parts, run_detect, split_questions
from veracity.evaluate.detector import load_detector, score_answers


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory, tiny_llama):
    """16 questions; the even ones take a word of tiny-llama's own greedy answer as their alias (right), the odd
    ones an alias it never says (wrong)."""
    from veracity.capture.generation import answer_questions
    from veracity.data.qa import QAItem

    qs = [f"What is item number {i}?" for i in range(16)]
    items = [QAItem(f"q{i}", q, "zzqx", ("zzqx",), "file") for i, q in enumerate(qs)]
    greedy = answer_questions(tiny_llama, items, n_samples=0, max_new_tokens=6)
    rows = []
    for i, a in enumerate(greedy):
        words = [w for w in a.text.split() if any(c.isalnum() for c in w)]
        alias = words[0] if (i % 2 == 0 and words) else "zzqx-never"
        rows.append({"id": f"q{i}", "question": qs[i], "answer": alias})
    path = tmp_path_factory.mktemp("qa") / "qa.json"
    path.write_text(json.dumps({"questions": rows}))
    return path


SMALL = dict(model="tiny-llama", n_samples=2, max_new_tokens=6, n_boot=50, device="cpu",
             probes=["logistic", "mass-mean"], splits=[0.5, 0.15, 0.15, 0.2], ensemble_layers=2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, qa_file):
    out = tmp_path_factory.mktemp("detect") / "run"
    res = run_detect(DetectConfig(qa_file=str(qa_file), **SMALL), out, log=lambda m: None)
    return res, out


def test_split_questions_is_stratified_and_disjoint():
    y = np.array([1] * 20 + [0] * 10)
    sp = split_questions(y, [0.5, 0.2, 0.1, 0.2], seed=3)
    allq = np.concatenate(list(sp.values()))
    assert sorted(allq.tolist()) == list(range(30))
    assert [int(y[sp[s]].sum()) for s in sp] == [10, 4, 2, 4]  # each class cut by the same fractions
    assert [int((1 - y[sp[s]]).sum()) for s in sp] == [5, 2, 1, 2]
    assert {s: v.tolist() for s, v in split_questions(y, [0.5, 0.2, 0.1, 0.2], 3).items()} == \
        {s: v.tolist() for s, v in sp.items()}


@pytest.mark.parametrize("method", ["logistic", "mass-mean"])
def test_linear_parts_reproduce_the_probe(method):
    from veracity.probes.registry import make_probe

    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 3, 8, generator=g)
    y = (X[:, 0, 0] + 0.3 * torch.randn(40, generator=g) > 0).long()
    pr = make_probe(method).fit(X, y)
    mu, sc, w, b = linear_parts(pr, 3)
    mine = np.einsum("ngd,gd->ng", (X.double().numpy() - mu) / sc, w) + b
    np.testing.assert_allclose(mine, pr.decision_function(X).double().numpy(), rtol=1e-5, atol=1e-5)


def test_the_run_labels_splits_and_judges_every_row(tiny_run, qa_file):
    res, out = tiny_run
    rows = json.loads(qa_file.read_text())["questions"]
    answers = json.loads((out / "generations.json").read_text())["answers"]
    greedy = [a for a in answers if a["sample"] < 0]
    assert len(answers) == len(rows) * 3 and len(greedy) == len(rows)
    from veracity.data.qa import is_match

    for a in answers:  # labels follow the normalised-match rule against the file's alias
        alias = next(r["answer"] for r in rows if r["id"] == a["item_id"])
        assert a["correct"] == is_match(a["text"].split("\n")[0], [alias]) or a["correct"] == is_match(a["text"], [alias])
    assert res.counts["greedy_correct"] + res.counts["greedy_wrong"] == len(rows)
    assert res.counts["greedy_correct"] > 0 and res.counts["greedy_wrong"] > 0
    assert sum(s["questions"] for s in res.splits.values()) == len(rows)
    names = {r["name"] for r in res.detectors}
    assert {"mean log-prob", "min log-prob", "P(True)", "semantic entropy", "text only"} <= names
    assert any(r["kind"] == "probe" and r["method"] == "logistic" for r in res.detectors)
    for r in res.detectors:  # every row judged on the same test answers
        assert r["selective_accuracy_100"] == pytest.approx(res.splits["test"]["correct"] / res.splits["test"]["questions"])
    for f in ("results.json", "detectors.csv", "layers.csv", "risk_coverage.csv", "answers.csv", "roc.png",
              "risk_coverage.png", "reliability.png"):
        assert (out / f).is_file(), f


def test_the_kept_detector_scores_as_the_study_did(tiny_run, tiny_llama, qa_file):
    import csv

    res, out = tiny_run
    assert res.detector is not None
    det = load_detector(out)
    assert det.model_fingerprint == tiny_llama.fingerprint and det.name == res.detector["name"]
    from safetensors.torch import load_file

    F = load_file(str(out / "features.safetensors"))["features"]
    layers = res.grid and sorted({g["layer"] for g in res.grid})
    full = torch.zeros(F.shape[0], F.shape[1], tiny_llama.arch.n_layers, F.shape[3])
    full[:, :, layers] = F
    with open(out / "answers.csv") as f:
        study_scores = [float(r[det.name]) for r in csv.DictReader(f)]
    np.testing.assert_allclose(det.score_features(full), study_scores, rtol=1e-4, atol=1e-4)
    # scoring new answers: the same greedy answers, read during generation, get the same scores
    from veracity.data.qa import QAItem

    rows = json.loads(qa_file.read_text())["questions"][:4]
    items = [QAItem(r["id"], r["question"], r["answer"], (r["answer"],), "file") for r in rows]
    scored = score_answers(tiny_llama, det, items, max_new_tokens=6)
    greedy = [s for s, a in zip(study_scores, json.loads((out / "generations.json").read_text())["answers"])
              if a["sample"] < 0][:4]
    np.testing.assert_allclose([s.score for s in scored], greedy, rtol=1e-4, atol=1e-4)
    assert all(s.flagged == (s.score < det.threshold) for s in scored)


def test_a_detector_for_another_model_is_refused(tiny_run, tmp_path):
    from veracity.models import load
    from veracity.validation import BadInput

    det = load_detector(tiny_run[1] / "detector")
    other = load("tiny-qwen2", device="cpu")
    with pytest.raises(BadInput, match="fingerprint"):
        score_answers(other, det, [])
    saved = det.save(tmp_path / "kept")
    assert saved.name == "kept.json" and load_detector(tmp_path / "kept").threshold == det.threshold
    from veracity.outputs import OutputRefused

    with pytest.raises(OutputRefused, match="overwrite"):
        det.save(tmp_path / "kept")


def test_rerun_reuses_the_cached_generations(tiny_run, qa_file, tmp_path):
    import shutil

    res, out = tiny_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    (again / "results.json").unlink()
    logs = []
    res2 = run_detect(DetectConfig(qa_file=str(qa_file), **SMALL), again, log=logs.append)
    assert any("reusing" in m for m in logs)
    assert res2.headline() == res.headline()
    back = DetectResult.from_json(json.loads((again / "results.json").read_text()))
    assert back.headline()["n_correct"] == res.counts["greedy_correct"]


def test_smollm2_few_questions(smollm2, tmp_path):
    res = run_detect(DetectConfig(model="smollm2", tables=["continents", "capitals"], n_questions=16, n_samples=2,
                                  max_new_tokens=12, layers=[10, 20], positions=["pre", "answer_last"],
                                  probes=["logistic"], n_boot=50, device="cpu"), tmp_path / "run", log=lambda m: None)
    assert res.counts["greedy_correct"] + res.counts["greedy_wrong"] == 16
    assert res.counts["greedy_correct"] > 0  # smollm2 knows some continents and capitals
    assert {r["name"] for r in res.detectors} >= {"mean log-prob", "P(True)", "semantic entropy"}


def test_truthfulqa_source_is_judged_and_transfer_is_tested_both_ways(qa_file, tmp_path, data_dir):
    """TruthfulQA answers take the truth judge's label (its first line's score against 0.5), and transfer holds
    the probe cell and the text baseline fitted on each source and tested on each, AUROC by hand inside its interval."""
    from veracity.data.qa import first_line
    from veracity.evaluate.detection import auroc

    seen = {}

    def judge(qs, ans):  # a stand-in truth judge: right when the line has an even number of characters
        seen.update(zip(ans, qs))
        return [float(len(a) % 2 == 0) for a in ans]

    cfg = DetectConfig(qa_file=str(qa_file), data=["qa", "truthfulqa"], n_truthfulqa=12, data_dir=str(data_dir),
                       **SMALL)
    res = run_detect(cfg, tmp_path / "run", log=lambda m: None, truth_judge=judge)
    answers = json.loads((tmp_path / "run" / "generations.json").read_text())["answers"]
    tq = [a for a in answers if a["item_id"].startswith("truthfulqa-")]
    assert len(tq) == 12 * 3
    import csv

    with open(tmp_path / "run" / "answers.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["source"] == "truthfulqa":
            line = r["text"][slice(*first_line(r["text"]))]
            assert r["correct"] == str(len(line) % 2 == 0) and line in seen
            assert r["split"] in ("truthfulqa-train", "truthfulqa-test")
    g = [r for r in rows if r["sample"] == "-1"]
    assert res.sources["truthfulqa"]["questions"] == 12
    assert res.sources["truthfulqa"]["correct"] == sum(r["correct"] == "True" for r in g if r["source"] == "truthfulqa")
    assert res.counts["greedy_correct"] + res.counts["greedy_wrong"] == 16  # the study's own split: the QA file
    cells = {(r["detector"] == "text only", r["fitted_on"], r["tested_on"]) for r in res.transfer}
    assert {(True, a, b) for a in ("qa", "truthfulqa") for b in ("qa", "truthfulqa")} <= cells
    for r in res.transfer:
        assert r["n_test"] == r["correct"] + r["wrong"]
        if r["correct"] and r["wrong"]:
            assert r["detect_auroc_low"] <= r["detect_auroc"] <= r["detect_auroc_high"]
    # the text baseline fitted on TruthfulQA's train half, by hand, on the QA test split's greedy answers
    from veracity.evaluate.text_baseline import fit_text_baseline, text_baseline_scores

    tr = [r for r in rows if r["split"] == "truthfulqa-train"]
    te = [r for r in g if r["split"] == "test"]
    q = {a["item_id"]: a["question"] for a in answers}
    tb = fit_text_baseline([q[r["item_id"]] for r in tr], [r["text"] for r in tr], [r["correct"] == "True" for r in tr])
    cell = next(r for r in res.transfer if r["detector"] == "text only" and r["fitted_on"] == "truthfulqa"
                and r["tested_on"] == "qa")
    ys = [int(r["correct"] == "True") for r in te]
    if 0 < sum(ys) < len(ys):
        assert cell["detect_auroc"] == pytest.approx(
            auroc(text_baseline_scores(tb, [q[r["item_id"]] for r in te], [r["text"] for r in te]), ys))
    assert any("transfer" in t[0] for t in res.tables())


def test_selection_breaks_validation_ties_by_separation_not_grid_order():
    from veracity.experiments.detect import selection_key

    cells = [{"layer": 0, "validation_auroc": 1.0, "validation_separation": 2.0},
             {"layer": 9, "validation_auroc": 1.0, "validation_separation": 5.0},
             {"layer": 3, "validation_auroc": 0.9, "validation_separation": 9.0},
             {"layer": 4, "validation_auroc": math.nan, "validation_separation": math.nan}]
    assert max(cells, key=selection_key)["layer"] == 9
    assert max(cells[2:], key=selection_key)["layer"] == 3  # unjudged rows come last
