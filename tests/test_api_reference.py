"""The API reference (docs/build_api.py) builds strictly in CI: every public module, class, function and method
of veracity (the CLI aside) has a docstring, and the pdoc build has no warning and no reference that names
nothing. Planted faults in a throw-away module show that each check really fails."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("veracity_build_api", REPO / "docs" / "build_api.py")
build_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_api)

PACKAGES = ("models", "data", "capture", "probes", "steer", "evaluate", "compare", "methods", "experiments",
            "report", "metrics", "runs", "finetune", "constraints", "outputs", "artifacts", "validation")

THROWAWAY = '''
"""A module the checks must fail on: see `veracity.no_such_thing` (broken), `veracity.metrics.fmt` (fine)."""
from __future__ import annotations
from dataclasses import dataclass


def documented() -> None:
    """Present."""


def bare(x: NoSuchType) -> None:
    pass


@dataclass
class Record:
    x: int

    def method(self) -> int:
        return self.x

    def _private(self) -> None:
        pass
'''


@pytest.fixture
def throwaway(tmp_path, monkeypatch):
    """A module named `apiref_throwaway` with the faults above, importable for the test's duration."""
    (tmp_path / "apiref_throwaway.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "apiref_throwaway"
    sys.modules.pop("apiref_throwaway", None)


def test_every_public_name_has_a_docstring():
    modules = build_api.public_modules()
    for p in PACKAGES:
        assert f"veracity.{p}" in modules, p
    assert "veracity.experiments.demo" in modules and "veracity.methods.fold" in modules
    assert not any(m.startswith("veracity.cli") for m in modules)
    missing = build_api.undocumented(modules)
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_undocumented_names_are_found(throwaway):
    importlib.import_module(throwaway)
    # the dataclass's generated "Record(x: int)" is not a docstring; `_private` and `documented` are fine
    assert build_api.undocumented([throwaway]) == [
        "apiref_throwaway.bare", "apiref_throwaway.Record", "apiref_throwaway.Record.method"]


def test_reference_builds_without_problems(tmp_path):
    modules = build_api.public_modules()
    problems = build_api.build(tmp_path, modules)
    assert not problems, "\n".join(problems)
    for page in ("index.html", "veracity.html", "veracity/models.html", "veracity/experiments/demo.html",
                 "veracity/methods/fold.html", "veracity/constraints.html", "veracity/report/sections/demo.html"):
        assert (tmp_path / page).is_file(), page
    assert not (tmp_path / "veracity" / "cli").exists()
    # a package-relative reference became a link: models/loader.py writes `models.adapter.ModelAdapter`
    assert 'href="adapter.html#ModelAdapter"' in (tmp_path / "veracity" / "models" / "loader.html").read_text()


def test_broken_reference_and_warnings_fail_the_build(tmp_path, throwaway):
    problems = build_api.build(tmp_path / "api", [throwaway, "veracity.metrics"])
    assert any("`veracity.no_such_thing` does not resolve" in p for p in problems), problems
    assert any(p.startswith("pdoc:") and "NoSuchType" in p for p in problems), problems
    assert len(problems) == 2, problems
    assert 'href="veracity/metrics.html#fmt"' in (tmp_path / "api" / "apiref_throwaway.html").read_text()


def test_relative_references_are_qualified():
    modules = {"veracity", "veracity.models", "veracity.models.adapter", "veracity.evaluate",
               "veracity.evaluate.health", "veracity.evaluate.judges", "veracity.evaluate.judges.local"}
    here = "veracity.evaluate.judges.local"
    q = lambda s: build_api.qualify(f"<code>{s}</code>", here, modules)  # noqa: E731
    assert q("health.is_degenerate") == "<code>veracity.evaluate.health.is_degenerate</code>"
    assert q("models.adapter.ModelAdapter()") == "<code>veracity.models.adapter.ModelAdapter()</code>"
    for text in ("results.json", "torch.std", "health.py", "veracity.models.load", "cfg.seed"):
        assert q(text) == f"<code>{text}</code>"
