"""`veracity demo`: the README's main job; no flags needed (see `veracity.experiments.demo` for what it shows)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, OverwriteOpt, console, fail


def demo(out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/demo-<timestamp>)."),
         model: str = typer.Option("smollm2", "--model", "-m"),
         data_dir: Optional[Path] = DataDirOpt,
         overwrite: bool = OverwriteOpt) -> None:
    """Find a truth direction in the embedded model, show where it fails (negation) and test it causally (offline).

    Statements about world cities from an embedded table are probed per layer and across polarity (logistic, \
mass-mean, TTPD); the truth direction is then added to the residual stream while the model answers yes/no \
questions. With a TruthfulQA folder, ITI answers are shown too. Writes report.html in the run folder."""
    from ..experiments.demo import default_out, run_demo
    from ..models.loader import LoadConfig, check_model_spec
    from ..report import render_report
    from ..runs import RunExists, check_out_folder

    LoadConfig(model=model)
    check_model_spec(model)  # an unknown model stops here: run_demo creates its run folder first
    out = out or default_out()
    check_out_folder(out, "demo", overwrite=overwrite)
    try:
        run_demo(out=out, model=model, data_dir=data_dir, overwrite=overwrite)
    except RunExists as e:
        fail(str(e))
    console.print(f"report [bold]{render_report([out], out / 'report.html', title='veracity demo')}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
