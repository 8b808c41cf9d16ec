"""`veracity run KIND --set KEY=VALUE ... --out DIR`: any registered study (`experiments.registry.STUDIES`) from
its Config's fields, so a newly registered study is runnable without a CLI edit; `veracity run --list` lists
the kinds. The study's own command (`veracity ccs`, ...) has the same settings as named options."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import OverwriteOpt, console, fail, print_table


def run_command(
    kind: Optional[str] = typer.Argument(None, help="A registered study kind (`veracity run --list`)."),
    settings: List[str] = typer.Option([], "--set", "-s",
                                       help="KEY=VALUE: a field of the study's Config (repeatable); lists as "
                                            "a,b or [1, 2], none for None, KEY.SUB=VALUE for a nested Config."),
    out: Optional[Path] = typer.Option(None, "--out", "-o"),
    overwrite: bool = OverwriteOpt,
    list_kinds: bool = typer.Option(False, "--list", help="List the registered study kinds and exit."),
) -> None:
    """Run any registered study from its Config's fields, and print its tables."""
    from ..experiments.registry import STUDIES, run_study

    if list_kinds:
        print_table("registered studies", ["kind", "command", "config", "result"],
                    [[k, f"veracity {s.command}", s.config.__name__, s.result.__name__] for k, s in STUDIES.items()])
        return
    if kind is None or out is None:
        fail("give a study kind and --out (or --list)")
    res = run_study(kind, settings, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    console.print(f"done; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
