"""Every artifact kind veracity reads back, damaged every way its format can be, through every command that
reads it: generated from the registry (`veracity.artifacts.KINDS`), so a new kind is covered by default.

For each registered kind a builder below makes one valid artifact with real library calls or commands on
tiny-llama (once per module). For each of its files the corruptions come from the file's declared format
and schema: truncated, garbage bytes (not UTF-8), a JSON value that is not an object, each required key
removed, a key of the wrong type, NaN in each number; a SQLite table dropped; a tensor or array removed,
of the wrong shape, or holding NaN. Every consumer (a CLI command the kind declares) then runs on the
damaged copy and must end with one `error:` line naming the damaged file, exit status 2, no traceback,
every byte of the artifact unchanged and no output created (`runs list`: the run is listed as damaged,
naming the file, and the listing exits 0)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veracity.artifacts import EMPTY_IS_NEW, KINDS, ArtifactKind, FileSpec
from veracity.cli import common
from veracity.cli.main import app

MODEL = "tiny-llama"


# ------------------------------------------------------------------------------------------ builders

def _run(path: Path, kind: str):
    from veracity.runs import RunFolder

    return RunFolder(path, kind, {"model": MODEL, "data": "truthfulqa"}, seed=0)


def _checkpoint(kind: str):
    def build(path: Path, lm) -> Path:
        from veracity.runs import Checkpoint

        run = _run(path, kind)
        Checkpoint(run.file("progress.json"), {"config": {"limit": 4}}).put("fold0", {"mc2": 0.5, "n": 2})
        run.close()  # an interrupted run: no results.json
        return path
    return build


def build_run(path: Path, lm) -> Path:
    run = _run(path, "probe")
    run.write_csv("summary.csv", [{"layer": 0, "acc": 0.5}])
    run.finish({"value": 1.5}, headline={"acc": 0.5})
    return path


def build_iti_sweep(path: Path, lm) -> Path:
    from veracity.experiments.iti_sweep import open_store

    run = _run(path, "iti-sweep")
    store = open_store(run.file("results.sqlite"), {"model": "fp", "folds": 2})
    store.put({"alpha": 0.0, "k": 2}, 0, {"mc2": 0.5}, 1.0)
    store.close()
    run.close()
    return path


def build_steer_sweep(path: Path, lm) -> Path:
    from veracity.experiments.steer_sweep import open_store

    run = _run(path, "steer-sweep")
    store = open_store(run.file("results.sqlite"), {"model": "fp"})
    store.put({"layer": 1, "alpha": 0.0}, 0, {"mc2": 0.5}, 1.0)
    store.close()
    run.close()
    return path


def build_comparison(path: Path, lm) -> Path:
    from veracity.experiments.interventions import CompareStore

    run = _run(path, "compare-interventions")
    store = CompareStore(run.file("results.sqlite"), {"model": "fp"})
    store.record("baseline", 0, {"mc2": 0.5}, {"seconds": 1.0}, [{"question": 0, "mc2": 0.5}], ["an answer"])
    store.close()
    run.close()
    return path


def build_steer(path: Path, lm) -> Path:
    import torch

    from veracity.steer import ResidualSteer

    g = torch.Generator().manual_seed(0)
    base = path / "v"
    ResidualSteer([1, 2], torch.randn(2, lm.arch.hidden_size, generator=g), alpha=2.0,
                  provenance={"model_fingerprint": lm.fingerprint}).save(base)
    return base


def build_intervention(path: Path, lm) -> Path:
    import torch

    from veracity.steer import Intervention

    a = lm.arch
    g = torch.Generator().manual_seed(0)
    base = path / "iv"
    dirs = torch.nn.functional.normalize(torch.randn(2, a.head_dim, generator=g), dim=-1)
    Intervention(heads=[(1, 2), (3, 0)], directions=dirs,
                 sigmas=torch.ones(2), alpha=2.0, n_layers=a.n_layers, n_heads=a.n_heads, head_dim=a.head_dim,
                 provenance={"model": MODEL, "model_fingerprint": lm.fingerprint},
                 head_scores=torch.rand(a.n_layers, a.n_heads, generator=g)).save(base)
    return base


def build_baked(path: Path, lm) -> Path:
    steer = build_steer(path / "src", lm)
    res = CliRunner().invoke(app, ["steer", "bake", "--model", MODEL, "--device", "cpu", "--steer", str(steer),
                                   "--out", str(path / "baked")])
    assert res.exit_code == 0, res.output
    shutil.rmtree(path / "src")
    return path / "baked"


def build_judge(path: Path, lm) -> Path:
    import numpy as np

    from veracity.evaluate.judges.local import N_DENSE, LocalJudge

    rng = np.random.default_rng(0)
    LocalJudge("truth", {"What is 2+2?": (["4"], ["5"])}, rng.normal(size=N_DENSE), np.ones(N_DENSE),
               rng.normal(size=N_DENSE + 2 ** 16) * 0.01, 0.1).save(path / "truth")
    return path / "truth"


def build_store(path: Path, lm) -> Path:
    from veracity.capture import capture

    capture(lm, [f"statement {i}" for i in range(6)], "resid", labels=[0, 1] * 3, out=path / "store", shard_size=4,
            progress=False)
    return path / "store"


def build_detector(path: Path, lm) -> Path:
    import numpy as np

    from veracity.evaluate.detector import Detector

    d, rng = lm.arch.hidden_size, np.random.default_rng(0)
    Detector([0, 1], ["pre", "answer_last"], rng.normal(size=(2, d)), np.zeros(2), np.zeros((2, d)), np.ones((2, d)),
             np.array([0.5, 0.5]), 0.0, 0.0, {"method": "platt", "a": 1.0, "b": 0.0}, lm.fingerprint,
             "test detector").save(path / "det")
    return path / "det"


BUILDERS = {"run-config": build_run, "run-results": build_run, "eval-progress": _checkpoint("eval"),
            "iti-validate-progress": _checkpoint("iti-validate"), "sycophancy-progress": _checkpoint("sycophancy"),
            "iti-sweep-store": build_iti_sweep, "steer-sweep-store": build_steer_sweep,
            "comparison-store": build_comparison, "residual-steer": build_steer, "iti-intervention": build_intervention,
            "baked-model": build_baked, "local-judge": build_judge, "capture-store": build_store,
            "detector": build_detector}


def test_every_registered_kind_has_a_builder_and_consumers():
    """A new artifact kind fails here until it has a builder (and, by `register`, its consumers)."""
    assert set(KINDS) == set(BUILDERS), f"add a builder for {sorted(set(KINDS) - set(BUILDERS))}"
    for k in KINDS.values():
        assert k.consumers and all(c.argv for c in k.consumers)


def test_registering_a_kind_requires_consumers():
    from veracity.artifacts import register

    with pytest.raises(ValueError, match="consumers"):
        register(ArtifactKind("x", "x", (FileSpec("x.json", "json"),), ()))


# ------------------------------------------------------------------------------------------ corruptions

def _rewrite_json(p: Path, edit) -> None:
    obj = json.loads(p.read_text())
    edit(obj)
    p.write_text(json.dumps(obj))


def _rewrite_tensors(p: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    t = load_file(str(p))
    edit(t)
    save_file(t, str(p))


def _rewrite_npz(p: Path, edit) -> None:
    import numpy as np

    with np.load(p, allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    edit(a)
    with open(p, "wb") as f:
        np.savez(f, **a)


def _nan_tensor(t: dict, key: str) -> None:
    v = t[key].clone()
    v.view(-1)[0] = float("nan")
    t[key] = v


def _nan_array(a: dict, key: str) -> None:
    v = a[key].astype("float64")
    v.reshape(-1)[0] = float("nan")
    a[key] = v


def _float_tensors(p: Path, spec: FileSpec) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as f:
        names = list(f.keys())
        floats = [k for k in names if f.get_slice(k).get_dtype() in ("F32", "F16", "BF16", "F64")]
    if isinstance(spec.finite, str):
        return [k for k in floats if k.endswith(spec.finite)][:1]
    return floats[:1] if spec.finite else []


def corruptions(kind: ArtifactKind, root: Path) -> list[tuple[str, str, object]]:
    """(file name, corruption id, function(path)) for every file of the kind, from its format and schema."""
    out = []
    for spec in kind.files:
        path = kind.paths_of(root, spec)[0]
        if not path.exists():  # an optional file the builder did not write
            assert spec.optional, f"{kind.name}: the builder wrote no {spec.name}"
            continue
        cases = {"truncated": lambda p: p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)]),
                 "garbage": lambda p: p.write_bytes(b"\xff\xfe\x00garbage " * 40)}
        if spec.format not in EMPTY_IS_NEW:  # (an empty results.sqlite is a new store: nothing in it to lose)
            cases["empty"] = lambda p: p.write_bytes(b"")
        if spec.format == "json":
            cases["not-an-object"] = lambda p: p.write_text("[1, 2, 3]")
            required = [k for k, t in spec.schema.items() if not t.endswith("?")] + list(spec.equals)
            for key in dict.fromkeys(required):
                cases[f"missing-{key}"] = lambda p, key=key: _rewrite_json(p, lambda o: o.pop(key))
            if required:
                key = required[0]
                cases[f"wrong-type-{key}"] = lambda p, key=key: _rewrite_json(p, lambda o: o.update({key: [[]]}))
            for key in [k for k, t in spec.schema.items() if t.rstrip("?") == "number"]:
                cases[f"nan-{key}"] = lambda p, key=key: _rewrite_json(p, lambda o: o.update({key: float("nan")}))
        elif spec.format == "sqlite":
            for table in spec.schema:
                def drop(p, table=table):
                    db = sqlite3.connect(str(p))
                    db.execute(f"DROP TABLE {table}")
                    db.commit()
                    db.close()
                cases[f"missing-table-{table}"] = drop
        elif spec.format == "safetensors":
            for key, shape in spec.schema.items():
                if key.endswith("?"):
                    continue
                cases[f"missing-{key}"] = lambda p, key=key: _rewrite_tensors(p, lambda t: t.pop(key))
                cases[f"wrong-shape-{key}"] = lambda p, key=key: _rewrite_tensors(
                    p, lambda t: t.update({key: t[key].unsqueeze(0).repeat(2, *[1] * t[key].dim())}))
            for key in _float_tensors(path, spec):
                cases[f"nan-{key}"] = lambda p, key=key: _rewrite_tensors(p, lambda t: _nan_tensor(t, key))
        elif spec.format == "npz":
            for key in spec.schema:
                cases[f"missing-{key}"] = lambda p, key=key: _rewrite_npz(p, lambda a: a.pop(key))
                cases[f"wrong-shape-{key}"] = lambda p, key=key: _rewrite_npz(
                    p, lambda a: a.update({key: a[key].reshape(1, -1).repeat(2, 0)}))
                if spec.finite:
                    cases[f"nan-{key}"] = lambda p, key=key: _rewrite_npz(p, lambda a: _nan_array(a, key))
        out += [(spec.name, cid, fn) for cid, fn in cases.items()]
    return out


def snapshot(paths: list[Path]) -> dict:
    snap = {}
    for root in paths:
        for p in ([root] if root.is_file() else sorted(root.rglob("*")) if root.exists() else []):
            snap[str(p)] = None if p.is_dir() else p.read_bytes()
    return snap


# ------------------------------------------------------------------------------------------ the test

@pytest.fixture(scope="module")
def valid(tmp_path_factory, tiny_llama):
    """{kind: path of a valid artifact}, built once (on MODEL, the session's tiny_llama)."""
    return {name: BUILDERS[name](tmp_path_factory.mktemp(name) / "artifact", tiny_llama) for name in KINDS}


def _cases():
    for name, kind in KINDS.items():
        yield pytest.param(name, id=name)


@pytest.mark.parametrize("name", list(_cases()))
def test_every_damaged_artifact_is_named_by_every_consumer(name, valid, tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(common.console, "width", 1000)  # rich would otherwise fold table cells
    kind, source = KINDS[name], valid[name]
    runner = CliRunner()
    cases = corruptions(kind, source)
    assert cases, f"{name}: no corruption applies"
    tried = 0
    for i, (file_name, cid, corrupt) in enumerate(cases):
        case = tmp_path / f"c{i}"
        case.mkdir()
        root = case / source.name
        if kind.layout == "base":
            for spec in kind.files:
                src = kind.paths_of(source, spec)[0]
                shutil.copy2(src, case / src.name)
        else:
            shutil.copytree(source, root)
        target = kind.paths_of(root, kind.file(file_name))[0]
        corrupt(target)
        artifact_files = [case]
        before = snapshot(artifact_files)
        for c in kind.consumers:
            out = case / "out"
            argv = [a.format(path=root, root=case, out=out, data=data_dir, model=MODEL) for a in c.argv]
            res = runner.invoke(app, argv)
            where = f"{name} / {file_name} {cid} / {' '.join(c.argv[:2])}: "
            assert "Traceback" not in res.output, where + res.output
            if c.on_damage == "listed":
                assert res.exit_code == 0, where + res.output
                row = next((l for l in res.output.splitlines() if "│ damaged: " in l), "")
                assert target.name in row, where + res.output
            else:
                errors = [l[l.index("error:"):] for l in res.output.splitlines() if "error:" in l]
                assert res.exit_code == 2 and len(errors) == 1, where + repr(res.exception) + res.output
                assert target.name in errors[0], where + errors[0]
                assert not out.exists(), where + "created " + str(out)
            assert snapshot(artifact_files) == before, where + "changed the artifact"
            tried += 1
    print(f"{name}: {len(cases)} corruptions x {len(kind.consumers)} consumers = {tried} runs")


def test_runs_list_shows_a_damaged_run_and_goes_on(tmp_path, monkeypatch, cli):
    """One damaged folder (a results.json that is a list, a config.json that is not UTF-8) does not hide
    the others: each is a row saying what is wrong, the good run is listed as before, exit 0."""
    monkeypatch.setattr(common.console, "width", 1000)
    build_run(tmp_path / "good", None)
    build_run(tmp_path / "list-results", None)
    (tmp_path / "list-results" / "results.json").write_text("[1, 2]")
    build_run(tmp_path / "latin1-config", None)
    (tmp_path / "latin1-config" / "config.json").write_bytes('{"kind": "probe", "model": "café"}'.encode("latin-1"))
    text = cli(["runs", "list", str(tmp_path)])
    assert "Traceback" not in text, text
    rows = {l.split("│")[1].strip().rsplit("/", 1)[-1]: l for l in text.splitlines() if l.startswith("│")}
    assert "finished" in rows["good"] and "acc=0.500" in rows["good"]
    assert "damaged: results.json holds a JSON list, expected an object" in rows["list-results"]
    assert "damaged: config.json is not UTF-8 text" in rows["latin1-config"]


def test_runs_list_of_a_missing_root_is_an_error(tmp_path, cli):
    text = cli(["runs", "list", str(tmp_path / "nothere")], code=2)
    assert text.startswith("error:") and "nothere: no such folder" in text, text


def test_readers_name_the_file_in_library_calls(tmp_path):
    """The same errors for a notebook user: `ArtifactError` (a `BadInput`, a ValueError) naming the file."""
    from veracity.artifacts import ArtifactError, open_sqlite, read_json, read_npz, read_safetensors
    from veracity.validation import BadInput

    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00\x01garbage" * 10)
    for read in (lambda p: read_json(p, {"a": "int"}), lambda p: open_sqlite(p, {"t": ("c",)}),
                 lambda p: read_safetensors(p), lambda p: read_npz(p, {})):
        with pytest.raises(ArtifactError, match="x.bin") as e:
            read(bad)
        assert isinstance(e.value, BadInput) and isinstance(e.value, ValueError)
    with pytest.raises(ArtifactError, match="does not exist"):
        read_json(tmp_path / "nothere.json")
