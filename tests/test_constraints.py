"""Declared constraints on every option (issue 25, mechanism 2), tested from the code:

- every registered Config (`veracity.constraints.CONFIGS`, filled by importing every module) declares a
  constraint for every field, and every value each constraint says violates it is refused with one
  `BadInput` line naming the option, before any model is loaded;
- every cross-field rule is refused naming both options;
- every option of every command of the Typer app maps to a field of a Config that command builds, or to a
  short list of options owned by other mechanisms (with the reason);
- Hypothesis over three commands on tiny models: random option values never give a traceback and never exit
  0 with a run that records a value outside its constraint.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import veracity
from veracity.constraints import (CONFIGS, BadInput, Checked, IgnoredUnless, Interval, ListOf, _example,
                                  check_value, constraints_of, option_of, parse_numbers, rules_of)


def _import_everything() -> None:
    """Import every module under veracity (experiments/ is a namespace package), so CONFIGS is complete."""
    root = Path(veracity.__file__).parent
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] in ("__init__", "__main__"):
            parts = parts[:-1]
        if parts:
            importlib.import_module("veracity." + ".".join(parts))


_import_everything()
from veracity.cli.main import app  # noqa: E402
from veracity.methods.steers import steers_with  # noqa: E402

CLASSES = sorted(CONFIGS.values(), key=lambda c: c.__name__)


def _required(cls) -> dict:
    """Example values for the fields without a default (ProbeConfig.acts, CompareConfig.methods, ...)."""
    return {f.name: _example(constraints_of(cls)[f.name]) for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}  # type: ignore[misc]


def _violations():
    for cls in CLASSES:
        for name, cons in sorted(constraints_of(cls).items()):
            for c in cons:
                if c is None:
                    continue
                for i, bad in enumerate(c.bad_values()):
                    yield pytest.param(cls, name, bad, id=f"{cls.__name__}.{name}-{i}")
            if None not in cons:
                yield pytest.param(cls, name, None, id=f"{cls.__name__}.{name}-None")


VIOLATIONS = list(_violations())


@pytest.fixture
def no_model_loading(monkeypatch):
    """A constraint check must never load a model: loading fails the test."""
    import veracity.models
    import veracity.models.loader

    def boom(*a, **k):
        raise AssertionError("a model was loaded while checking a Config")

    monkeypatch.setattr(veracity.models, "load", boom)
    monkeypatch.setattr(veracity.models.loader, "load", boom)


def test_the_registry_holds_every_study_config():
    names = {c.__name__ for c in CLASSES}
    for n in ("ITIConfig", "DPOConfig", "TrainConfig", "SweepConfig", "FinetuneConfig", "FoldEvalConfig",
              "ValidateConfig", "CompareConfig", "SpecConfig", "EvalConfig", "PolarityConfig", "DistractorConfig",
              "SteerSweepConfig", "SycophancyConfig", "ProbeConfig", "CCSConfig", "SideEffectConfig"):
        assert n in names, n
    # and every `class ...Config` dataclass under src/veracity is registered (the grep of the issue)
    root = Path(veracity.__file__).parent
    import re

    declared = {m for f in root.rglob("*.py") for m in re.findall(r"^class (\w+Config)\b", f.read_text(), re.M)}
    assert declared <= names, sorted(declared - names)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_declares_a_constraint(cls):
    fields = {f.name for f in dataclasses.fields(cls)}
    declared = constraints_of(cls)
    assert fields - set(declared) == set(), f"{cls.__name__}: no constraint for {sorted(fields - set(declared))}"
    assert set(declared) - fields == set(), f"{cls.__name__}: constraints for no field {sorted(set(declared) - fields)}"
    for name, cons in declared.items():
        assert [c for c in cons if c is not None], f"{cls.__name__}.{name}: only None declared"
    cls(**_required(cls))  # the defaults satisfy the constraints


def test_a_field_without_a_constraint_is_a_programming_error():
    @dataclasses.dataclass
    class Undeclared(Checked):
        _constraints = {"a": [Interval(int, 0, None)]}
        a: int = 0
        b: int = 0

    try:
        with pytest.raises(TypeError, match="Undeclared.b declares no constraint"):
            Undeclared()
    finally:
        CONFIGS.pop(f"{__name__}.{Undeclared.__qualname__}", None)


@pytest.mark.parametrize("cls,name,bad", VIOLATIONS)
def test_each_violating_value_is_one_line_naming_the_option(cls, name, bad, no_model_loading):
    kw = {**_required(cls), name: bad}
    with pytest.raises(BadInput) as e:
        cls(**kw)
    msg = str(e.value)
    assert option_of(cls, name) in msg and "\n" not in msg, msg


def _rule_cases():
    for cls in CLASSES:
        for rule in rules_of(cls):
            for values in rule.violations(cls):
                yield pytest.param(cls, rule, values, id=f"{cls.__name__}.{'+'.join(rule.fields)}")


@pytest.mark.parametrize("cls,rule,values", list(_rule_cases()))
def test_each_cross_field_rule_names_both_options(cls, rule, values, no_model_loading):
    with pytest.raises(BadInput) as e:
        cls(**{**_required(cls), **values})
    for f in rule.fields:
        assert option_of(cls, f) in str(e.value), str(e.value)
    if isinstance(rule, IgnoredUnless):  # the same option on a method that uses it is accepted
        on = [rule.values[0]] if isinstance(values[rule.on], list) else rule.values[0]
        cls(**{**_required(cls), rule.field: values[rule.field], rule.on: on})


def test_messages_of_the_common_constraints():
    from veracity.experiments.probe import ProbeConfig
    from veracity.experiments.steer_sweep import SteerSweepConfig
    from veracity.experiments.truthfulqa import EvalConfig

    cases = [(lambda: ProbeConfig(acts="s", split="kfold", k=0), "--k must be at least 2, got 0"),
             (lambda: ProbeConfig(acts="s", k=3), "--k is only used by --split kfold, not --split leave-one-topic-out"),
             (lambda: EvalConfig(instruction="nosuch"), "--instruction must be one of default, informative, none, "
                                                        "got 'nosuch'"),
             (lambda: EvalConfig(limit=0), "--limit must be a positive number of items (leave it out for all), got 0"),
             (lambda: SteerSweepConfig(alphas=()), "--alphas must list at least 1 value, got nothing"),
             (lambda: SteerSweepConfig(alphas=(0.0, math.nan)), "--alphas must be a finite number, got nan"),
             (lambda: SteerSweepConfig(metric="nosuch"), "--metric must be one of true_info, true_info_per_answer,"),
             (lambda: SteerSweepConfig(method="iti", layers=(1,)),
              f"--layers is only used by --method {' or '.join(steers_with('layers'))}, not --method iti; drop --layers"),
             (lambda: SteerSweepConfig(seed=-1), "--seed must be an integer in [0, 2**32 - 1], got -1")]
    for build, expect in cases:
        with pytest.raises(BadInput) as e:
            build()
        assert expect in str(e.value), str(e.value)


def test_registered_choices_are_read_when_checked():
    """A metric registered after the Config class was defined is accepted at once (no hand list)."""
    from veracity.experiments.steer_sweep import SteerSweepConfig
    from veracity.metrics import METRICS, Metric, register_metric

    with pytest.raises(BadInput):
        SteerSweepConfig(metric="my_metric")
    register_metric(Metric("my_metric", "Mine", "fraction", True))
    try:
        assert SteerSweepConfig(metric="my_metric").metric == "my_metric"
    finally:
        METRICS.pop("my_metric")


def _choice_lists() -> dict[frozenset, list[str]]:
    """Every literal list of two or more strings given to `Options(...)` or bound to a module-level CONSTANT in
    the package's source, by its set of values."""
    import ast
    import collections

    def strings(node):
        if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return frozenset(e.value for e in node.elts)
        return None

    found = collections.defaultdict(list)
    root = Path(veracity.__file__).parent
    for f in sorted(root.rglob("*.py")):
        tree = ast.parse(f.read_text())
        where = f.relative_to(root.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Options" and node.args:
                if (s := strings(node.args[0])) is not None:
                    found[s].append(f"{where}:{node.lineno} Options(...)")
        for node in tree.body:
            if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets):
                if (s := strings(node.value)) is not None:
                    found[s].append(f"{where}:{node.lineno} {node.targets[0].id}")
    return found


def test_no_choice_list_is_written_twice():
    """One list per set of choices: a Config (or a second module) that writes out a list the code already keeps
    drifts from it when a choice is added (the sweep's --normalize, the conditional steer's inner steers and the
    MC protocols each had 3-6 copies). Declare it with `constraints.choices_in(module, NAME)` instead."""
    found = _choice_lists()
    assert len(found) > 30  # the scan sees the package's lists (a broken walk would pass vacuously)
    twins = {", ".join(sorted(s)): where for s, where in found.items() if len(where) > 1}
    assert not twins, twins


def test_a_twin_choice_list_is_found(monkeypatch, tmp_path):
    """The scan above finds a list written out beside the constant that holds it."""
    pkg = tmp_path / "veracity"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text('NORMALIZE = ("raw", "sigma", "unit")\n')
    (pkg / "b.py").write_text('from x import Options\nC = {"normalize": [Options(("unit", "raw", "sigma"))]}\n')
    monkeypatch.setattr(veracity, "__file__", str(pkg / "__init__.py"))
    found = _choice_lists()
    assert found[frozenset(("raw", "sigma", "unit"))] == ["veracity/a.py:1 NORMALIZE", "veracity/b.py:2 Options(...)"]


def test_choices_in_reads_the_module_when_checked():
    """A choice list declared by `choices_in` accepts exactly the module's tuple and names it when refusing."""
    from veracity.constraints import choices_in
    from veracity.steer.residual.fit import NORMALIZE

    c = choices_in("veracity.steer.residual.fit", "NORMALIZE", "normalize choice")
    assert [v for v in ("raw", "sigma", "unit", "nosuch", "", 1) if c.ok(v)] == list(NORMALIZE)
    assert c.describe() == "be one of raw, sigma, unit"


def test_device_against_the_machine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(BadInput, match=r"--device cuda:7: this machine has no CUDA GPU"):
        check_value(CONFIGS["veracity.models.loader.LoadConfig"], "device", "cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_value(CONFIGS["veracity.models.loader.LoadConfig"], "device", "cuda:1")
    with pytest.raises(BadInput, match=r"this machine has 2 CUDA GPUs \(cuda:0..cuda:1\)"):
        check_value(CONFIGS["veracity.models.loader.LoadConfig"], "device", "cuda:2")


def test_parse_numbers():
    assert parse_numbers("0, 1.5,2", float, "--alphas") == [0.0, 1.5, 2.0]
    assert parse_numbers("", int, "--layers") == [] and parse_numbers(None, int, "--layers") is None
    with pytest.raises(BadInput, match="--alphas: expected comma-separated numbers, got 'a,b'"):
        parse_numbers("a,b", float, "--alphas")


def test_list_constraint_bad_values_include_empty_and_a_bad_element():
    c = ListOf([Interval(float, None, None)])
    bad = c.bad_values()
    assert [] in bad and any(isinstance(b, list) and any(isinstance(x, float) and math.isnan(x) for x in b)
                             for b in bad)


# ------------------------------------------------------------------------------------------ the CLI's options
#: Options no Config owns, each owned by another mechanism of issue 25 (and why).
OWNED_ELSEWHERE = {
    "--out": "the writer guard (mechanism 1): what a command may write or replace",
    "--overwrite": "the writer guard (mechanism 1): replacing a finished run of the same kind",
    "--data-dir": "the safe readers (mechanism 3): a missing or malformed data file is a DataError naming it",
    "--judge-dir": "the safe readers (mechanism 3): a judge folder is read and checked when loaded",
    "--acts": "the safe readers (mechanism 3): a store is opened and checked (StoreError names the file)",
    "--intervention": "the safe readers (mechanism 3): Intervention.load checks the files",
    "--steer": "the safe readers (mechanism 3): ResidualSteer.load checks the files",
    "--judge-base-url": "the judge mechanism (4): an explicit http(s) URL, checked by with_base_url",
    "RUNS": "the safe readers (mechanism 3): report's run folders, expanded and read by the report",
    "ROOT": "the safe readers (mechanism 3): `runs list` reads every run folder under it",
    "KIND": "the studies registry: `run` looks the kind up (study_of names the registered ones)",
    "--set": "the study's own Config: each KEY=VALUE is one of its fields, parsed by type, checked by its constraints",
    "--list": "the studies registry: `run --list` prints it and runs nothing",
}


def _commands(typer_app, prefix: str = ""):
    """(command path, callback) of every command of the app and its groups."""
    for c in typer_app.registered_commands:
        name = c.name or c.callback.__name__.replace("_", "-")
        yield (prefix + name, c.callback)
    for g in typer_app.registered_groups:
        yield from _commands(g.typer_instance, prefix + g.name + " ")


def _cli_names(callback) -> list[str]:
    out = []
    for pname, p in inspect.signature(callback).parameters.items():
        info = p.default
        if type(info).__name__ == "ArgumentInfo":
            out.append(pname.upper())
            continue
        decls = [d.split("/")[0] for d in (getattr(info, "param_decls", None) or ()) if str(d).startswith("--")]
        out.append(max(decls, key=len) if decls else "--" + pname.replace("_", "-"))
    return out


COMMANDS = dict(_commands(app))


def _configs_of(command: str) -> list[type]:
    return [c for c in CLASSES if command in c.__dict__.get("_commands", ())]


def test_every_option_of_every_command_maps_to_a_config_field():
    missing, used = [], set()
    n_options = 0
    for cmd, callback in COMMANDS.items():
        fields = {option_of(c, f.name) for c in _configs_of(cmd) for f in dataclasses.fields(c)}
        for opt in _cli_names(callback):
            n_options += 1
            if opt in fields:
                continue
            if opt in OWNED_ELSEWHERE:
                used.add(opt)
            else:
                missing.append(f"{cmd} {opt}")
    assert not missing, f"options without a Config field (declare one, or say who owns it): {missing}"
    assert used == set(OWNED_ELSEWHERE), f"stale OWNED_ELSEWHERE entries: {set(OWNED_ELSEWHERE) - used}"
    assert len(COMMANDS) >= 20 and n_options >= 250, (len(COMMANDS), n_options)


def test_configs_name_real_commands():
    for c in CLASSES:
        for cmd in c.__dict__.get("_commands", ()):
            assert cmd in COMMANDS, f"{c.__name__}._commands names no command {cmd!r}"


# ------------------------------------------------------------------------------------------ Hypothesis over the CLI
runner = CliRunner()  # the fuzz runs accept exit 0 or 2 and read r.exception (a crash is reported, not raised)
TINY = ["--model", "tiny-llama"]
FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# mostly valid values (so that runs finish and their records are checked), some violating each constraint
_INTS = st.one_of(st.integers(2, 4), st.integers(1, 3), st.sampled_from([-1, 0, 2**40]))
_FLOATS = st.one_of(st.floats(0.05, 0.95), st.floats(0.05, 0.95), st.sampled_from([math.nan, math.inf, -1.0, 0.0,
                                                                                    1e30]))


@pytest.fixture(scope="module")
def store(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("store") / "cap"
    cli(["capture", *TINY, "--dataset", "synthetic", "--limit", "24", "--sites", "resid", "--out", str(out)])
    return out


def _opt(name: str, strategy):
    """Either the option left out, or given with a value drawn from `strategy`."""
    return st.one_of(st.just([]), strategy.map(lambda v: [name, _text(v)]))


def _text(v) -> str:
    return repr(v) if isinstance(v, float) and math.isfinite(v) else str(v)


def _check_run(cmd: str, argv: list[str], out: Path, r) -> None:
    """The property: exit 0 or 2, never a traceback; exit 2 is one `error:` line; exit 0 records values
    that satisfy every constraint of the command's Configs."""
    assert r.exit_code in (0, 2), f"{argv}: exit {r.exit_code}\n{r.output}\n{r.exception!r}"
    if os.environ.get("FUZZ_LOG"):  # to see the mix of finished and refused runs
        print("FUZZ", cmd, r.exit_code, [l for l in r.output.splitlines() if l.startswith("error:")][:1])
    assert "Traceback" not in r.output, r.output
    if r.exit_code == 2:
        assert isinstance(r.exception, SystemExit)
        assert len([l for l in r.output.splitlines() if l.startswith("error:")]) == 1, r.output
        return
    if (out / "config.json").exists():  # a run folder: every option, flat
        recorded = json.loads((out / "config.json").read_text())
    else:  # a capture store: the command's options under "config"
        recorded = json.loads((out / "manifest.json").read_text())["config"]
    checked = 0
    for cls in _configs_of(cmd):
        names = {f.name for f in dataclasses.fields(cls)}
        for k, v in recorded.items():
            if k in names and not (cls.__name__ == "LoadConfig" and k == "model"):
                check_value(cls, k, tuple(v) if isinstance(v, list) and k == "alphas" else v)
                checked += 1
    assert checked, f"{cmd}: no recorded option was checked: {sorted(recorded)}"


@FUZZ
@given(split=st.sampled_from(["random", "random", "kfold", "kfold", "leave-one-topic-out", "transfer", "nosuch"]),
       k=_opt("--k", _INTS), seeds=_opt("--seeds", _INTS), test_size=_opt("--test-size", _FLOATS),
       c=_opt("--C", _FLOATS),
       methods=_opt("--methods", st.sampled_from(["mass-mean", "logistic,mass-mean", "random", "mass-mean-cov",
                                                  "", "nosuch", "mass-mean,mass-mean"])))
@example(split="kfold", k=["--k", "3"], seeds=["--seeds", "2"], test_size=[], c=["--C", "0.5"],
         methods=["--methods", "logistic,mass-mean"])  # a run that finishes: its record is checked
def test_fuzz_probe(store, tmp_path_factory, split, k, seeds, test_size, c, methods):
    out = tmp_path_factory.mktemp("probe") / "run"
    argv = ["probe", "--acts", str(store), "--layers", "1,2", "--split", split, *k, *seeds, *test_size, *c,
            *(methods or ["--methods", "mass-mean"]), "--out", str(out)]
    _check_run("probe", argv, out, runner.invoke(app, argv))


@FUZZ
@given(limit=_opt("--limit", _INTS), folds=_opt("--folds", _INTS), seed=_opt("--seed", _INTS),
       instruction=_opt("--instruction", st.sampled_from(["default", "informative", "none", "nosuch"])),
       protocol=_opt("--protocol", st.sampled_from(["truthfulqa", "lm-eval", "binary", "nosuch"])),
       batch=_opt("--batch-size", st.sampled_from(["auto", "4", "8", "0", "x"])),
       device=_opt("--device", st.sampled_from(["cpu", "cpu", "cuda:7", "gpu"])))
@example(limit=["--limit", "4"], folds=["--folds", "2"], seed=["--seed", "3"], instruction=["--instruction", "informative"],
         protocol=["--protocol", "lm-eval"], batch=["--batch-size", "auto"], device=["--device", "cpu"])
def test_fuzz_eval(tmp_path_factory, data_dir, limit, folds, seed, instruction, protocol, batch, device):
    out = tmp_path_factory.mktemp("eval") / "run"
    argv = ["eval", "truthfulqa", *TINY, "--metrics", "mc", "--judge", "none", *(limit or ["--limit", "4"]),
            *folds, *seed, *instruction, *protocol, *batch, *device, "--data-dir", str(data_dir), "--out", str(out)]
    _check_run("eval truthfulqa", argv, out, runner.invoke(app, argv))


@FUZZ
@given(limit=_opt("--limit", _INTS), shard=_opt("--shard-size", _INTS),
       batch=_opt("--batch-size", st.sampled_from(["auto", "0", "3", "-2", "x"])),
       dtype=_opt("--dtype", st.sampled_from(["float16", "float32", "bfloat16", "int8"])),
       positions=_opt("--positions", st.sampled_from(["last", "mean", "first"])),
       sites=_opt("--sites", st.sampled_from(["resid", "heads.-1", "resid.embed", "mlp.embed", "nosuch", ""])),
       device=_opt("--device", st.sampled_from(["cpu", "cpu", "cuda:7", "gpu"])))
@example(limit=["--limit", "4"], shard=["--shard-size", "3"], batch=["--batch-size", "3"], dtype=["--dtype", "float32"],
         positions=["--positions", "mean"], sites=["--sites", "heads.-1"], device=["--device", "cpu"])
def test_fuzz_capture(tmp_path_factory, limit, shard, batch, dtype, positions, sites, device):
    out = tmp_path_factory.mktemp("capture") / "store"
    argv = ["capture", *TINY, "--dataset", "synthetic", *(limit or ["--limit", "4"]), *shard, *batch, *dtype,
            *positions, *sites, *device, "--out", str(out)]
    if limit and limit[1] == str(2**40):
        return  # a valid limit: the whole synthetic set, slower and covered by limit 4
    _check_run("capture", argv, out, runner.invoke(app, argv))
