"""`veracity runs list [DIR]`: the run folders under DIR with kind, model, data and headline metric."""

from __future__ import annotations

from pathlib import Path

import typer

from ..runs import list_runs
from .common import print_table

runs_app = typer.Typer(help="Manage run folders.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(root: Path = typer.Argument(Path("runs"), help="Folder to search for runs.")) -> None:
    """Show every run under ROOT."""
    rows = []
    for r in list_runs(root):
        head = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r["headline"].items())
        rows.append([r["path"], r["kind"], r["model"] or "", r["data"] or "", r["status"], head])
    print_table(f"runs under {root}", ["path", "kind", "model", "data", "status", "headline"], rows)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
