"""ITI fitted on one TruthfulQA revision and evaluated on the other: questions matched by text, the
removed ones reported and left out, the revisions recorded."""

from __future__ import annotations

import json

import pytest

from veracity.data.truthfulqa import cross_revision_items, load_truthfulqa


def test_cross_revision_items(data_dir):
    old, new = load_truthfulqa(data_dir), load_truthfulqa(data_dir, "2025")
    items, rep = cross_revision_items(old[:12], new)
    assert [it.index for it in items] == [i for i in range(12) if i != 9]  # question 9 was removed in 2025
    assert rep["removed"] == [{"index": 9, "question": old[9].question}] and rep["matched"] == 11
    assert all(it.revision == "2025" and it.question.strip() == old[it.index].question.strip() for it in items)
    assert items[0].mc1_choices == new[0].mc1_choices  # the 2025 targets, under the 2021 index


def test_iti_validate_fit_2021_eval_2025(data_dir, tmp_path, cli):
    common = ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--limit", "12",
              "--num-heads", "2", "--alpha", "5", "--folds", "2", "--judge", "none", "--ce-texts", "0"]
    out = cli(["iti", "validate", *common, "--acts", str(tmp_path / "acts21"), "--eval-revision", "2025",
               "--out", str(tmp_path / "a")])
    assert "11 questions matched" in out
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["revision"] == "2021" and res["eval_revision"] == "2025"
    assert [r["index"] for r in res["cross_revision"]["removed"]] == [9]
    assert sum(f["n_questions"] for f in res["folds"]) == 11
    assert 9 not in {q["index"] for q in res["per_question"]}
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["revision"] == "2021" and cfg["eval_revision"] == "2025"
    out = cli(["iti", "validate", *common, "--acts", str(tmp_path / "acts25"), "--revision", "2025",
               "--eval-revision", "2021", "--out", str(tmp_path / "b")])
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["config"]["data"]["dataset"].startswith("truthfulqa-2025-iti-mc2") and res["config"]["data"]["revision"] == "2025"
    assert res["revision"] == "2025" and res["eval_revision"] == "2021"


def test_iti_validate_bad_revision(data_dir, tmp_path, cli):
    assert "--eval-revision" in cli(["iti", "validate", "--model", "tiny-llama", "--eval-revision", "2024", "--out",
                                     str(tmp_path / "x"), "--data-dir", str(data_dir)], code=2)
    assert not (tmp_path / "x").exists()
    assert "2021" in cli(["iti", "validate", "--model", "tiny-llama", "--revision", "2025", "--sigma-from",
                          "original", "--out", str(tmp_path / "y"), "--data-dir", str(data_dir)], code=2)


def test_iti_sweep_fit_2021_eval_2025(data_dir, tmp_path, cli):
    cli(["iti", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--limit", "12",
         "--num-heads", "2", "--alphas", "0,5", "--folds", "2", "--judge", "none", "--ce-texts", "0",
         "--side-effects", "none", "--acts", str(tmp_path / "acts"), "--eval-revision", "2025", "--out", str(tmp_path / "s")])
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["eval_revision"] == "2025" and [r["index"] for r in res["cross_revision"]["removed"]] == [9]
    assert json.loads((tmp_path / "s" / "config.json").read_text())["eval_revision"] == "2025"


def test_compare_interventions_fit_2021_eval_2025(data_dir, tmp_path, cli, tiny_llama):
    """Every steering method (and a prompt) fitted on 2021 rows, scored on the 2025 versions of the
    held-out questions; question 9 (removed in 2025) is reported and not scored."""
    out = cli(["compare-interventions", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
               "--limit", "12", "--folds", "2", "--judge", "none", "--ce-texts", "0", "--num-heads", "2",
               "--alpha", "5", "--methods", "baseline,iti,caa,lat", "--side-effects", "none", "--acts", str(tmp_path / "acts"),
               "--eval-revision", "2025", "--out", str(tmp_path / "c")])
    assert "11 questions matched" in out and "scored on 2025" in out
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["schema_version"] == 1 and res["revision"] == "2021" and res["eval_revision"] == "2025"
    assert [r["index"] for r in res["cross_revision"]["removed"]] == [9] and res["n_questions"] == 11
    for m in ("baseline", "iti", "caa", "lat"):
        assert sum(f["n_questions"] for f in res["folds"] if f["method"] == m) == 11
    import csv

    rows = list(csv.DictReader(open(tmp_path / "c" / "per_question.csv")))
    assert "9" not in {r["index"] for r in rows} and len(rows) == 4 * 11
    # the 2025 MC targets are the ones scored: the baseline's per-question MC2 equals a direct scoring of
    # the 2025 items (matched by text), question by question
    from veracity.data.truthfulqa import cross_revision_items, load_truthfulqa
    from veracity.experiments.interventions import CompareRun
    from veracity.methods.prepare import PreparedMethod, parse_method
    from veracity.methods.scoring import score_mc_prompted

    got = CompareRun.from_json(res)
    assert got.eval_revision == "2025" and got.summary["baseline"]["mc2"] == res["summary"]["baseline"]["mc2"]
    items, _ = cross_revision_items(load_truthfulqa(data_dir)[:12], load_truthfulqa(data_dir, "2025"))
    direct, _ = score_mc_prompted(PreparedMethod(parse_method("baseline"), tiny_llama), items)
    base = {int(r["index"]): float(r["mc2"]) for r in rows if r["method"] == "baseline"}
    assert base == pytest.approx({r.index: r.mc2 for r in direct}, abs=1e-6)


def test_compare_interventions_fit_2025(data_dir, tmp_path, cli):
    cli(["compare-interventions", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
         "--limit", "10", "--folds", "2", "--judge", "none", "--ce-texts", "0", "--methods", "baseline,caa",
         "--side-effects", "none",
         "--revision", "2025", "--out", str(tmp_path / "c")])
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    assert res["revision"] == res["eval_revision"] == "2025" and res["cross_revision"] is None
    assert "--revision" in cli(["compare-interventions", "--model", "tiny-llama", "--revision", "2024",
                                "--out", str(tmp_path / "x"), "--data-dir", str(data_dir)], code=2)
    assert not (tmp_path / "x").exists()


def test_iti_validate_resumes_an_interrupted_run(data_dir, tmp_path, interrupt_fold):
    """Interrupted during fold 1: the rerun into the same folder evaluates fold 1 only and writes the same
    results.json as an uninterrupted run."""
    from veracity.experiments import iti_validate as iv
    from veracity.runs import RunExists

    def cfg(**kw):
        return iv.ValidateConfig(model="tiny-llama", device="cpu", data_dir=str(data_dir), limit=12, num_heads=2,
                                 alpha=5.0, folds=2, judge="none", ce_texts=0, acts=str(tmp_path / "acts"), **kw)

    iv.run_validate(cfg(), tmp_path / "whole", log=lambda m: None)
    calls = interrupt_fold(iv, "evaluate_intervention")
    with pytest.raises(KeyboardInterrupt):
        iv.run_validate(cfg(), tmp_path / "cut", log=lambda m: None)
    assert not (tmp_path / "cut" / "results.json").exists()
    iv.run_validate(cfg(), tmp_path / "cut", log=lambda m: None)
    assert calls == [0, 0, 1, 1, 1]  # fold 0 (ITI, baseline) once, fold 1 interrupted, then fold 1 (ITI, baseline)
    assert "fold 0: done in an earlier run" in (tmp_path / "cut" / "log.txt").read_text()
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((tmp_path / "cut" / "results.json").read_text()) == whole
    (tmp_path / "cut" / "results.json").unlink()
    with pytest.raises(RunExists, match="another configuration"):
        iv.run_validate(cfg(binary=True), tmp_path / "cut", log=lambda m: None)
