"""The package layering (docs/extending.md): models/data -> capture -> probes -> steer/evaluate/compare/finetune
-> experiments -> report -> cli. A package imports only packages of its own level or below, and the package graph has no
cycle; read statically from every module's imports (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

import veracity

ROOT = Path(veracity.__file__).parent
LEVEL = {"": 0, "validation": 0, "constraints": 0, "artifacts": 0, "outputs": 0, "runs": 0, "metrics": 0,  # "" = the package root (its version string only)
         "models": 1, "data": 1, "capture": 2, "probes": 3,
         "steer": 4, "evaluate": 4, "compare": 4, "finetune": 4,
         "experiments": 5, "report": 6, "cli": 7}  # report: reads the experiments' typed results


def package_of(parts: list[str]) -> str:
    return parts[0].removesuffix(".py") if parts else ""


def import_graph() -> dict[str, dict[str, set[str]]]:
    """{package: {imported package: {file:line, ...}}} over every module under src/veracity."""
    edges: dict[str, dict[str, set[str]]] = {}
    for f in sorted(ROOT.rglob("*.py")):
        rel = list(f.relative_to(ROOT).parts)
        src = package_of(rel if len(rel) > 1 else [rel[0]]) if rel != ["__init__.py"] else ""
        here = rel[:-1]  # the module's package path inside veracity
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets: list[list[str]] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                    mod = base + (node.module.split(".") if node.module else [])
                    targets = [mod] if node.module else [mod + [a.name] for a in node.names]
                elif node.module and (node.module == "veracity" or node.module.startswith("veracity.")):
                    targets = [node.module.split(".")[1:]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1:] for a in node.names if a.name.startswith("veracity.")]
            for t in targets:
                dst = package_of(t)
                if dst not in LEVEL:  # a name imported from the root package
                    dst = ""
                if dst != src:
                    edges.setdefault(src, {}).setdefault(dst, set()).add(f"{f.relative_to(ROOT)}:{node.lineno}")
    return edges


def test_every_package_has_a_level():
    pkgs = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
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
