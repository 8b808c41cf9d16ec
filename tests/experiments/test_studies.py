"""The studies registry's contract, as tests/probes/test_contract.py is the probes': every registered study
(`experiments.registry.STUDIES`, so a newly registered one is picked up here) runs its smallest settings on
tiny-llama, and then
- its result is its one Result type, and results.json holds its kind, schema_version and headline;
- to_json / from_json round-trip the file (headline and console tables included), and a newer
  schema_version is refused;
- a second run into the same folder follows the run contract: a finished run is refused (not a byte of it
  changes), or, for a resumable study (a sweep), resumed computing no new cell and returning an equal
  Result; an unfinished one (results.json not yet written) runs to the same headline;
- its report section renders and writes the headline figures;
- docs/reference/results.md documents its kind, schema_version, Result type and headline keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from veracity.experiments.registry import STUDIES, Study, register_study, study_of
from veracity.runs import RunExists, to_jsonable

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "results.md"


def _plain(x):
    """JSON as the file holds it (tuples to lists, dataclasses to dicts, nan to null)."""
    return json.loads(json.dumps(to_jsonable(x)))


def _doc_section(kind: str) -> tuple[str, str]:
    """(heading, body) of `kind`'s section in results.md."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^## `" + re.escape(kind) + r"` (.*?)\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/reference/results.md has no section for {kind!r}"
    return m.group(1), m.group(2)


def _tmp(v, tmp: Path):
    """`{tmp}` in a text setting (or a list's texts) replaced by the temporary folder."""
    if isinstance(v, str):
        return v.replace("{tmp}", str(tmp))
    return [_tmp(x, tmp) for x in v] if isinstance(v, list) else v


def _config(study: Study, out: Path):
    """The study's smallest Config, `{tmp}` in its text settings naming the run's temporary folder (a study's
    own activation store goes there rather than into the shared cache)."""
    return study.config(**{k: _tmp(v, out.parent) for k, v in study.smallest.items()})


@pytest.fixture(scope="module", params=sorted(STUDIES))
def study_run(request, tmp_path_factory, data_dir, tiny_llama):
    """(study, run folder, returned result, results.json) of the study's smallest run."""
    study: Study = STUDIES[request.param]
    out = tmp_path_factory.mktemp(study.kind) / "run"
    for folder, (kind, settings) in study.inputs.items():  # the runs a comparing study reads, made first
        STUDIES[kind].run(STUDIES[kind].config(**{k: _tmp(v, out.parent) for k, v in settings.items()}),
                          _tmp(folder, out.parent), log=lambda m: None)
    res = study.run(_config(study, out), out, log=lambda m: None)
    return study, out, res, json.loads((out / "results.json").read_text())


def test_result_type_and_file(study_run):
    study, out, res, d = study_run
    assert type(res) is study.result
    assert d["kind"] == study.kind and d["schema_version"] == study.schema_version
    assert d["headline"] and d["headline"] == _plain(res.headline())
    assert set(d["headline"]) <= set(study.headline), set(d["headline"]) - set(study.headline)
    assert json.loads((out / "config.json").read_text())["kind"] == study.kind


def test_json_round_trip_and_versions(study_run):
    study, _, res, d = study_run
    payload = {k: v for k, v in d.items() if k not in ("kind", "headline")}
    assert _plain(res.to_json()) == payload
    back = study.result.from_json(d)
    assert _plain(back.to_json()) == payload
    assert _plain(back.headline()) == d["headline"]
    tables = back.tables()
    assert tables and _plain(tables) == _plain(res.tables())
    for title, columns, rows in tables:
        assert isinstance(title, str) and all(len(r) == len(columns) for r in rows), title
    with pytest.raises(ValueError, match="upgrade veracity"):
        study.result.from_json(dict(d, schema_version=study.schema_version + 1))


def _stored_cells(out: Path) -> list:
    """Every (cell, fold, metrics, seconds) a resumable study's results.sqlite holds (the shared sweep store)."""
    from veracity.experiments.sweep import SweepStore

    store = SweepStore(out / "results.sqlite", None, "sweep", ())
    try:
        return [(c, f, e.metrics, e.seconds) for c, f, e in store.rows()]
    finally:
        store.close()


def test_second_run_follows_the_run_contract(study_run):
    study, out, first, d = study_run
    before = (out / "results.json").read_bytes()
    if study.resumable:  # a finished sweep resumes: nothing new to compute, the same Result
        cells = _stored_cells(out)
        assert cells, "a resumable study keeps its cells in results.sqlite"
        again = study.run(_config(study, out), out, log=lambda m: None)
        assert _stored_cells(out) == cells, "a finished sweep rerun with the same settings computed a cell"
        assert _plain(again.to_json()) == _plain(first.to_json())
        assert json.loads((out / "results.json").read_text()) == json.loads(before)
    else:
        with pytest.raises(RunExists, match="already holds a finished run"):
            study.run(_config(study, out), out, log=lambda m: None)
        assert (out / "results.json").read_bytes() == before
    (out / "results.json").unlink()  # a run stopped before its last write: the same settings finish it
    again = study.run(_config(study, out), out, log=lambda m: None)
    assert _plain(again.headline()) == d["headline"]
    assert json.loads((out / "results.json").read_text())["headline"] == d["headline"]


def test_report_section_shows_the_headline(study_run):
    from veracity.report.page import Page, fmt, load_run
    from veracity.report.sections import SECTIONS

    study, out, _, d = study_run
    heading, render = SECTIONS[study.kind]
    assert heading == study.section
    run = load_run(out)
    page = Page(runs=[run])
    render(page, run)
    html = "".join(page.parts)
    for k, v in d["headline"].items():
        assert fmt(v) in html, (k, fmt(v))


def test_schema_is_documented(study_run):
    study, _, res, d = study_run
    heading, body = _doc_section(study.kind)
    assert heading.startswith(f"(schema_version {study.schema_version}): "
                              f"`{study.result.__module__}.{study.result.__qualname__}`"), heading
    for k in d["headline"]:
        assert f"`{k}`" in body, f"results.md's {study.kind} section does not name headline key {k!r}"


# ------------------------------------------------------------------------------------------ the registry itself

def test_results_md_is_the_registry():
    """docs/reference/results.md lists exactly the registered kinds, and documents each one's kind, schema_version
    and Result type in a section heading (without running the study: a newly registered one fails here first)."""
    text = DOC.read_text(encoding="utf-8")
    listed = re.search(r"\(registered kinds: (.*?)\)", text, re.S)
    assert listed and re.findall(r"`([\w-]+)`", listed.group(1)) == list(STUDIES)
    for kind, s in STUDIES.items():
        heading, _ = _doc_section(kind)
        assert heading.startswith(f"(schema_version {s.schema_version}): `{s.result.__module__}.{s.result.__qualname__}`")


def test_run_command_runs_a_registered_study_from_its_config_fields(tmp_path, cli, data_dir):
    """`veracity run KIND --set KEY=VALUE` builds the Config from its fields (typed, then checked by its
    constraints) and runs the study as its own command does; `--list` lists every kind."""
    from veracity.experiments.registry import study_config

    listing = cli(["run", "--list"])
    assert all(k in listing for k in STUDIES)
    cfg = study_config("finetune", ["model=tiny-llama", "limit=none", "track=kl:a,kl:a", "train.max_steps=2",
                                    "int8=false", "gamma=3"])
    assert (cfg.model, cfg.limit, cfg.track, cfg.train.max_steps, cfg.int8, cfg.gamma) == \
        ("tiny-llama", None, ["kl:a", "kl:a"], 2, False, 3)
    assert study_config("probe-polarity", ["layers=[1, -1]"]).layers == study_config("probe-polarity", ["layers=1,-1"]).layers == [1, -1]
    out = cli(["run", "ccs-distractor", "--set", "model=tiny-llama", "--set", "limit=16", "--set", "layers=1,-1",
               "--set", "strengths=0,3", "--set", "n_restarts=2", "--set", "epochs=20", "--out", str(tmp_path / "r")])
    d = json.loads((tmp_path / "r" / "results.json").read_text())
    assert d["kind"] == "ccs-distractor" and len(d["rows"]) == 4 and "CCS with a planted distractor" in out
    for bad, msg in ((["nosuch=1"], "KEY one of"), (["layers=a"], "expected list"), (["test_size=2"], "test-size"),
                     (["strengths"], "KEY=VALUE")):
        assert msg in cli(["run", "ccs-distractor", *sum((["--set", b] for b in bad), []), "--out",
                           str(tmp_path / "bad")], code=2)
    assert "registered: demo" in cli(["run", "nosuch", "--out", str(tmp_path / "bad")], code=2)
    assert not (tmp_path / "bad").exists()


def test_registry_entries_are_consistent():
    from veracity.cli.main import app
    from veracity.report.sections import RENDERS, SECTIONS

    commands = {c.name for c in app.registered_commands} | {
        f"{g.name} {c.name}" for g in app.registered_groups for c in g.typer_instance.registered_commands}
    for kind, s in STUDIES.items():
        assert s.kind == kind and study_of(kind) is s
        assert s.command in commands and s.command in s.config._commands, (kind, s.command)
        assert SECTIONS[kind][0] == s.section
        assert not set(s.smallest) - {f for f in s.config.__dataclass_fields__}, kind
    assert set(SECTIONS) == set(STUDIES), "every registered study has its section, and only they do"
    assert set(RENDERS) <= set(STUDIES), "a section module renders a registered kind"
    with pytest.raises(KeyError, match="registered: demo"):
        study_of("nosuch")


def test_register_study_refuses_duplicates_and_half_conforming_types():
    s = STUDIES["demo"]
    with pytest.raises(ValueError, match="already registered"):
        register_study(s)

    class NoTables:
        def to_json(self): ...
        def from_json(self): ...
        def write(self): ...
        def headline(self): ...

    with pytest.raises(TypeError, match="NoTables lacks tables"):
        register_study(Study("x-new", s.config, s.run, NoTables, 1, (), "X", "demo"))
    with pytest.raises(TypeError, match="does not subclass constraints.Checked"):
        register_study(Study("x-new", dict, s.run, s.result, 1, (), "X", "demo"))
    assert "x-new" not in STUDIES
