"""The shared sweep engine: an interrupted sweep resumes computing only the missing cells with the same final
numbers; stores written before the engine (each study's own results table) are read, checked by the safe
readers and resumed; the best cell follows the metrics registry's direction."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from veracity.artifacts import ArtifactError, read_file
from veracity.experiments import iti_sweep, steer_sweep
from veracity.experiments.interventions import CompareStore
from veracity.experiments.sweep import Grid, SweepStore, pick_best, product, run_grid
from veracity.metrics import METRICS, better_sign
from veracity.methods.fold import FoldEvalConfig
from veracity.steer.iti import ITIConfig, ITIData

# copies of the tables each study created before the shared store (the layouts old run folders hold)
OLD_ITI = ("CREATE TABLE IF NOT EXISTS results (alpha REAL, k INTEGER, fold INTEGER, metrics TEXT, seconds REAL, "
           "finished TEXT, PRIMARY KEY (alpha, k, fold))")
OLD_STEER = ("CREATE TABLE IF NOT EXISTS results (layer INTEGER, alpha REAL, fold INTEGER, metrics TEXT, "
             "seconds REAL, PRIMARY KEY (layer, alpha, fold))")
OLD_COMPARE = ("CREATE TABLE IF NOT EXISTS results (method TEXT, fold INTEGER, metrics TEXT, costs TEXT, "
               "per_question TEXT, answers TEXT, finished TEXT, PRIMARY KEY (method, fold))")
META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"


def old_store(path, table_sql: str, rows: list[tuple], config: dict | None = None) -> None:
    db = sqlite3.connect(str(path))
    db.execute(table_sql)
    db.execute(META)
    for r in rows:
        db.execute(f"INSERT INTO results VALUES ({', '.join('?' * len(r))})", r)
    if config is not None:
        db.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(config, sort_keys=True, default=str),))
    db.commit()
    db.close()


# ------------------------------------------------------------------------------------------ the engine

class Boom(RuntimeError):
    pass


def toy_grid(calls: list, fits: list, fail_after: int | None = None) -> Grid:
    """alpha x k on 3 folds; a cell's metric is a hand-checkable function of its fit, items and parameters."""

    def fit(fold, key):
        fits.append((fold, key))
        return {"offset": 10 * fold}, list(range(fold + 2))

    def evaluate(lm, job):
        if fail_after is not None and len(calls) >= fail_after:
            raise Boom("interrupted")
        calls.append((job.cell["alpha"], job.cell["k"], job.fold))
        return {"metrics": {"mc2": job.fit["offset"] + len(job.items) + job.cell["alpha"] * job.cell["k"]},
                "note": f"fold {job.fold}"}

    return Grid(product(("alpha", [0.0, 1.0, 2.0]), ("k", [1, 3])), 3, fit, evaluate,
                share=lambda c: "plain" if c["alpha"] == 0 else (c["alpha"], c["k"]))


def test_product_is_the_named_grid_in_order():
    assert product(("a", [1, 2]), ("b", ["x", "y"])) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                                          {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]


def test_interrupted_sweep_resumes_only_the_missing_cells(tmp_path):
    full_calls, full_fits = [], []
    store = SweepStore(tmp_path / "full.sqlite", {"s": 1}, "sweep", ("alpha", "k"))
    run_grid(toy_grid(full_calls, full_fits), store, log=lambda m: None)
    # alpha 0 once per fold (shared by both K): (1 + 2 x 2) jobs x 3 folds; one fit per fold
    assert len(full_calls) == 15 and full_fits == [(0, ()), (1, ()), (2, ())]
    want = {(c["alpha"], c["k"], f): s.metrics for c, f, s in store.rows()}
    assert len(want) == 18 and want[(2.0, 3, 1)] == {"mc2": 10 + 3 + 6.0}
    assert store.entry({"alpha": 0.0, "k": 3}, 2).extra == {"note": "fold 2"}
    store.close()

    calls, fits = [], []
    path = tmp_path / "cut.sqlite"
    store = SweepStore(path, {"s": 1}, "sweep", ("alpha", "k"))
    with pytest.raises(Boom):
        run_grid(toy_grid(calls, fits, fail_after=7), store, log=lambda m: None)
    store.close()
    first = list(calls)
    assert len(first) == 7
    store = SweepStore(path, {"s": 1}, "sweep", ("alpha", "k"))
    # the 7 finished jobs committed, alpha 0 recorded for both K: fold 0 whole (6 rows), fold 1 alpha 0 + one (3)
    assert len(store.rows()) == 9
    calls.clear()
    run_grid(toy_grid(calls, fits), store, log=lambda m: None)
    assert len(calls) == 15 - 7 and not set(calls) & set(first)  # only the missing cells
    got = {(c["alpha"], c["k"], f): s.metrics for c, f, s in store.rows()}
    store.close()
    assert got == want
    # a finished sweep resumed again computes nothing and fits nothing
    calls.clear(), fits.clear()
    store = SweepStore(path, {"s": 1}, "sweep", ("alpha", "k"))
    assert run_grid(toy_grid(calls, fits), store, log=lambda m: None) == 0 and calls == [] and fits == []
    store.close()
    with pytest.raises(ValueError, match="other settings"):
        SweepStore(path, {"s": 2}, "sweep", ("alpha", "k"))
    # a reader (no settings to check) gets the settings recorded on first open; a store without any, {}
    reader = SweepStore(path, None, "sweep", ("alpha", "k"))
    assert reader.recorded() == {"s": 1}
    reader.close()
    bare = path.with_name("bare.sqlite")
    bare.write_bytes(path.read_bytes())
    db = sqlite3.connect(str(bare))
    with db:
        db.execute("DELETE FROM meta")
    db.close()
    reader = SweepStore(bare, None, "sweep", ("alpha", "k"))
    assert reader.recorded() == {}
    reader.close()
    with pytest.raises(ArtifactError, match="does not exist"):  # a reader refuses a missing store, creates none
        SweepStore(path.with_name("missing.sqlite"), None, "sweep", ("alpha", "k"))
    assert not path.with_name("missing.sqlite").exists()


def iti_problem():
    g = torch.Generator().manual_seed(0)
    q = np.repeat(np.arange(12), 2)
    y = torch.tensor([1, 0] * 12)
    X = torch.randn(24, 2, 4, 8, generator=g) + y[:, None, None, None] * torch.randn(2, 4, 8, generator=g)
    return ITIData(X=X, labels=y, question=q, source={"content_hash": "h"}), [SimpleNamespace(index=i) for i in range(12)]


def iti_evaluator(calls: list, fail_after: int | None = None):
    def evaluate(lm, items, iv, ecfg, texts):  # a metric that depends on every head used and the fold's items
        if fail_after is not None and len(calls) >= fail_after:
            raise Boom("interrupted")
        calls.append(None if iv is None else (iv.k, float(iv.alpha)))
        if iv is None:
            return {"metrics": {"mc2": float(len(items)), "mc1": 0.0}}
        return {"metrics": {"mc2": float(iv.head_shifts().abs().sum()), "mc1": float(iv.k)}}
    return evaluate


def iti_run(folder, evaluate, alphas=(0.0, 2.0, 4.0), ks=(1, 3)):
    data, items = iti_problem()
    return iti_sweep.run_sweep(SimpleNamespace(fingerprint="fake"), data, items, ITIConfig(max_k=max(ks)),
                               list(alphas), list(ks), 2, folder, ecfg=FoldEvalConfig(judge="none", ce_texts=0),
                               log=lambda m: None, evaluate=evaluate, metric="mc2")


def test_interrupted_iti_sweep_resumes_with_equal_numbers(tmp_path):
    full = iti_run(tmp_path / "full", iti_evaluator([]))
    calls = []
    with pytest.raises(Boom):
        iti_run(tmp_path / "cut", iti_evaluator(calls, fail_after=4))
    assert len(calls) == 4
    calls.clear()
    resumed = iti_run(tmp_path / "cut", iti_evaluator(calls))
    assert len(calls) == 10 - 4  # (alpha 0 once + 2 alphas x 2 K) x 2 folds, minus the 4 already stored
    assert resumed.grid.keys() == full.grid.keys() and resumed.best == full.best
    for key, s in full.grid.items():
        assert resumed.grid[key]["mc2"] == pytest.approx(s["mc2"], rel=1e-6), key


# ------------------------------------------------------------------------------------------ old stores

def test_a_reader_opens_the_store_read_only(tmp_path):
    """A store opened without settings (steer compare, --plain-from, the report) cannot write to the file,
    and a missing file is refused instead of created."""

    iti_run(tmp_path / "full", iti_evaluator([]))
    path = tmp_path / "full" / "results.sqlite"
    before = path.read_bytes()
    store = steer_sweep.open_store(path)
    try:
        assert store.rows()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.put({"layer": 1, "alpha": 1.0}, 0, {"mc2": 0.5})
    finally:
        store.close()
    assert path.read_bytes() == before
    with pytest.raises(ArtifactError, match="does not exist"):
        steer_sweep.open_store(tmp_path / "nothing.sqlite")
    assert not (tmp_path / "nothing.sqlite").exists()


def test_an_old_iti_store_is_read_checked_and_resumed(tmp_path):
    """Half of a finished sweep's cells copied into the pre-engine table layout, with its recorded settings:
    the safe reader accepts the file, the resumed sweep evaluates only the other half, and the numbers match."""
    full = iti_run(tmp_path / "full", iti_evaluator([]))
    db = sqlite3.connect(str(tmp_path / "full" / "results.sqlite"))
    config = json.loads(db.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    rows = [(json.loads(c), f, m, s) for c, f, m, s in db.execute("SELECT cell, fold, metrics, seconds FROM results")]
    db.close()
    old = tmp_path / "old"
    old.mkdir()
    kept = [(c["alpha"], c["k"], f, m, s, "2024-01-01T00:00:00") for c, f, m, s in rows if f == 0]
    old_store(old / "results.sqlite", OLD_ITI, kept, config)
    assert read_file("iti-sweep-store", "results.sqlite", old / "results.sqlite") is None  # accepted as it is
    calls = []
    resumed = iti_run(old, iti_evaluator(calls))
    assert len(calls) == 5  # fold 1 only: alpha 0 once, 2 alphas x 2 K
    for key, s in full.grid.items():
        assert resumed.grid[key]["mc2"] == pytest.approx(s["mc2"], rel=1e-6), key
    # migrated to the one layout, which the same reader accepts
    read_file("iti-sweep-store", "results.sqlite", old / "results.sqlite")
    db = sqlite3.connect(str(old / "results.sqlite"))
    assert [r[1] for r in db.execute("PRAGMA table_info(results)")][:2] == ["cell", "fold"]
    db.close()


def test_old_steer_and_comparison_stores_are_read(tmp_path):
    old_store(tmp_path / "steer.sqlite", OLD_STEER,
              [(-1, 0.0, 0, json.dumps({"mc2": 0.25}), 1.5), (2, 4.0, 1, json.dumps({"mc2": 0.75}), 2.0)])
    read_file("steer-sweep-store", "results.sqlite", tmp_path / "steer.sqlite")
    before = (tmp_path / "steer.sqlite").read_bytes()
    store = steer_sweep.open_store(tmp_path / "steer.sqlite")  # a reader (no settings): migrates a copy in memory
    assert store.get({"layer": -1, "alpha": 0.0}, 0) == {"mc2": 0.25}
    assert store.entry({"layer": 2, "alpha": 4.0}, 1).seconds == 2.0
    assert not store.done({"layer": 2, "alpha": 4.0}, 0)
    store.close()
    assert (tmp_path / "steer.sqlite").read_bytes() == before  # another run's file is never written by a reader
    old_store(tmp_path / "cmp.sqlite", OLD_COMPARE,
              [("dpo", 1, json.dumps({"mc2": 0.5}), json.dumps({"train_s": 3.0}), json.dumps([{"q": 7, "mc2": 0.5}]),
                json.dumps(["an answer"]), "2024-01-01T00:00:00")])
    read_file("comparison-store", "results.sqlite", tmp_path / "cmp.sqlite")
    store = CompareStore(tmp_path / "cmp.sqlite", None)
    assert store.result("dpo", 1) == {"metrics": {"mc2": 0.5}, "costs": {"train_s": 3.0},
                                      "per_question": [{"q": 7, "mc2": 0.5}], "answers": ["an answer"]}
    assert store.result("dpo", 0) is None and store.finished("dpo", 1)
    store.close()


def test_a_store_of_another_layout_is_named_as_damaged(tmp_path):

    db = sqlite3.connect(str(tmp_path / "x.sqlite"))
    db.execute("CREATE TABLE results (something TEXT)")
    db.execute(META)
    db.commit()
    db.close()
    with pytest.raises(ArtifactError, match="x.sqlite has no column 'cell' in table 'results'"):
        iti_sweep.open_store(tmp_path / "x.sqlite")


# ------------------------------------------------------------------------------------------ ranking

@pytest.mark.parametrize("metric", [m for m in ("mc2", "kl", "ce_loss") if m in METRICS])
def test_best_cell_follows_the_registry_direction(metric):
    rows = [("a", {metric: 0.5}), ("b", {metric: 0.1}), ("c", {metric: float("nan")}), ("d", {}),
            ("e", {metric: 0.9}), ("f", {metric: 0.9})]
    want = "e" if better_sign(metric) > 0 else "b"  # ties: the earliest
    assert pick_best(rows, metric) == want
    assert pick_best([("c", {metric: float("nan")})], metric) is None


def test_a_broken_setting_never_wins_over_a_working_one():
    """Angular steering at 30 degrees on gemma3-270m scored MC2 0.499 with 95% of its answers degenerate (KL 8.7):
    a flattened model, not a truthful one. `metrics.broken` (half or more degenerate) keeps such a cell from
    winning while any working cell is there; with none, the best broken one is all there is."""
    from veracity.metrics import BROKEN_AT, broken

    limit = BROKEN_AT["degenerate_rate"]
    rows = [("plain", {"mc2": 0.377, "degenerate_rate": 0.10}), ("bipo", {"mc2": 0.448, "degenerate_rate": 0.10}),
            ("angular", {"mc2": 0.499, "degenerate_rate": 0.95}), ("edge", {"mc2": 0.6, "degenerate_rate": limit})]
    assert pick_best(rows, "mc2") == "bipo"
    assert pick_best(rows[2:], "mc2") == "edge"  # all broken: the best of them
    assert pick_best([("a", {"mc2": 0.4}), ("b", {"mc2": 0.5})], "mc2") == "b"  # health not measured: no gate
    assert broken({"degenerate_rate": 0.95}) == "degenerate_rate 0.95 >= 0.5"
    assert broken({"degenerate_rate": limit - 1e-9}) is None and broken({"mc2": 0.9}) is None
    assert broken({"degenerate_rate": float("nan")}) is None
