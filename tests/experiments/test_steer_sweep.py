"""`veracity steer sweep` on tiny-llama: the layer x alpha grid of residual steering with side effects, each
cell equal to the comparison's scorer with the same fitted vector, resumable, and `--method iti` delegating."""

from __future__ import annotations

import json

import pytest


def test_caa_sweep_grid_resume_and_cells(data_dir, tmp_path, cli, tiny_llama):
    out = tmp_path / "s"
    args = ["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
            "--method", "caa", "--layers", "1,2", "--alphas", "0,2", "--folds", "2", "--ce-texts", "0",
            "--side-effects", "boolq", "--side-effect-n", "boolq=4", "--acts", tmp_path / "acts", "--out", out]
    text = cli(args)
    assert "caa sweep" in text and text.count("fold=") == 6  # (layers 1, 2 at alpha 2 + alpha 0) x 2 folds
    res = json.loads((out / "results.json").read_text())
    assert res["schema_version"] == 1 and res["method"] == "caa" and res["metric"] == "mc2"
    cells = {(r["layer"], r["alpha"]): r for r in res["grid"]}
    assert set(cells) == {(-1, 0.0), (1, 2.0), (2, 2.0)}
    assert sum(r["best"] for r in res["grid"]) == 1 and res["best"]["alpha"] == 2.0
    assert all("boolq_accuracy" in r and "mc2" in r for r in res["grid"])
    assert (out / "heatmap_mc2.png").exists() and (out / "grid.csv").exists()
    # one cell by hand: the same fitted vector scored through the comparison's scorer gives the same MC2
    from veracity.data import load_truthfulqa
    from veracity.methods.evaluate import MethodEvalConfig, evaluate_prepared
    from veracity.methods.prepare import MethodSpec, PreparedMethod
    from veracity.probes.splits import question_folds
    from veracity.steer.residual_tqa import fit_residual_for_fold

    lm = tiny_llama
    items = load_truthfulqa(data_dir)[:8]
    folds = question_folds([it.index for it in items], 2, seed=0)
    mc2, moves, d_prime = [], [], []
    for f in (0, 1):
        train = sorted(int(q) for q in folds[1 - f])
        steer = fit_residual_for_fold(lm, train, "caa", [2], 2.0, "raw", 0, str(data_dir), 8, str(tmp_path / "acts"), f)
        pm = PreparedMethod(MethodSpec("caa", steer="caa"), lm, steer)
        test = [it for it in items if it.index in set(folds[f].tolist())]
        got = evaluate_prepared(pm, lm, test, MethodEvalConfig(), None, {}, None)
        mc2.append(got["metrics"]["mc2"])
        plain = evaluate_prepared(PreparedMethod(MethodSpec("baseline"), lm, None), lm, test, MethodEvalConfig(),
                                  None, {}, None)["per_question"]
        before = {r["index"]: r["mc2"] for r in plain}
        moves += [r["mc2"] - before[r["index"]] for r in got["per_question"]]
        d_prime.append(steer.provenance["steerability"]["2"]["d_prime"])
    assert cells[(2, 2.0)]["mc2"] == pytest.approx(sum(mc2) / 2, abs=1e-9)
    # steerability: the fitted layer's predictors (fold mean) and the share of held-out items whose MC2 rose / fell
    assert cells[(2, 2.0)]["d_prime"] == pytest.approx(sum(d_prime) / 2)
    assert cells[(2, 2.0)]["steer_items"] == len(moves) == 8
    assert cells[(2, 2.0)]["item_steerable"] == pytest.approx(sum(m > 0 for m in moves) / 8)
    assert cells[(2, 2.0)]["anti_steerable"] == pytest.approx(sum(m < 0 for m in moves) / 8)
    assert "pair_cosine" in cells[(1, 2.0)] and "item_steerable" not in cells[(-1, 0.0)]
    import csv

    chart = list(csv.DictReader(open(out / "gain_cost.csv")))
    assert {r["cost_metric"] for r in chart} == {"boolq_accuracy"} and {r["gain_metric"] for r in chart} == {"mc2"}
    assert [r["reference"] for r in chart].count("plain model") == 1 and len(chart) == 3
    # resume: a longer grid evaluates only the new cells
    text = cli([a if a != "0,2" else "0,2,4" for a in args])
    assert text.count("fold=") == 4 and "alpha=4 fold=" in text
    assert len(json.loads((out / "results.json").read_text())["grid"]) == 5
    # other fixed settings into the same folder: refused
    bad = cli([a if a != "raw" else "unit" for a in args] + ["--normalize", "unit"], code=2)
    assert "other settings" in bad
    # --overwrite empties the folder (its stored cells too): other settings start over from the first cell
    text = cli(args + ["--normalize", "unit", "--overwrite"])
    assert text.count("fold=") == 6
    res = json.loads((out / "results.json").read_text())
    assert len(res["grid"]) == 3 and res["config"]["normalize"] == "unit"


def test_iti_method_delegates_to_the_iti_sweep(data_dir, tmp_path, cli):
    out = tmp_path / "i"
    cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
         "--method", "iti", "--num-heads", "2", "--alphas", "0,5", "--folds", "2", "--ce-texts", "0",
         "--side-effects", "none", "--acts", tmp_path / "acts", "--out", out])
    res = json.loads((out / "results.json").read_text())
    assert res["kind"] == "iti-sweep" and {(r["alpha"], r["k"]) for r in res["grid"]} >= {(5.0, 2)}


def test_bad_method_is_refused_before_work(tmp_path, cli):
    text = cli(["steer", "sweep", "--model", "tiny-llama", "--method", "magic", "--out", tmp_path / "x"], code=2)
    assert "--method" in text and not (tmp_path / "x").exists()


def test_caa_sweep_fit_2021_scored_on_2025(data_dir, tmp_path, cli):
    out = tmp_path / "x"
    text = cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "12",
                "--method", "lat", "--layers", "1", "--alphas", "0,2", "--folds", "2", "--ce-texts", "0",
                "--side-effects", "none", "--eval-revision", "2025", "--acts", tmp_path / "acts", "--out", out])
    assert "11 questions matched" in text
    res = json.loads((out / "results.json").read_text())
    assert [r["index"] for r in res["cross_revision"]["removed"]] == [9]
    assert res["config"]["eval_revision"] == "2025" and res["method"] == "lat"


def test_ace_alpha_0_is_scored_and_cosmic_is_reported(data_dir, tmp_path, cli):
    """ACE has no identity alpha: its alpha 0 (the ablation) is a cell of every layer, not the plain model;
    --steer-param reaches its reference; --cosmic reports COSMIC's layer per fold beside the sweep's best, whose
    rank is its place among the recorded scores."""
    out = tmp_path / "a"
    text = cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
                "--method", "ace", "--layers", "1,2", "--alphas", "0", "--folds", "2", "--ce-texts", "0",
                "--side-effects", "none", "--acts", tmp_path / "acts", "--steer-param", "reference=all", "--cosmic",
                "--out", out])
    res = json.loads((out / "results.json").read_text())
    cells = {(r["layer"], r["alpha"]): r for r in res["grid"]}
    assert set(cells) == {(-1, 0.0), (1, 0.0), (2, 0.0)}
    assert cells[(1, 0.0)]["mc2"] != cells[(-1, 0.0)]["mc2"]
    assert res["config"]["steer_params"] == {"reference": "all"}
    assert "COSMIC" in text and len(res["cosmic"]) == 2
    for c in res["cosmic"]:
        assert c["sweep_layer"] == res["best"]["layer"] and set(c["scores"]) == {"1", "2"}
        order = sorted(c["scores"], key=lambda l: (-c["scores"][l], int(l)))
        assert c["cosmic_layer"] == int(order[0]) and c["sweep_rank"] == order.index(str(c["sweep_layer"])) + 1
        assert c["agree"] == (c["cosmic_layer"] == c["sweep_layer"])


def test_binary_task_in_every_cell_equals_score_binary(data_dir, tmp_path, cli, tiny_llama):
    """--binary adds TruthfulQA's binary task to every cell; the plain-model row equals `score_binary` on each
    fold's held-out questions (fold mean), and the gain-cost chart gains it as a target."""
    import csv

    from veracity.data import load_truthfulqa
    from veracity.evaluate.binary import metric_name, score_binary
    from veracity.probes.splits import question_folds

    out = tmp_path / "b"
    cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
         "--method", "caa", "--layers", "1", "--alphas", "0,2", "--folds", "2", "--ce-texts", "2",
         "--side-effects", "none", "--binary", "--acts", tmp_path / "acts", "--out", out])
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["binary"] is True
    items = load_truthfulqa(data_dir)[:8]
    folds = question_folds([it.index for it in items], 2, seed=0)
    by_fold = [score_binary(tiny_llama, [it for it in items if it.index in set(folds[f].tolist())]).variants
               for f in (0, 1)]
    plain = next(r for r in res["grid"] if r["layer"] < 0)
    for variant in by_fold[0]:
        want = sum(v[variant]["accuracy"] for v in by_fold) / 2
        assert plain[metric_name(variant)] == pytest.approx(want, abs=1e-9)
    assert all("binary_ab_average" in r for r in res["grid"])
    chart = list(csv.DictReader(open(out / "gain_cost.csv")))
    assert {"mc2", "binary_ab_average"} <= {r["gain_metric"] for r in chart}


def test_conditional_sweep_shows_its_fire_rates(data_dir, tmp_path, cli, tiny_llama):
    """A conditional steer's fire rates on each fold's held-out rows are registered metrics of its cells (fold
    means of the steers fitted on the same folds, refitted here through the registry), shown in the sweep's
    table; the plain model's row has none, and another steer's sweep shows no such column."""
    from veracity.methods.prepare import MethodSettings
    from veracity.methods.steers import STEERS
    from veracity.probes.splits import question_folds

    out = tmp_path / "c"
    text = cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit",
                "8", "--method", "conditional", "--layers", "1", "--alphas", "2", "--folds", "2", "--ce-texts", "0",
                "--side-effects", "none", "--acts", tmp_path / "acts", "--out", out])
    assert "fire_rate_target" in text.split("sweep (fold means")[1] and "fire_rate_control" in text
    res = json.loads((out / "results.json").read_text())
    cells = {(r["layer"], r["alpha"]): r for r in res["grid"]}
    assert "fire_rate_target" not in cells[(-1, 0.0)]
    family = STEERS["conditional"]
    folds = question_folds(list(range(8)), 2, seed=0)
    want = {"target": [], "control": []}
    for f in range(2):
        train = sorted(int(q) for j, p in enumerate(folds) if j != f for q in p)
        steer = family.fit(tiny_llama, train, [int(q) for q in folds[f]],
                           family.settings(MethodSettings(seed=0), layers=(1,), alpha=1.0, normalize="raw"),
                           data_dir=data_dir, limit=8, acts=tmp_path / "acts", fold=f)
        for k in want:
            want[k].append(steer.provenance["fire_rate"]["held_out"][k])
    for k in want:
        assert cells[(1, 2.0)][f"fire_rate_{k}"] == pytest.approx(sum(want[k]) / 2)
    caa = cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
               "--method", "caa", "--layers", "1", "--alphas", "2", "--folds", "2", "--ce-texts", "0",
               "--side-effects", "none", "--acts", tmp_path / "acts", "--out", tmp_path / "caa"])
    assert "fire_rate" not in caa


def test_plain_from_reuses_another_sweeps_plain_rows(data_dir, tmp_path, cli):
    """A second method's sweep with --plain-from scores only its steered cells; its plain rows equal the
    source's (copied, marked), and a source of other settings is refused naming the setting."""
    import sqlite3

    base = ["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
            "--layers", "1", "--alphas", "2", "--folds", "2", "--ce-texts", "0", "--side-effects", "none",
            "--acts", tmp_path / "acts"]
    cli(base + ["--method", "caa", "--out", tmp_path / "caa"])
    text = cli(base + ["--method", "lat", "--plain-from", tmp_path / "caa", "--out", tmp_path / "lat"])
    assert "folds 0, 1 reused from" in text
    assert text.count("fold=") == 2 and "layer=- " not in text  # only the steered cell, on both folds
    rows = {}
    for name in ("caa", "lat"):
        db = sqlite3.connect(tmp_path / name / "results.sqlite")
        rows[name] = {f: (json.loads(m), json.loads(x)) for f, m, x in db.execute(
            "SELECT fold, metrics, extra FROM results WHERE cell=?", (json.dumps({"alpha": 0.0, "layer": -1}),))}
        db.close()
    assert sorted(rows["lat"]) == [0, 1]
    for f in (0, 1):
        assert rows["lat"][f][0] == rows["caa"][f][0]
        assert rows["lat"][f][1]["per_question"] == rows["caa"][f][1]["per_question"]
        assert rows["lat"][f][1]["plain_from"] == str(tmp_path / "caa")
    res = json.loads((tmp_path / "lat" / "results.json").read_text())
    assert res["config"]["plain_from"] == str(tmp_path / "caa") and res["baseline"]["mc2"] == json.loads(
        (tmp_path / "caa" / "results.json").read_text())["baseline"]["mc2"]
    # other fixed settings (the question count): refused before any cell, naming it
    bad = cli([a if a != "8" else "6" for a in base] + ["--method", "lat", "--plain-from", tmp_path / "caa",
                                                         "--out", tmp_path / "other"], code=2)
    assert "differs in: limit, questions" in bad and not (tmp_path / "other" / "results.sqlite").exists()
    # a folder holding no sweep, and an iti sweep (heads, its own plain model): refused
    assert "is missing" in cli(base + ["--method", "lat", "--plain-from", tmp_path, "--out", tmp_path / "x"], code=2)
    assert "--plain-from" in cli(["steer", "sweep", "--model", "tiny-llama", "--method", "iti", "--plain-from",
                                  tmp_path / "caa", "--out", tmp_path / "y"], code=2)


def test_a_lengthened_sweep_rescales_the_kept_fits(data_dir, tmp_path, cli):
    """Each (fold, layer)'s fit is kept under fits/ and read back when the grid grows: the new alpha's cells equal
    those of a sweep that fitted afresh with the longer grid; a damaged kept fit is one error naming the file."""
    import sqlite3

    base = ["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir, "--limit", "8",
            "--method", "ace", "--layers", "1", "--folds", "2", "--ce-texts", "0", "--side-effects", "none",
            "--acts", tmp_path / "acts"]
    text = cli(base + ["--alphas", "2", "--out", tmp_path / "a"])
    assert text.count("fitting ace on 4 training questions") == 2 and text.count("kept in fits/fold") == 2
    assert sorted(p.name for p in (tmp_path / "a" / "fits").iterdir()) == [
        "fold0-layer1.json", "fold0-layer1.safetensors", "fold1-layer1.json", "fold1-layer1.safetensors"]
    text = cli(base + ["--alphas", "2,0", "--out", tmp_path / "a"])  # alpha 0 (ACE's ablation) on both folds
    assert text.count("reused") == 2 and text.count("fold=") == 2 and "fitting" not in text
    cli(base + ["--alphas", "2,0", "--out", tmp_path / "fresh"])

    def cell(name: str, alpha: float) -> dict:
        db = sqlite3.connect(tmp_path / name / "results.sqlite")
        got = {f: json.loads(m) for f, m in db.execute("SELECT fold, metrics FROM results WHERE cell=?",
                                                        (json.dumps({"alpha": alpha, "layer": 1}),))}
        db.close()
        return got
    assert cell("a", 0.0) == cell("fresh", 0.0) and cell("a", 2.0) == cell("fresh", 2.0)
    (tmp_path / "a" / "fits" / "fold1-layer1.safetensors").write_bytes(b"not a tensor file")
    bad = cli(base + ["--alphas", "2,0,1", "--out", tmp_path / "a"], code=2)
    assert "fold1-layer1" in bad
