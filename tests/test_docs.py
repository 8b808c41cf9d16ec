"""Every `veracity ...` command in a fenced ```bash block of docs/ and README.md exists in the real CLI, with every
option it uses, so the docs cannot drift from the code. Blocks fenced as ```bash not-yet document
commands still being written and are skipped (a test lists them); `make X` lines must name a Makefile
target."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import typer

from veracity.cli.main import app

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
SHELL_OPS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "&"}


def _doc_pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]


def doc_blocks() -> list[tuple[str, int, str, str]]:
    """(doc path, line number, info string, body) of every fenced block under docs/ and in README.md."""
    out = []
    for md in _doc_pages():
        text = md.read_text()
        for m in FENCE.finditer(text):
            out.append((str(md.relative_to(REPO)), text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2)))
    return out


def commands(block: str) -> list[str]:
    """Shell lines of a block, continuation backslashes joined, comments and prompts dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        line = re.sub(r"\s+#\s.*$", "", line)  # a trailing "  # comment"
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _cases(prog: str, skip_not_yet: bool = True) -> list:
    cases = []
    for path, lineno, info, body in doc_blocks():
        words = info.split()
        if not words or words[0] not in ("bash", "sh", "shell"):
            continue
        if skip_not_yet and "not-yet" in words[1:]:
            continue
        for cmd in commands(body):
            if cmd.split()[0] == prog:
                cases.append(pytest.param(cmd, id=f"{path}:{lineno}:{cmd[:60]}"))
    return cases


def check_against_cli(cmd: str, cli) -> None:
    """Resolve the subcommand path and check every option against the click command typer builds; `cli` (the
    conftest fixture) runs `--help` of the resolved command."""
    tokens = shlex.split(cmd)[1:]
    for i, t in enumerate(tokens):
        if t in SHELL_OPS:
            tokens = tokens[:i]
            break
    root = typer.main.get_command(app)
    node, path = root, []
    # typer vendors its own click, so groups are recognised by their `commands` table, not by class
    while isinstance(getattr(node, "commands", None), dict) and tokens and not tokens[0].startswith("-"):
        sub = node.commands.get(tokens[0])
        assert sub is not None, f"`veracity {' '.join(path + [tokens[0]])}` is not a command (in: {cmd})"
        path.append(tokens.pop(0))
        node = sub
    assert not isinstance(getattr(node, "commands", None), dict) or path == [] and tokens == ["--help"], \
        f"`veracity {' '.join(path)}` needs a subcommand (in: {cmd})"
    opts: dict[str, object] = {}
    for p in node.params:
        for o in list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", [])):
            if o.startswith("-"):
                opts[o] = p
    opts["--help"] = None
    i = 0
    while i < len(tokens):
        t = tokens[i]
        i += 1
        if not t.startswith("-") or re.match(r"^-\d", t):
            continue
        name, has_value = t.split("=", 1)[0], "=" in t
        assert name in opts, f"option {name} does not exist for `veracity {' '.join(path)}` (in: {cmd})"
        p = opts[name]
        if p is not None and not (getattr(p, "is_flag", False) or getattr(p, "count", False)) and not has_value:
            assert i < len(tokens), f"option {name} needs a value (in: {cmd})"
            i += 1
    cli(path + ["--help"])


LINK = re.compile(r"\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|tests|benchmarks|src)/[\w./-]*\w)(?:::(\w+))?")


#: folders .gitignore names (build outputs such as docs/api/): a page may name them before they are built
GENERATED = tuple(line.strip().strip("/") + "/" for line in (REPO / ".gitignore").read_text().splitlines()
                  if line.strip().endswith("/") and not line.startswith("#"))


def _defined(path: Path) -> set[str]:
    """Names of the functions and classes a Python file defines, read from its syntax tree."""
    return {n.name for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def test_docs_name_only_files_and_tests_that_exist():
    """What the pages point at, checked against the file tree and the test files' syntax trees: every relative
    link resolves from its page; every repository path (`docs/...`, `tests/...`, `benchmarks/...`, `src/...`)
    exists, and `tests/x.py::name` names a function of that file; every test named in backticks
    (`test_...`) is defined under tests/ (docs/reference/ is left out: there `test_size`, `test_cities` are
    result fields). So a moved test file or a renamed test cannot leave a page pointing at nothing."""
    tests_defined = set().union(*(_defined(f) for f in (REPO / "tests").rglob("*.py")))
    wrong, seen = [], 0
    for md in _doc_pages():
        text, page = md.read_text(), md.relative_to(REPO)
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z+.-]*:", target) or target.startswith("#"):
                continue  # a URL (http:, mailto:) or an anchor on the same page
            seen += 1
            if not (md.parent / target.split("#", 1)[0]).exists():
                wrong.append(f"{page}: link to {target}")
        for path, name in REPO_PATH.findall(text):
            seen += 1
            if (path + "/").startswith(GENERATED):
                continue  # a build output the page tells you how to make (git-ignored, never committed)
            if not (REPO / path).exists():
                wrong.append(f"{page}: {path} does not exist")
            elif name and name not in _defined(REPO / path):
                wrong.append(f"{page}: {path} defines no {name}")
        if page.parts[:2] != ("docs", "reference"):
            for name in re.findall(r"`(test_\w+)`", text):
                seen += 1
                if name not in tests_defined:
                    wrong.append(f"{page}: no test is named {name}")
    assert seen and not wrong, "\n".join(wrong)


@pytest.mark.parametrize("cmd", _cases("veracity"))
def test_doc_command_matches_cli(cmd, cli):
    check_against_cli(cmd, cli)


@pytest.mark.parametrize("cmd", _cases("make"))
def test_doc_make_target_exists(cmd):
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
    for t in shlex.split(cmd)[1:]:
        if not t.startswith("-") and "=" not in t:
            assert t in targets, f"make target {t} not in the Makefile (in: {cmd})"


def _scan_fences(text: str) -> list[tuple[int, str]]:
    """(line number, info string) of each fenced block, found line by line (not by FENCE), indented fences
    included: an independent reading of the same pages."""
    out, open_at = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if open_at is None and line.lstrip().startswith("```"):
            open_at = (n, line.lstrip()[3:].strip())
        elif open_at is not None and re.fullmatch(r"\s*```\s*", line):
            out.append(open_at)
            open_at = None
    assert open_at is None, f"a fence opened at line {open_at[0]} is never closed"
    return out


def test_every_block_is_checked_and_not_yet_commands_do_not_exist_yet(cli):
    """The blocks the checks above run on are every fenced block of every page (a line-by-line scan finds the
    same ones: none hidden by indentation or an unclosed fence), and a command still tagged `not-yet` really
    is not in the CLI yet (once it lands, the tag must go so that test_doc_command_matches_cli checks it)."""
    found = [(path, lineno, info) for path, lineno, info, _ in doc_blocks()]
    scanned = [(str(md.relative_to(REPO)), n, info) for md in _doc_pages() for n, info in _scan_fences(md.read_text())]
    assert found == scanned and any(info.split()[:1] == ["bash"] for _, _, info in found)
    for path, lineno, info, body in doc_blocks():
        if info.split()[:1] == ["bash"] and "not-yet" in info.split()[1:]:
            for cmd in commands(body):
                if cmd.split()[0] == "veracity":
                    with pytest.raises(AssertionError):
                        check_against_cli(cmd, cli)
                    print(f"not yet checked: {path}:{lineno}: {cmd}")


def test_checker_catches_drift(cli):
    check_against_cli("veracity capture --model smollm2 --dataset synthetic --out runs/x", cli)
    with pytest.raises(AssertionError, match="does not exist"):
        check_against_cli("veracity capture --no-such-flag 1 --out x", cli)
    with pytest.raises(AssertionError, match="is not a command"):
        check_against_cli("veracity frobnicate --out x", cli)
    with pytest.raises(AssertionError, match="needs a subcommand"):
        check_against_cli("veracity runs", cli)


def test_extending_examples_run():
    """The worked examples of docs/extending.md run as written (fresh namespace each, in order)."""
    blocks = [body for path, _, info, body in doc_blocks() if path == "docs/extending.md" and info == "python"]
    assert len(blocks) == sum(line.strip() == "```python" for line in (DOCS / "extending.md").read_text().splitlines())
    try:
        for body in blocks:
            exec(compile(body, "docs/extending.md", "exec", dont_inherit=True), {"__name__": "docs_example"})
    finally:
        from veracity.probes import PROBES

        PROBES.pop("median-diff", None)
