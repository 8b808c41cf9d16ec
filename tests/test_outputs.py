"""The one writer guard (`veracity.outputs`), checked for every command that writes.

The commands are read from the Typer app (every command with an `--out` option), so a new writer is
covered by default: it fails `test_every_writer_has_an_invocation` until it has a row in `INVOCATIONS`,
and then every target below is tried on it. Each target must be refused with one `error:` line naming
it, exit status 2, no traceback, and not one byte changed anywhere under the test's folder."""

from __future__ import annotations

import json

import click
import pytest
import typer.main

from veracity.cli.main import app
from veracity.outputs import OUTPUT_KINDS, Output, OutputRefused, claim_output, output_paths
from veracity.runs import RunFolder

TINY = ["--model", "tiny-llama"]


def commands(group: click.Command | None = None, prefix: tuple[str, ...] = ()):
    """(name words, click command) for every command of the CLI, sub-apps included."""
    group = group or typer.main.get_command(app)
    if hasattr(group, "list_commands"):
        ctx = click.Context(group)
        for n in group.list_commands(ctx):
            yield from commands(group.get_command(ctx, n), prefix + (n,))
    else:
        yield prefix, group


def writers() -> list[str]:
    return sorted(" ".join(p) for p, c in commands()
                  if any("--out" in getattr(prm, "opts", ()) for prm in c.params))


# The least a writer needs besides --out; inputs need not exist: --out is checked first, before any input
# is read or any model loaded (which the message check below enforces).
INVOCATIONS = {
    "capture": ["capture", *TINY, "--dataset", "synthetic", "--limit", "4"],
    "demo": ["demo", *TINY],
    "probe": ["probe", "--acts", "{tmp}/no-store"],
    "ccs": ["ccs", *TINY, "--dataset", "synthetic", "--limit", "8"],
    "report": ["report", "{tmp}/no-run"],
    "spec": ["spec", "--main", "tiny-llama", "--assistant", "tiny-llama", "--limit", "2"],
    "finetune": ["finetune", *TINY, "--max-steps", "1"],
    "compare-interventions": ["compare-interventions", *TINY, "--limit", "4"],
    "sycophancy": ["sycophancy", *TINY, "--limit", "4"],
    "probe-polarity": ["probe-polarity", *TINY],
    "ccs-distractor": ["ccs-distractor", "--acts", "{tmp}/no-store"],
    "iti fit": ["iti", "fit", *TINY, "--limit", "4", "--num-heads", "2"],
    "iti bake": ["iti", "bake", *TINY, "--intervention", "{tmp}/no-intervention"],
    "iti validate": ["iti", "validate", *TINY, "--limit", "4", "--num-heads", "2"],
    "iti sweep": ["iti", "sweep", *TINY, "--limit", "4", "--num-heads", "2", "--alphas", "0,1"],
    "eval truthfulqa": ["eval", "truthfulqa", *TINY, "--limit", "4"],
    "judge train": ["judge", "train", "--kind", "truth"],
    "steer sweep": ["steer", "sweep", *TINY, "--limit", "4"],
    "steer fit": ["steer", "fit", "--acts", "{tmp}/no-store"],
    "steer compare": ["steer", "compare", "{tmp}/no-run"],
    "steer bake": ["steer", "bake", *TINY, "--steer", "{tmp}/no-steer"],
    "run": ["run", "ccs-distractor", "--set", "model=tiny-llama", "--set", "limit=4"],
    "detect": ["detect", *TINY, "--tables", "continents", "--n-questions", "4", "--n-samples", "2"],
}


def test_every_writer_has_an_invocation():
    assert writers() == sorted(INVOCATIONS), "give each command with --out a row in INVOCATIONS"


def _user_folder(tmp):
    (tmp / "mine" / "sub").mkdir(parents=True)
    (tmp / "mine" / "notes.txt").write_text("my notes")
    (tmp / "mine" / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return tmp / "mine"


def _other_run(tmp):
    run = RunFolder(tmp / "other", "someone-elses-kind", {"model": "tiny-llama"}, seed=0)
    run.write_csv("table.csv", [{"a": 1}])
    run.finish({"value": 1}, headline={"acc": 0.5})
    return tmp / "other"


def _file_in_run(tmp):
    return _other_run(tmp) / "results.json"


def _user_file(tmp):
    (tmp / "notes.txt").write_text("not veracity's")
    return tmp / "notes.txt"


def _foreign_same_suffix(tmp):
    """A file with the artifact's own ending that veracity did not write (a report's .html, a fit's .json)."""
    (tmp / "mine.html").write_text("<html>my page</html>")
    (tmp / "mine.json").write_text(json.dumps({"format": "mine"}))
    return tmp / "mine.{suffix}"


TARGETS = {"user-folder": _user_folder, "finished-run-of-another-kind": _other_run, "file-inside-a-run": _file_in_run,
           "user-file": _user_file, "foreign-file-same-suffix": _foreign_same_suffix}


def snapshot(root):
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("command", sorted(INVOCATIONS))
def test_writer_refuses_what_is_not_its_own(command, target, tmp_path, monkeypatch, cli):
    import veracity.models.loader as loader

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before --out was checked")

    monkeypatch.setattr(loader, "load", no_model)
    monkeypatch.setenv("VERACITY_CACHE", str(tmp_path / "cache"))
    out = TARGETS[target](tmp_path)
    out = str(out).replace("{suffix}", "html" if command == "report" else "json")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in INVOCATIONS[command]] + ["--out", out]
    before = snapshot(tmp_path)
    text = cli(argv, code=2)  # a model loaded before --out was checked raises through (no_model)
    lines = [x for x in text.splitlines() if x.strip()]
    assert "Traceback" not in text and len(lines) == 1 and lines[0].startswith("error:"), text
    assert out.rsplit("/", 1)[-1].split(".")[0] in lines[0], f"the error does not name --out: {lines[0]}"
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------ the library


def test_every_output_kind_names_its_own_paths(tmp_path):
    for name, kind in OUTPUT_KINDS.items():
        paths = output_paths(tmp_path / "x.json", name)
        assert paths and all(p.parent == tmp_path for p in paths)
        assert claim_output(tmp_path / ("x.html" if kind.layout == "file" else "x"), name) is not None


def test_own_kind_needs_overwrite_and_is_replaced_whole(tmp_path):
    import torch

    from veracity.steer.residual import ResidualSteer

    steer = ResidualSteer(layers=[1], vectors=torch.randn(1, 8, generator=torch.Generator().manual_seed(0)))
    js = steer.save(tmp_path / "s")
    first = js.read_bytes()
    with pytest.raises(OutputRefused, match="--overwrite"):
        steer.save(tmp_path / "s")
    assert js.read_bytes() == first
    steer.with_alpha(2.0).save(tmp_path / "s", overwrite=True)
    assert json.loads(js.read_text())["alpha"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.safetensors"]  # no staging left


def test_a_failed_write_changes_nothing_and_leaves_no_folder(tmp_path):
    out = Output(tmp_path / "new" / "deeper" / "baked", "baked-model")
    with pytest.raises(RuntimeError, match="boom"):
        with out.writing() as folder:
            folder.mkdir()
            (folder / "weights").write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_artifact_replaces_its_predecessor_atomically(tmp_path):
    target = tmp_path / "baked"
    for n in (1, 2):
        with Output(target, "baked-model", overwrite=n > 1).writing() as folder:
            folder.mkdir()
            (folder / "veracity_bake.json").write_text(json.dumps({"n": n}))
            (folder / f"only-in-{n}").write_text("x")
    assert sorted(p.name for p in target.iterdir()) == ["only-in-2", "veracity_bake.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baked"]


def test_a_refused_run_leaves_no_lock_in_a_users_folder(tmp_path):
    """A run refused under its lock (something appeared after the first check) removes the lock it made."""
    from veracity.runs import RunExists

    run = RunFolder(tmp_path / "r", "probe", {}, defer=True)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(RunExists):
        run.start()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["notes.txt"]
