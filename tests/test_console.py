"""What a researcher sees in the terminal: tables that fit 80 columns, and no warnings from veracity's own
calls (every FutureWarning is an error in the whole suite: pyproject's filterwarnings)."""

from __future__ import annotations

import re

from rich.cells import cell_len


def test_demo_console_fits_80_columns(tmp_path, monkeypatch, cli):
    """The demo's tables and findings at a terminal of 80 columns: no line wider than the terminal (rich
    wraps lines, so a table too wide shows up as truncated cells, checked below, not as long lines)."""
    import veracity.cli.common as common

    monkeypatch.setattr(common.console, "_width", 80)  # the CLI's shared console, as in an 80-column terminal
    monkeypatch.setenv("COLUMNS", "80")
    out = cli(["demo", "--model", "tiny-llama", "--out", tmp_path / "d"])
    # progress bars (tqdm, on stderr; redrawn in place on a terminal) are not the tables under test
    lines = [re.sub(r"^.*?\d+/\d+ \[[^\]]*\]", "", x) for x in out.splitlines()]
    assert max(cell_len(x) for x in lines) <= 80
    assert not any("…" in x for x in lines), "a table cell was truncated to fit 80 columns"


def test_cli_starts_without_torch(tmp_path):
    """`veracity --help` and `veracity runs list` import neither torch nor transformers (each costs seconds
    at start-up): the commands that need them import them when they run."""
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom veracity.cli.main import app\n"
            f"for args in (['--help'], ['runs', 'list', {str(tmp_path)!r}]):\n"
            "    r = CliRunner().invoke(app, args)\n    assert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
