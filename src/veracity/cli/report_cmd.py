"""`veracity report RUN... --out report.html`: one self-contained HTML page for run folders."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, fail


def report(runs: list[Path] = typer.Argument(..., help="Run folders, capture stores, or folders holding them."),
           out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
           title: str = typer.Option("veracity report", "--title", help="Page title."),
           overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier veracity report at --out.")) -> None:
    """Write a single HTML file (plots inlined, no network needed) with one section per run kind."""
    from ..outputs import Output
    from ..report import build_html, expand_runs
    from ..report.options import ReportConfig

    ReportConfig(title=title)
    dest = Output(out, "report", overwrite=overwrite)  # before reading anything: refuses at once
    try:
        found = expand_runs(runs)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if not found:
        fail(f"no run folders or capture stores under {', '.join(map(str, runs))}")
    doc, notes = build_html(found, title=title)
    with dest.writing() as tmp:
        tmp.write_text(doc, encoding="utf-8")
    for n in notes:
        console.print(f"[yellow]note:[/yellow] {n}")
    kinds = sorted({r.kind for r in found})
    console.print(f"wrote {out} ({len(doc) / 1024:.0f} KiB): {len(found)} run(s), kinds {', '.join(kinds)}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
