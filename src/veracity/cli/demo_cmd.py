"""`veracity demo`: the README's main job; no flags needed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt


def demo(out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/demo-<timestamp>)."),
         model: str = typer.Option("smollm2", "--model", "-m"),
         data_dir: Optional[Path] = DataDirOpt) -> None:
    """Run everything end to end on the embedded default model and data (offline)."""
    from ..demo import run_demo

    run_demo(out=out, model=model, data_dir=data_dir)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
