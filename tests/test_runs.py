"""Run folders: a finished run is never replaced without --overwrite (library and CLI), and
`veracity runs list` shows kind, model, data, status and headline."""

from __future__ import annotations

import json

import pytest

from veracity.cli import common
from veracity.runs import RunExists, RunFolder, list_runs


def _finished(path, kind="probe", **cfg):
    run = RunFolder(path, kind, {"model": "tiny-llama", "dataset": "synthetic", **cfg}, seed=0)
    run.write_csv("table.csv", [{"layer": 0, "acc": 0.5}])
    run.finish({"value": 1}, headline={"acc": 0.75, "best": "L2"})
    return run


def test_layout_and_config(tmp_path):
    run = _finished(tmp_path / "r", C=2.0)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["kind"] == "probe" and cfg["seed"] == 0 and cfg["C"] == 2.0 and "torch" in cfg["versions"]
    res = json.loads((run.path / "results.json").read_text())
    assert res["kind"] == "probe" and res["headline"] == {"acc": 0.75, "best": "L2"} and res["value"] == 1


def test_finished_run_is_not_overwritten_without_overwrite(tmp_path):
    _finished(tmp_path / "r")
    before = (tmp_path / "r" / "results.json").read_text()
    with pytest.raises(RunExists, match="--overwrite"):
        RunFolder(tmp_path / "r", "probe", {"model": "other"})
    assert (tmp_path / "r" / "results.json").read_text() == before
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model"] == "tiny-llama"


def test_overwrite_replaces_config_and_unfinishes(tmp_path):
    _finished(tmp_path / "r")
    run = RunFolder(tmp_path / "r", "probe", {"model": "other"}, overwrite=True)
    assert not (run.path / "results.json").exists()  # not finished until the new run finishes
    assert json.loads((run.path / "config.json").read_text())["model"] == "other"
    assert list_runs(tmp_path)[0]["status"] == "unfinished"
    run.finish({"value": 2}, headline={"acc": 0.5})
    assert json.loads((run.path / "results.json").read_text())["value"] == 2


def test_overwrite_leaves_no_stale_files(tmp_path):
    _finished(tmp_path / "r")
    RunFolder(tmp_path / "r", "probe", {"model": "other"}, overwrite=True)
    assert not (tmp_path / "r" / "table.csv").exists()


def test_resume_keeps_a_finished_run(tmp_path):
    _finished(tmp_path / "r")
    RunFolder(tmp_path / "r", "probe", {"model": "tiny-llama"}, resume=True)
    assert (tmp_path / "r" / "results.json").exists()


def test_unfinished_run_can_be_reopened(tmp_path):
    RunFolder(tmp_path / "r", "probe", {"model": "a"})
    RunFolder(tmp_path / "r", "probe", {"model": "b"})  # nothing finished to protect
    assert json.loads((tmp_path / "r" / "config.json").read_text())["model"] == "b"


def test_list_runs_statuses(tmp_path):
    _finished(tmp_path / "a" / "done")
    RunFolder(tmp_path / "b", "ccs", {"model": "m", "dataset": "boolq"})
    _finished(tmp_path / "c", kind="eval")
    (tmp_path / "c" / "results.json").write_text("{broken")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "not-a-run" / "config.json").write_text(json.dumps({"no": "kind"}))
    rows = {r["path"].split("/")[-1]: r for r in list_runs(tmp_path)}
    assert set(rows) == {"done", "b", "c"}
    assert rows["done"]["status"] == "finished" and rows["done"]["headline"] == {"acc": 0.75, "best": "L2"}
    assert rows["done"]["model"] == "tiny-llama" and rows["done"]["data"] == "synthetic"
    assert rows["b"]["status"] == "unfinished" and rows["b"]["kind"] == "ccs"
    assert rows["c"]["status"].startswith("damaged: results.json is not valid JSON")


def test_runs_list_cli(tmp_path, monkeypatch, cli):
    monkeypatch.setattr(common.console, "width", 250)  # rich would otherwise fold cells at 80 columns
    _finished(tmp_path / "p1")
    RunFolder(tmp_path / "c1", "ccs", {"model": "m", "dataset": "boolq"})
    text = cli(["runs", "list", str(tmp_path)])
    assert "p1" in text and "probe" in text and "acc=0.750, best=L2" in text
    assert "ccs" in text and "unfinished" in text and "boolq" in text


def test_cli_refuses_to_overwrite_a_finished_run(tmp_path, tiny_llama, cli):
    """Through a real command: `veracity probe --out DIR` twice fails cleanly; --overwrite replaces it."""
    from veracity.capture import capture_dataset
    from veracity.data import get_dataset

    capture_dataset(tiny_llama, get_dataset("synthetic", limit=32, seed=0), "resid", out=tmp_path / "cap",
                    progress=False)
    args = ["probe", "--acts", str(tmp_path / "cap"), "--methods", "mass-mean", "--split", "random", "--seeds", "1",
            "--layers", "-1", "--out", str(tmp_path / "p")]
    cli(args)
    first = (tmp_path / "p" / "results.json").read_text()
    assert "--overwrite" in cli(args, code=2)
    assert (tmp_path / "p" / "results.json").read_text() == first
    cli(args + ["--overwrite"])
    assert json.loads((tmp_path / "p" / "results.json").read_text())["kind"] == "probe"


# ---------------------------------------------------------------- folder safety (issue 14)

from veracity.runs import FolderLock, RunLocked, check_out_folder, folder_kind  # noqa: E402


def test_overwrite_never_empties_a_users_folder(tmp_path):
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("precious")
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunExists, match="notes.txt"):
            RunFolder(d, "probe", {}, **kw)
    assert (d / "notes.txt").read_text() == "precious" and (d / "sub").is_dir()
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "sub"]


def test_runs_of_another_kind_are_never_mixed(tmp_path):
    _finished(tmp_path / "r", kind="probe")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    for kind in ("iti-sweep", "compare-interventions"):  # the resumable commands too
        with pytest.raises(RunExists, match="holds a probe run"):
            RunFolder(tmp_path / "r", kind, {}, resume=True)
    with pytest.raises(RunExists, match="holds a probe run"):
        check_out_folder(tmp_path / "r", "capture", resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    # --overwrite replaces a veracity run of any kind
    RunFolder(tmp_path / "r", "eval", {}, overwrite=True)
    assert folder_kind(tmp_path / "r") == "eval" and not (tmp_path / "r" / "table.csv").exists()


def test_deferred_run_creates_nothing_until_it_writes(tmp_path):
    run = RunFolder(tmp_path / "new" / "r", "probe", {"model": "m"}, defer=True)
    assert not (tmp_path / "new").exists()
    run.log("first line")
    assert (tmp_path / "new" / "r" / "config.json").exists() and (tmp_path / "new" / "r" / "log.txt").exists()


def test_refused_resume_keeps_config(tmp_path):
    """A resumed run only rewrites config.json at finish: a resume refused later leaves it untouched."""
    run = RunFolder(tmp_path / "s", "iti-sweep", {"alphas": [0, 5]}, resume=True)
    run.close()
    before = (tmp_path / "s" / "config.json").read_text()
    run2 = RunFolder(tmp_path / "s", "iti-sweep", {"alphas": [0, 5, 10]}, resume=True)
    run2.log("refused by the results store")
    run2.close()
    assert (tmp_path / "s" / "config.json").read_text() == before
    run3 = RunFolder(tmp_path / "s", "iti-sweep", {"alphas": [0, 5, 10]}, resume=True)
    run3.finish({})
    assert json.loads((tmp_path / "s" / "config.json").read_text())["alphas"] == [0, 5, 10]


def test_out_must_be_a_writable_folder(tmp_path):
    from veracity.validation import BadInput

    (tmp_path / "f").write_text("x")
    with pytest.raises(BadInput, match="is a file"):
        RunFolder(tmp_path / "f", "probe", {})
    with pytest.raises(BadInput, match="is a file"):
        RunFolder(tmp_path / "f" / "sub", "probe", {})


def test_lock_stops_a_second_writer(tmp_path):
    run = RunFolder(tmp_path / "r", "probe", {})
    with pytest.raises(RunLocked, match=str(tmp_path / "r")):
        RunFolder(tmp_path / "r", "probe", {}).start()
    run.close()
    RunFolder(tmp_path / "r", "probe", {}).close()  # free again


def test_lock_across_processes(tmp_path):
    """A second process stops at once with a message naming the folder; the lock dies with its holder."""
    import subprocess
    import sys
    import textwrap

    (tmp_path / "r").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from veracity.runs import FolderLock
        lock = FolderLock({str(tmp_path / 'r')!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"in use by another veracity process \(pid {holder.pid}\)"):
            FolderLock(tmp_path / "r").acquire()
    finally:
        holder.kill()
        holder.wait()
    FolderLock(tmp_path / "r").acquire().release()


@pytest.mark.parametrize("damage", [None, "corrupt-fit"])
def test_sweep_extended_on_resume_matches_a_fresh_sweep(tmp_path, damage):
    """`--num-heads 1,2` then `1,2,8` in the same folder: the K=8 row must use 8 heads (the cached fold
    fit held only 2), exactly as a fresh `1,2,8` sweep; a damaged cached fit is refitted, not trusted."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from veracity.steer.iti import ITIConfig, ITIData
    from veracity.experiments.iti_sweep import run_sweep
    from veracity.methods.fold import FoldEvalConfig

    g = torch.Generator().manual_seed(0)
    q = np.repeat(np.arange(12), 2)
    y = torch.tensor([1, 0] * 12)
    X = torch.randn(24, 2, 4, 8, generator=g) + y[:, None, None, None] * torch.randn(2, 4, 8, generator=g)
    data = ITIData(X=X, labels=y, question=q, source={"content_hash": "h"})
    items = [SimpleNamespace(index=i) for i in range(12)]
    lm = SimpleNamespace(fingerprint="fake")

    def evaluate(lm, items, iv, ecfg, texts):  # a metric that depends on every head used
        if iv is None:
            return {"metrics": {"mc2": 0.0, "mc1": 0.0}}
        return {"metrics": {"mc2": float((iv.head_shifts().abs().sum(1)).sum()), "mc1": float(iv.k)}}

    ecfg = FoldEvalConfig(judge="none", ce_texts=0)

    def sweep(folder, ks):
        return run_sweep(lm, data, items, ITIConfig(max_k=max(ks)), [0.0, 3.0], ks, 2, folder, ecfg=ecfg,
                         log=lambda m: None, evaluate=evaluate, metric="mc2")

    sweep(tmp_path / "resumed", [1, 2])
    if damage:
        (tmp_path / "resumed" / "fold0_fit.safetensors").write_bytes(b"\x00" * 12)
    resumed = sweep(tmp_path / "resumed", [1, 2, 8])
    fresh = sweep(tmp_path / "fresh", [1, 2, 8])
    assert resumed.grid[(3.0, 8)]["mc1"] == 8  # mc1 stands for the number of heads used here
    assert resumed.grid.keys() == fresh.grid.keys()
    for key in fresh.grid:
        assert resumed.grid[key]["mc2"] == pytest.approx(fresh.grid[key]["mc2"], rel=1e-6), key


def test_cli_sweep_refused_resume_changes_nothing_and_extension_recomputes(tmp_path, data_dir, cli):
    """`iti sweep` again with another fixed setting (--folds) is refused with exit 2 and the folder is
    byte-identical; extending --num-heads resumes, evaluates only the new K and rewrites config.json."""
    base = ["iti", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--acts",
            str(tmp_path / "acts"), "--limit", "4", "--alphas", "0,5", "--judge", "none", "--ce-texts", "0",
            "--side-effects", "none", "--out", str(tmp_path / "sw")]
    cli(base + ["--num-heads", "2", "--folds", "2"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "sw").iterdir() if p.is_file()}
    text = cli(base + ["--num-heads", "2", "--folds", "3"], code=2)
    assert "other settings" in text and "folds" in text, text
    assert {p.name: p.read_bytes() for p in (tmp_path / "sw").iterdir() if p.is_file()} == before
    text = cli(base + ["--num-heads", "2,4", "--folds", "2"])
    assert "fold 0: the saved fit has 2 heads, K=4 needs more: refitting" in text
    assert json.loads((tmp_path / "sw" / "config.json").read_text())["num_heads"] == [2, 4]
    grid = {(row["alpha"], row["k"]) for row in json.loads((tmp_path / "sw" / "results.json").read_text())["grid"]}
    assert grid == {(0.0, 2), (0.0, 4), (5.0, 2), (5.0, 4)}
