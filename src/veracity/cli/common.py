"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

# Piped into a log file (not a terminal), rich would squeeze tables into 80 columns and cut every cell;
# use a wide console there unless COLUMNS says otherwise.
console = Console(width=None if (sys.stdout.isatty() or os.environ.get("COLUMNS")) else 200)

DataDirOpt = typer.Option(None, "--data-dir", envvar="VERACITY_DATA",
                          help="Folder with the data sets (default: $VERACITY_DATA; the hub when online).")
ModelOpt = typer.Option("smollm2", "--model", "-m", help="Alias, local folder, .gguf file or hub id.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing finished run folder.")


def print_table(title: str, columns: list[str], rows: list[list], fmt: str = "{:.3f}") -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(str(c))
    for r in rows:
        t.add_row(*[fmt.format(v) if isinstance(v, float) else str(v) for v in r])
    console.print(t)


def fail(message: str) -> None:
    """Exit with a one-line error (no traceback) for a bad input."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def parse_int_list(text: Optional[str]) -> list[int] | None:
    if text is None or text in ("", "all"):
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"expected comma-separated integers, got {text!r}")


def parse_str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def data_dir_path(data_dir: Optional[Path]) -> Optional[Path]:
    return Path(data_dir) if data_dir else None
