"""The package layering (docs/extending.md): models/data -> capture -> probes -> steer/evaluate/compare/finetune
-> methods -> experiments -> report -> cli. A package imports only packages of its own level or below, the package graph
has no cycle, no circle of files exists anywhere, and no study in experiments/ imports another study; read statically
from every module's imports (function-level imports included; `if TYPE_CHECKING:` blocks, which never run, left out)."""

from __future__ import annotations

import ast
from pathlib import Path

import veracity

ROOT = Path(veracity.__file__).parent
LEVEL = {"": 0, "validation": 0, "constraints": 0, "artifacts": 0, "outputs": 0, "runs": 0, "metrics": 0, "_lazy": 0,  # "" = the package root (its version string only)
         "models": 1, "data": 1, "capture": 2, "probes": 3,
         "steer": 4, "evaluate": 4, "compare": 4, "finetune": 4, "methods": 5,
         "experiments": 6, "report": 7, "cli": 8}  # report: reads the experiments' typed results

#: modules of experiments/ that several studies share (every other module there is one study)
SHARED = {"__init__", "iti_common", "executors", "sweep", "registry"}


def package_of(parts: list[str]) -> str:
    return parts[0].removesuffix(".py") if parts else ""


def _is_type_checking(node: ast.AST) -> bool:
    t = node.test if isinstance(node, ast.If) else None
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute)
                                                                      and t.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST):
    """Every node of `tree`, except what sits under `if TYPE_CHECKING:` (annotations only; never imported)."""
    todo = [tree]
    while todo:
        n = todo.pop()
        yield n
        if _is_type_checking(n):
            todo += n.orelse
            continue
        todo += list(ast.iter_child_nodes(n))


def imports_of(f: Path) -> list[tuple[list[str], int]]:
    """(dotted path inside veracity as parts, line) of every veracity import in file `f`; `from X import name`
    gives X + [name] (the name may be a module or an object in X)."""
    rel = list(f.relative_to(ROOT).parts)
    here = rel[:-1]  # the module's package path inside veracity
    out: list[tuple[list[str], int]] = []
    for node in _nodes(ast.parse(f.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                mod = base + (node.module.split(".") if node.module else [])
            elif node.module and (node.module == "veracity" or node.module.startswith("veracity.")):
                mod = node.module.split(".")[1:]
            else:
                continue
            out += [(mod + [a.name], node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1:], node.lineno) for a in node.names if a.name.startswith("veracity.")]
    return out


def import_graph() -> dict[str, dict[str, set[str]]]:
    """{package: {imported package: {file:line, ...}}} over every module under src/veracity."""
    edges: dict[str, dict[str, set[str]]] = {}
    for f in sorted(ROOT.rglob("*.py")):
        rel = list(f.relative_to(ROOT).parts)
        src = package_of(rel if len(rel) > 1 else [rel[0]]) if rel != ["__init__.py"] else ""
        for t, line in imports_of(f):
            dst = package_of(t)
            if dst not in LEVEL:  # a name imported from the root package
                dst = ""
            if dst != src:
                edges.setdefault(src, {}).setdefault(dst, set()).add(f"{f.relative_to(ROOT)}:{line}")
    return edges


def module_file(parts: list[str]) -> str | None:
    """The file a dotted path inside veracity names: the longest prefix that is a module, or a package's
    __init__ (for `from pkg import name`); None outside veracity's files."""
    for n in range(len(parts), -1, -1):
        p = ROOT.joinpath(*parts[:n])
        if n and p.with_suffix(".py").is_file():
            return "/".join(parts[:n]) + ".py"
        if (p / "__init__.py").is_file():
            return "/".join(parts[:n] + ["__init__.py"])
    return None


def file_graph() -> dict[str, dict[str, int]]:
    """{file: {imported file: line}} over every module under src/veracity (paths relative to it)."""
    g: dict[str, dict[str, int]] = {}
    for f in sorted(ROOT.rglob("*.py")):
        me = "/".join(f.relative_to(ROOT).parts)
        for t, line in imports_of(f):
            dst = module_file(t)
            if dst and dst != me:
                g.setdefault(me, {}).setdefault(dst, line)
    return g


def file_circles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one file (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def study_imports(g: dict[str, dict[str, int]]) -> dict[tuple[str, str], str]:
    """{(study, imported study): "file:line"} inside experiments/."""
    out = {}
    for src, dsts in g.items():
        for dst, line in dsts.items():
            a, b = src.split("/"), dst.split("/")
            if len(a) == len(b) == 2 and a[0] == b[0] == "experiments":
                s, d = a[1].removesuffix(".py"), b[1].removesuffix(".py")
                if s not in SHARED and d not in SHARED:
                    out[(s, d)] = f"{src}:{line}"
    return out


def test_every_package_has_a_level():
    dirs = [p for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))]
    assert all((p / "__init__.py").exists() for p in dirs), "every folder of modules is a package (the tests read it)"
    pkgs = {p.name for p in dirs}
    pkgs |= {p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "__main__")}
    assert pkgs <= set(LEVEL), f"give these a level in LEVEL: {sorted(pkgs - set(LEVEL))}"


def test_no_upward_import():
    bad = [f"{src} (level {LEVEL[src]}) imports {dst} (level {LEVEL[dst]}) at {sorted(where)[0]}"
           for src, out in import_graph().items() for dst, where in out.items() if LEVEL[dst] > LEVEL[src]]
    assert not bad, "\n".join(bad)


def test_no_package_cycle():
    g = {s: set(o) for s, o in import_graph().items()}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in g.get(n, ()):
            if state.get(m) == 1:
                raise AssertionError("package cycle: " + " -> ".join(path[path.index(m):] + [m]) if m in path else m)
            if not state.get(m):
                visit(m, path + [m])
        state[n] = 2

    for n in list(g):
        if not state.get(n):
            visit(n, [n])


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """The graph reader finds relative, absolute and function-level imports (a planted module)."""
    pkg = tmp_path / "veracity"
    (pkg / "models").mkdir(parents=True)
    (pkg / "experiments").mkdir()
    for p in (pkg, pkg / "models", pkg / "experiments"):
        (p / "__init__.py").write_text("")
    (pkg / "models" / "x.py").write_text("def f():\n    from ..experiments import demo\n")
    (pkg / "models" / "y.py").write_text("import veracity.cli.main\n")
    global ROOT
    old, ROOT = ROOT, pkg
    try:
        g = import_graph()
    finally:
        ROOT = old
    assert g["models"]["experiments"] == {"models/x.py:2"} and "cli" in g["models"]


def test_no_circle_of_files():
    circles = file_circles(file_graph())
    assert not circles, "circles of files: " + "; ".join(" <-> ".join(c) for c in circles)


def test_no_study_imports_another_study():
    found = study_imports(file_graph())
    assert not found, "a study imports another study (give the shared piece a lower home): " + "; ".join(
        f"{a} -> {b} at {w}" for (a, b), w in sorted(found.items()))


def test_the_checker_sees_a_planted_circle_and_study_import(tmp_path):
    """A circle through a function-level import, a study importing a study (relative and absolute), and an
    import under `if TYPE_CHECKING:` that is not counted."""
    pkg = tmp_path / "veracity"
    (pkg / "steer").mkdir(parents=True)
    (pkg / "experiments").mkdir()
    for p in (pkg, pkg / "steer", pkg / "experiments"):
        (p / "__init__.py").write_text("")
    (pkg / "steer" / "a.py").write_text("from .b import f\n")
    (pkg / "steer" / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "steer" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import X\n")
    (pkg / "steer" / "d.py").write_text("from .c import Y\n")
    (pkg / "experiments" / "s1.py").write_text("def run():\n    from .s2 import x\n")
    (pkg / "experiments" / "s2.py").write_text("import veracity.experiments.s3\n")
    (pkg / "experiments" / "s3.py").write_text("from . import iti_common\n")
    (pkg / "experiments" / "iti_common.py").write_text("")
    global ROOT
    old, ROOT = ROOT, pkg
    try:
        g = file_graph()
        circles, studies = file_circles(g), study_imports(g)
    finally:
        ROOT = old
    assert circles == [["steer/a.py", "steer/b.py"]]
    assert set(studies) == {("s1", "s2"), ("s2", "s3")} and studies[("s1", "s2")] == "experiments/s1.py:2"
