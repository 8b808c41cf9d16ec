"""Build the API reference (HTML, pdoc) from the docstrings of every public module of veracity, strictly: a
public name without a docstring, a warning from pdoc (an import or annotation it cannot read) or a
`veracity.…` reference in a docstring that names nothing fails the build, so the reference cannot rot
silently. The CLI package is left out: its commands are documented by `veracity ... --help`.

    python docs/build_api.py              # writes docs/api/ (git-ignored); open docs/api/index.html
    python docs/build_api.py --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import pkgutil
import re
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "api"
EXCLUDED = r"veracity\.cli(\.|$)"
# a backticked fully qualified name that pdoc turned into a link is wrapped in <a>; one left bare names nothing
BARE_REFERENCE = re.compile(r"<code>(veracity(?:\.\w+)+)(?:\(\))?</code>")
# a backticked dotted name, as docstrings here write references: `models.adapter.ModelAdapter`, `health.is_degenerate`
DOTTED = re.compile(r"<code>([A-Za-z_]\w*(?:\.\w+)+)(\(\))?</code>")


def public_modules(package: str = "veracity") -> list[str]:
    """Every module of the package the reference documents (packages included, the CLI left out), imported."""
    pkg = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    names = [n for n in names if not re.match(EXCLUDED, n) and not n.rpartition(".")[2].startswith("_")]
    for n in names:
        mod = importlib.import_module(n)
        for attr in getattr(mod, "__all__", ()):  # a lazy package (PEP 562) binds its exports on first access
            getattr(mod, attr)
    return names


def _own_doc(obj) -> str:
    """The docstring written on `obj` itself: a dataclass's generated signature line does not count."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(obj.__name__ + "("):
            return ""
        return doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def _method_documented(cls: type, name: str) -> bool:
    """A method is documented by its own docstring or by the one of the method it overrides (pdoc shows that)."""
    return any(_own_doc(_function(base.__dict__[name])) for base in cls.__mro__ if name in base.__dict__
               and _function(base.__dict__[name]) is not None)


def _function(member):
    """The function behind a class member (method, static/class method, property getter), else None."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    elif isinstance(member, property):
        member = member.fget
    return member if inspect.isfunction(member) else None


def undocumented(modules: list[str]) -> list[str]:
    """Public names without a docstring: each module, and the classes, functions and public methods it defines
    (names not starting with `_`; names a module re-exports are checked where they are defined)."""
    missing = []
    for name in modules:
        mod = sys.modules[name] if name in sys.modules else importlib.import_module(name)
        if not _own_doc(mod):
            missing.append(name)
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isfunction(obj) and not _own_doc(obj):
                missing.append(f"{name}.{attr}")
            elif inspect.isclass(obj):
                if not _own_doc(obj):
                    missing.append(f"{name}.{attr}")
                for m, member in obj.__dict__.items():
                    if not m.startswith("_") and _function(member) is not None and not _method_documented(obj, m):
                        missing.append(f"{name}.{attr}.{m}")
    return missing


def qualify(html: str, here: str, modules: set[str]) -> str:
    """Write each backticked reference relative to a package (`models.load`, a sibling's `health.is_degenerate`)
    in full, as pdoc links only full names: its first part is looked up as a module beside `here`, then beside
    each package above it. Other dotted text (`results.json`, `torch.std`, `cfg.seed`) is left alone."""
    def full(m: re.Match) -> str:
        name, call = m.group(1), m.group(2) or ""
        first, last = name.split(".")[0], name.rsplit(".", 1)[1]
        if first == "veracity" or last == "py":
            return m.group(0)
        parts = here.split(".")
        for i in range(len(parts), 0, -1):
            package = ".".join(parts[:i])
            if f"{package}.{first}" in modules:
                return f"<code>{package}.{name}{call}</code>"
        return m.group(0)

    return DOTTED.sub(full, html)


def build(out: str | Path, modules: list[str]) -> list[str]:
    """Render `modules` (names, each a page) into `out` with pdoc; returns the problems: pdoc's warnings and
    references that name nothing documented (a `veracity.…` name left bare, once `qualify` wrote it in full)."""
    import jinja2
    import pdoc.doc
    import pdoc.render

    out = Path(out)
    pdoc.render.configure(docformat="markdown", show_source=False, search=True)
    linkify, names = pdoc.render.env.filters["linkify"], set(modules)

    @jinja2.pass_context
    def linkify_qualified(context, code: str, namespace: str = "", shorten: bool = True):
        return linkify(context, qualify(code, context["module"].modulename, names), namespace, shorten)

    pdoc.render.env.filters["linkify"] = linkify_qualified
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            docs = {name: pdoc.doc.Module.from_name(name) for name in modules}
            for name, doc in docs.items():
                # every submodule in the navigation: pdoc would list only those a package's `__all__` names
                doc.__dict__["submodules"] = [d for n, d in docs.items() if n.rpartition(".")[0] == name]
            for name, doc in docs.items():
                page = out / f"{name.replace('.', '/')}.html"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text(pdoc.render.html_module(doc, docs))
            (out / "index.html").write_text(pdoc.render.html_index(docs))
            (out / "search.js").write_text(pdoc.render.search_index(docs))
    finally:
        pdoc.render.env.filters["linkify"] = linkify
    problems = [f"pdoc: {w.message}" for w in caught]
    for page in sorted(out.rglob("*.html")):
        for ref in sorted(set(BARE_REFERENCE.findall(page.read_text()))):
            problems.append(f"{page.relative_to(out)}: `{ref}` does not resolve to a documented name")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Build into --out; print every problem and return 1 when there is any."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: docs/api)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    modules = public_modules()
    problems = [f"no docstring: {n}" for n in undocumented(modules)]
    problems += build(args.out, modules)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"API reference: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"API reference: {len(modules)} modules in {Path(args.out) / 'index.html'} "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
