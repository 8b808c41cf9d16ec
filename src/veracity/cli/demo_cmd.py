"""`veracity demo`: the README's main job; no flags needed (see `veracity.experiments.demo` for what it shows)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, OverwriteOpt, console, fail


def print_demo_tables(tables) -> None:
    """The demo's tables as the console shows them: no vertical rules, short headers, long text folded, so each
    fits 80 columns (numbers to 3 decimals)."""
    from rich import box
    from rich.table import Table

    for title, columns, rows in tables:
        text = any(isinstance(v, str) and len(v) > 30 for r in rows for v in r)  # answers: one line per cell
        t = Table(title=title, box=box.SIMPLE_HEAD, show_lines=text)
        for c in columns:
            t.add_column(c, overflow="fold", no_wrap=not text)
        for r in rows:
            t.add_row(*[f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v) for v in r])
        console.print(t)


def demo(out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/demo-<timestamp>)."),
         model: str = typer.Option("smollm2", "--model", "-m"),
         data_dir: Optional[Path] = DataDirOpt,
         overwrite: bool = OverwriteOpt) -> None:
    """Find a truth direction in the embedded model, show where it fails (negation) and test it causally (offline).

    Statements about world cities from an embedded table are probed per layer and across polarity (logistic, \
mass-mean, TTPD); the truth direction is then added to the residual stream while the model answers yes/no \
questions. With a TruthfulQA folder, ITI answers are shown too. Writes report.html in the run folder."""
    from ..experiments.demo import DemoConfig, default_out, run_demo
    from ..models.loader import check_model_spec
    from ..report import render_report
    from ..runs import RunExists, check_out_folder

    cfg = DemoConfig(model=model, data_dir=str(data_dir) if data_dir else None)
    check_model_spec(model)  # an unknown model stops here, before any output
    out = out or default_out()
    check_out_folder(out, "demo", overwrite=overwrite)
    t0 = time.time()
    console.rule("[bold]veracity demo: where truth lives, where it fails, whether it is used")
    try:
        res = run_demo(cfg, out, overwrite=overwrite, log=lambda m: console.print(m, markup=False))
    except RunExists as e:
        fail(str(e))
    print_demo_tables(res.tables())
    for f in res.findings:
        console.print(f"- {f}")
    console.print(f"run folder {out} ({time.time() - t0:.0f} s)")
    console.print(f"report [bold]{render_report([out], out / 'report.html', title='veracity demo')}[/bold]")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
