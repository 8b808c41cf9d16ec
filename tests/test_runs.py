"""Run folders: a finished run is never replaced without --overwrite (library and CLI), and
`veracity runs list` shows kind, model, data, status and headline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from veracity.cli import common
from veracity.cli.main import app
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
    assert rows["c"]["status"] == "corrupt results.json"


def test_runs_list_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(common.console, "width", 250)  # rich would otherwise fold cells at 80 columns
    _finished(tmp_path / "p1")
    RunFolder(tmp_path / "c1", "ccs", {"model": "m", "dataset": "boolq"})
    r = CliRunner().invoke(app, ["runs", "list", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "p1" in r.output and "probe" in r.output and "acc=0.750, best=L2" in r.output
    assert "ccs" in r.output and "unfinished" in r.output and "boolq" in r.output


def test_cli_refuses_to_overwrite_a_finished_run(tmp_path, tiny_llama):
    """Through a real command: `veracity probe --out DIR` twice fails cleanly; --overwrite replaces it."""
    from veracity.capture import capture_dataset
    from veracity.data import get_dataset

    capture_dataset(tiny_llama, get_dataset("synthetic", limit=32, seed=0), "resid", out=tmp_path / "cap",
                    progress=False)
    args = ["probe", "--acts", str(tmp_path / "cap"), "--methods", "mass-mean", "--split", "random", "--seeds", "1",
            "--layers", "-1", "--out", str(tmp_path / "p")]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    first = (tmp_path / "p" / "results.json").read_text()
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "--overwrite" in r.output
    assert (tmp_path / "p" / "results.json").read_text() == first
    r = runner.invoke(app, args + ["--overwrite"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "p" / "results.json").read_text())["kind"] == "probe"
