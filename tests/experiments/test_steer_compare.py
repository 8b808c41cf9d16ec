"""`veracity steer compare` on tiny-llama: two tiny steer sweeps (caa, ace) and a prompting comparison on the same
folds, compared; each method's best cell, the gain-cost rows and the predictors' rank correlations checked against
hand computations and scipy, folders on other folds refused, and the result read back."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from veracity.experiments.iti_sweep import SweepConfig, run_iti_sweep
from veracity.experiments.interventions import CompareRunConfig, run_compare_interventions
from veracity.experiments.steer_compare import SteerCompareConfig, SteerCompareResult, run_steer_compare
from veracity.experiments.steer_sweep import SteerSweepConfig, run_steer_sweep
from veracity.experiments.sweep import SweepStore
from veracity.metrics import gain_cost_table
from veracity.validation import BadInput

SMALL = {"model": "tiny-llama", "folds": 2, "limit": 8, "ce_texts": 2, "side_effects": (), "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, tiny_llama):
    """{name: folder} of two steer sweeps, a prompting comparison on the same folds, two sweeps on other folds,
    and the comparison of the first three."""
    tmp = tmp_path_factory.mktemp("steer_compare")
    acts, quiet = str(tmp / "acts"), (lambda m: None)
    out = {}
    for name, extra in (("caa", {"method": "caa", "layers": (1, 2), "alphas": (0.0, 1.0, 2.0)}),
                        ("ace", {"method": "ace", "layers": (1, 2), "alphas": (0.0, 2.0)}),
                        ("seed1", {"method": "caa", "layers": (1,), "alphas": (1.0,), "seed": 1}),
                        ("folds3", {"method": "caa", "layers": (1,), "alphas": (1.0,), "folds": 3})):
        out[name] = tmp / name
        run_steer_sweep(SteerSweepConfig(**{**SMALL, **extra}, data_dir=str(data_dir), acts=acts), out[name], log=quiet)
    for name, k in (("iti", (2,)), ("iti4", (4,))):
        out[name] = tmp / name
        run_iti_sweep(SweepConfig(**SMALL, alphas=(0.0, 5.0), num_heads=k, metric="mc2", data_dir=str(data_dir),
                                  acts=str(tmp / "iti_acts")), out[name], log=quiet)
    out["cmp"] = tmp / "cmp"
    run_compare_interventions(CompareRunConfig(**SMALL, methods=["baseline", "instruction"], data_dir=str(data_dir),
                                               acts=acts), out["cmp"], log=quiet)
    out["out"] = tmp / "compare"
    res = run_steer_compare(SteerCompareConfig(runs=[str(out["caa"]), str(out["ace"])], reference=str(out["cmp"])),
                            out["out"], log=quiet)
    return out, res


def _grid(folder) -> list[dict]:
    return json.loads((folder / "results.json").read_text())["grid"]


def _fold_metrics(folder, cell: dict) -> list[dict]:
    store = SweepStore(folder / "results.sqlite", None, "steer sweep", ("layer", "alpha"))
    try:
        return store.fold_metrics(cell, 2)
    finally:
        store.close()


def test_best_per_method_is_the_hand_pick_with_fold_sd(runs):
    folders, res = runs
    assert [b["method"] for b in res.best] == ["caa", "ace"]
    for b in res.best:
        steered = [r for r in _grid(folders[b["method"]]) if r["layer"] >= 0]
        top = max(r["mc2"] for r in steered)  # MC2: higher is better; ties go to the first in grid order
        want = next(r for r in steered if r["mc2"] == top)
        assert (b["layer"], b["alpha"], b["mc2"]) == (want["layer"], want["alpha"], want["mc2"])
        assert b["setting"] == f"layer {want['layer']} alpha {want['alpha']:g}"
        folds = _fold_metrics(folders[b["method"]], {"layer": want["layer"], "alpha": want["alpha"]})
        for k in ("mc2", "kl", "ce_loss"):
            assert b[k] == pytest.approx(want[k])
            assert b[k + "_sd"] == pytest.approx(statistics.stdev(f[k] for f in folds))
    overall = max(res.best, key=lambda b: b["mc2"])
    assert res.headline() == {"best_method": overall["method"], "best_setting": overall["setting"],
                              "mc2": overall["mc2"]}


def test_gain_cost_rows_are_the_table_of_every_cell_with_references(runs):
    folders, res = runs
    plain = next(r for r in _grid(folders["caa"]) if r["layer"] < 0)
    cmp = json.loads((folders["cmp"] / "results.json").read_text())["methods"]
    points = [{"series": "plain model", "label": "plain", "reference": "plain model", "mc2": plain["mc2"],
               "kl": plain["kl"], "ce_loss": plain["ce_loss"]}]
    points += [{**r, "series": "instruction", "label": "instruction", "reference": "prompting"}
               for r in cmp if r["method"] == "instruction"]
    for m in ("caa", "ace"):
        points += [{"series": m, "label": f"layer {r['layer']} alpha {r['alpha']:g}", "reference": None, "mc2": r["mc2"],
                    "kl": r["kl"], "ce_loss": r["ce_loss"],
                    "mc2_sd": statistics.stdev(f["mc2"] for f in _fold_metrics(folders[m], {"layer": r["layer"],
                                                                                             "alpha": r["alpha"]}))}
                   for r in _grid(folders[m]) if r["layer"] >= 0]
    assert [r["reference"] for r in points].count("prompting") == 1
    want = gain_cost_table(points, gains=["mc2"], costs=["ce_loss", "kl"])
    key = lambda r: (r["series"], r["label"], r["gain_metric"], r["cost_metric"])  # noqa: E731
    got = {key(r): r for r in res.gain_cost if r["gain_metric"] == "mc2"}
    assert set(got) == {key(r) for r in want}
    for w in want:
        g = got[key(w)]
        assert (g["reference"], g["pareto"]) == (w["reference"], w["pareto"])
        assert (g["gain"], g["cost"]) == pytest.approx((w["gain"], w["cost"]))
        if w["reference"] is None:
            assert g["gain_sd"] == pytest.approx(w["gain_sd"])
    # the front of MC2 against KL by hand: nothing at least as good on both and better on one
    for p in points:
        dominated = any(q["mc2"] >= p["mc2"] and q["kl"] <= p["kl"] and (q["mc2"] > p["mc2"] or q["kl"] < p["kl"])
                        for q in points)
        assert got[(p["series"], p["label"], "mc2", "kl")]["pareto"] is (not dominated)


def test_predictors_are_spearman_across_every_steered_cell(runs):
    from scipy.stats import spearmanr

    folders, res = runs
    cells = []
    for m in ("caa", "ace"):
        grid = _grid(folders[m])
        plain = next(r for r in grid if r["layer"] < 0)
        cells += [{**r, "method": m, "mc2_gain": r["mc2"] - plain["mc2"]} for r in grid if r["layer"] >= 0]
    checked = 0
    for row in res.predictors:
        mine = cells if row["scope"] == "all" else [c for c in cells if c["method"] == row["scope"]]
        x = [c[row["predictor"]] for c in mine]
        y = [c[row["outcome"]] for c in mine]
        assert row["n"] == len(mine) and row["distinct"] == len(set(x))
        assert row["spearman"] == pytest.approx(spearmanr(x, y).statistic, abs=1e-9)
        assert row["low"] <= row["spearman"] <= row["high"] or math.isclose(row["low"], row["high"])
        checked += 1
    assert checked and {r["scope"] for r in res.predictors} == {"all", "caa", "ace"}
    assert {r["outcome"] for r in res.predictors} == {"item_steerable", "anti_steerable", "mc2_gain"}
    strong = [r for r in res.predictors if r["n"] >= 6 and r["distinct"] >= 3 and abs(r["spearman"]) >= 0.5]
    assert res.verdict.startswith("no predictor") is (not strong)


def test_verdict_calls_a_rho_foretold_only_when_its_interval_excludes_zero():
    """The rule by hand: |rho| >= 0.5 over 6+ cells and 3+ distinct values is a candidate; its 95% interval must
    also exclude 0 to be called foretold, else it is suggestive; the strongest pair is named with its interval."""
    from veracity.experiments.steer_compare import verdict

    def row(rho, low, high, n=8, distinct=4, p="auroc"):
        return {"scope": "all", "predictor": p, "outcome": "item_steerable", "n": n, "distinct": distinct,
                "spearman": rho, "low": low, "high": high}

    wide = row(0.68, -0.38, 1.0)
    assert verdict([wide]).startswith("suggestive, not shown: 1 ")
    assert "rho +0.68 [-0.38, +1.00] over 8 cells" in verdict([wide])
    sure = row(-0.55, -0.9, -0.1, p="d_prime")
    v = verdict([wide, sure])
    assert v.startswith("1 predictor-outcome pair(s) foretold") and "d_prime" in v and "auroc" not in v
    for weak in (row(0.49, 0.1, 0.9), row(0.9, 0.5, 1.0, n=5), row(0.9, 0.5, 1.0, distinct=2)):
        assert verdict([weak]).startswith("no predictor")


def _per_question(folder, cell: dict) -> dict:
    """{question index: MC2} over both folds of one stored cell, read from the store with plain sqlite."""
    import sqlite3

    db = sqlite3.connect(folder / "results.sqlite")
    try:
        rows = db.execute("SELECT extra FROM results WHERE cell=?", (json.dumps(cell, sort_keys=True),)).fetchall()
    finally:
        db.close()
    return {q["index"]: q["mc2"] for (x,) in rows for q in json.loads(x)["per_question"]}


def test_paired_rows_are_the_per_question_differences_of_the_stores(runs):
    import numpy as np

    folders, res = runs
    got = {(r["method"], r["against"]): r for r in res.paired}
    assert set(got) == {("caa", "plain model"), ("caa", "instruction"), ("ace", "plain model"),
                        ("ace", "instruction"), ("instruction", "plain model")}
    plain = _per_question(folders["caa"], {"layer": -1, "alpha": 0.0})
    prompt = _per_question(folders["cmp"], {"method": "instruction"})
    assert len(plain) == len(prompt) == 8  # every question once, on the fold that held it out
    for b in res.best:
        mine = _per_question(folders[b["method"]], {"layer": b["layer"], "alpha": b["alpha"]})
        for vs, other in (("plain model", plain), ("instruction", prompt)):
            r = got[(b["method"], vs)]
            d = np.array([mine[q] - other[q] for q in sorted(mine)])
            assert r["n"] == 8 and r["difference"] == pytest.approx(d.mean()) and r["setting"] == b["setting"]
            rng = np.random.default_rng(0)
            boot = [d[rng.integers(0, 8, 8)].mean() for _ in range(4000)]
            assert (r["low"], r["high"]) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
            assert r["up"] == pytest.approx((d > 0).mean()) and r["down"] == pytest.approx((d < 0).mean())
            assert r["call"] == ("better" if r["low"] > 0 else "worse" if r["high"] < 0 else "within noise")
    r = got[("instruction", "plain model")]
    assert r["difference"] == pytest.approx(np.mean([prompt[q] - plain[q] for q in plain]))
    assert (folders["out"] / "paired.csv").exists()


def test_runs_on_other_folds_are_refused(runs, tmp_path):
    folders, _ = runs
    for other, what in (("seed1", "seed"), ("folds3", "folds")):
        with pytest.raises(BadInput, match=f"not on the same folds.*differ in .*{what} \\(caa: "):
            run_steer_compare(SteerCompareConfig(runs=[str(folders["caa"]), str(folders[other])]), tmp_path / "x")
    with pytest.raises(BadInput, match=r"score the plain model differently .*\(mc1: caa 0.0000, iti 0.1250\)"):
        run_steer_compare(SteerCompareConfig(runs=[str(folders["caa"]), str(folders["iti"])]), tmp_path / "x")
    with pytest.raises(BadInput, match="holds a steer-sweep run; expected compare-interventions"):
        run_steer_compare(SteerCompareConfig(runs=[str(folders["caa"])], reference=str(folders["ace"])),
                          tmp_path / "x")
    with pytest.raises(BadInput, match="holds a compare-interventions run; expected steer-sweep or iti-sweep"):
        run_steer_compare(SteerCompareConfig(runs=[str(folders["cmp"])]), tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before the run folder is made


def test_iti_sweeps_compare_with_each_other(runs, tmp_path):
    """ITI's cells are (alpha, K); the plain model is its alpha 0 row, once."""
    folders, _ = runs
    res = run_steer_compare(SteerCompareConfig(runs=[str(folders["iti"]), str(folders["iti4"])]), tmp_path / "c",
                            log=lambda m: None)
    assert [r["method"] for r in res.runs] == ["iti (iti)", "iti (iti4)"]
    for b, name, k in zip(res.best, ("iti", "iti4"), (2, 4)):
        want = next(r for r in _grid(folders[name]) if r["alpha"] == 5.0)
        assert (b["k"], b["alpha"], b["setting"], b["mc2"]) == (k, 5.0, f"K {k} alpha 5", want["mc2"])
    assert [r["series"] for r in res.gain_cost if r["cost_metric"] == "kl"].count("plain model") == 1
    assert not res.predictors and res.verdict.startswith("no predictor")  # ITI records no steerability


def test_result_round_trip_and_files(runs):
    folders, res = runs
    d = json.loads((folders["out"] / "results.json").read_text())
    assert d["kind"] == "steer-compare" and d["headline"] == res.headline()
    back = SteerCompareResult.from_json(d)
    assert back.to_json() == json.loads(json.dumps(res.to_json())) and back.tables() == res.tables()
    assert {"best.csv", "gain_cost.csv", "predictors.csv"} <= {p.name for p in folders["out"].iterdir()}
    with pytest.raises(ValueError, match="upgrade veracity"):
        SteerCompareResult.from_json({**d, "schema_version": 2})


def test_cli_prints_the_tables_in_80_columns_and_draws_the_chart(runs, cli, tmp_path, monkeypatch):
    from rich.cells import cell_len

    import veracity.cli.common as common

    folders, res = runs
    monkeypatch.setattr(common.console, "_width", 80)  # as in an 80-column terminal (tests/test_console.py)
    text = cli(["steer", "compare", str(folders["caa"]), str(folders["ace"]), "--out", str(tmp_path / "c")])
    assert "best cell per method" in text and "did the predictors foretell" in text
    assert max(cell_len(x) for x in text.splitlines()) <= 80 and "…" not in text
    assert (tmp_path / "c" / "gain_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "c" / "results.json").read_text())["plots"] == ["gain_cost.png"]
    bad = cli(["steer", "compare", str(folders["caa"]), str(folders["seed1"]), "--out", str(tmp_path / "d")], code=2)
    assert "not on the same folds" in bad and not (tmp_path / "d").exists()


def test_reads_the_layouts_the_studies_write():
    """The results.json versions this reader knows are the studies' own (a bumped schema needs a look here)."""
    from veracity.experiments.registry import STUDIES
    from veracity.experiments.steer_compare import READS

    assert READS == {k: STUDIES[k].schema_version for k in READS}


def test_a_broken_models_pairing_is_called_broken():
    """A method whose best cell broke the model (`metrics.broken`) is not called better, whatever its interval."""
    from veracity.experiments.steer_compare import paired_rows

    items = {i: {"mc2": 0.3} for i in range(40)}
    up = {i: {"mc2": 0.5 + 0.001 * i} for i in range(40)}
    plain = {"_items": items}
    rows = paired_rows([{"method": "angular", "setting": "a30", "_items": up, "degenerate_rate": 0.95},
                        {"method": "bipo", "setting": "a1", "_items": up, "degenerate_rate": 0.1}], plain, [], "mc2")
    assert [(r["method"], r["call"]) for r in rows] == [("angular", "broken model"), ("bipo", "better")]


def test_the_best_table_names_methods_whose_health_was_not_measured():
    """The broken-model rule reads generation health; a method scored without it is named, not silently passed."""
    from veracity.experiments.steer_compare import SteerCompareResult

    best = [{"method": "caa", "setting": "layer 9, alpha 2", "mc2": 0.40, "degenerate_rate": 0.1},
            {"method": "angular", "setting": "layer 9, alpha 30", "mc2": 0.50}]
    res = SteerCompareResult("mc2", [], None, {}, best, [], [], "-")
    title = res.tables()[0][0]
    assert "health not measured for angular," in title and "caa" not in title.split(";")[1]
    best[1]["degenerate_rate"] = float("nan")  # a NaN is no measurement either
    assert "for angular," in SteerCompareResult("mc2", [], None, {}, best, [], [], "-").tables()[0][0]
    best[1]["degenerate_rate"] = 0.95
    assert "not measured" not in SteerCompareResult("mc2", [], None, {}, best, [], [], "-").tables()[0][0]


def test_the_predictors_leave_out_cells_that_broke_the_model():
    """A broken cell's MC2 gain is a flattened model's: it must not make (or unmake) a predictor's correlation."""
    from veracity.experiments.steer_compare import predictor_rows

    working = [{"series": "caa", "d_prime": float(i), "mc2_gain": 0.01 * i, "degenerate_rate": 0.1}
               for i in range(6)]
    wrecked = {"series": "angular", "d_prime": 0.5, "mc2_gain": 0.3, "degenerate_rate": 0.95}
    alone = [r for r in predictor_rows(working, "mc2") if r["scope"] == "all" and r["predictor"] == "d_prime"
             and r["outcome"] == "mc2_gain"]
    mixed = [r for r in predictor_rows(working + [wrecked], "mc2") if r["scope"] == "all"
             and r["predictor"] == "d_prime" and r["outcome"] == "mc2_gain"]
    assert alone == mixed and alone[0]["spearman"] == pytest.approx(1.0) and alone[0]["n"] == 6
    assert not [r for r in predictor_rows(working + [wrecked], "mc2") if r["scope"] == "angular"]
