"""Reports: one self-contained HTML page (plots inlined, sortable tables) for any set of run folders."""

from .html import build_html, capture_summary, expand_runs, load_run, render_report

__all__ = ["build_html", "capture_summary", "expand_runs", "load_run", "render_report"]
