"""`render_report`: one self-contained HTML page for any set of run folders and capture stores.

Researchers read pictures far more than JSON, and they read them offline and share them by e-mail,
so the page carries everything inline: plots as base64 PNG, a few lines of CSS and of JavaScript
(click a table header to sort), and no network reference at all.

This module is the page shell: the capture stores first, then one page section per heading of
`sections.SECTIONS` (in its order), each run under it with its header, its kind's section (which reads
the kind's typed result, `Result.from_json`), and the CSVs, PNGs and config.json the run wrote. A run of
a kind without a section (or unfinished) still shows its header and files; a results.json its section
cannot read (another schema) gets one message in the page instead of its figures.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..outputs import REPORT_MARK, Output
from .page import Page, Run, capture_summary, esc, expand_runs, fmt, img, load_run, table
from .sections import SECTIONS, section_of

__all__ = ["build_html", "capture_summary", "expand_runs", "load_run", "render_report"]

MAX_CSV_ROWS = 300
# config.json options shown in a run's header, when the command has them
HEADER_KEYS = ("model", "assistant", "dataset", "data", "prompts")


def _section(page: Page, run: Run) -> None:
    """The run's section, or one message when it cannot read the run's results.json (the section's
    partial output is dropped, so the page never shows half a section)."""
    render = section_of(run.kind)[1]
    mark = len(page.parts)
    page.add('<div class="results">')
    try:
        render(page, run)
    except Exception as e:  # noqa: BLE001 - one unreadable results.json must not lose the report
        del page.parts[mark:]
        page.warn(f"{run.path}: results.json (kind {run.kind}, schema_version {run.results.get('schema_version', 0)}) "
                  f"is not in the layout this veracity reads ({type(e).__name__}: {e}); its figures are left out")
        return
    page.add("</div>")


def _capture_table(page: Page, stores: list[dict]) -> None:
    cols = ["path", "model", "dataset", "rows", "sites", "positions", "dtype", "size", "bytes_per_row", "labels",
            "complete"]
    table(page, cols, [[s.get(c) for c in cols] for s in stores], caption="activation stores")
    for s in stores:
        page.note(f"{s['path']}: {s['architecture']}")


def _run_header(page: Page, run: Run) -> None:
    info = run.results if run.kind == "capture" else run.config
    bits = [f"kind <b>{esc(run.kind)}</b>", f"status {esc(run.status)}"]
    bits += [f"{k} <b>{esc(info[k] if isinstance(info[k], str) else fmt(info[k]))}</b>" for k in HEADER_KEYS if info.get(k)]
    if run.config.get("created"):
        bits.append(f"created {esc(run.config['created'])}")
    page.add(f'<h3>{esc(run.path)}</h3><p class="meta">{" &middot; ".join(bits)}</p>')
    head = run.results.get("headline")
    if isinstance(head, dict) and head:
        page.add('<p class="headline">' + " &middot; ".join(f"{esc(k)} = <b>{esc(fmt(v))}</b>"
                                                           for k, v in head.items()) + "</p>")


def _run_files(page: Page, run: Run) -> None:
    """The run's own PNGs and CSVs, so anything a command writes is visible even without a section."""
    for p in sorted(run.path.glob("*.png")):
        img(page, p.read_bytes(), f"{p.name} (written by the run)")
    for p in sorted(run.path.glob("*.csv")):
        try:
            with open(p, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = [r for _, r in zip(range(MAX_CSV_ROWS), reader)]
                more = sum(1 for _ in reader)
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            page.warn(f"could not read {p}: {e}")
            continue
        if header:
            page.add(f"<details><summary>{esc(p.name)} ({len(rows) + more} rows)</summary>")
            table(page, header, rows, note=f"first {MAX_CSV_ROWS} rows shown; {more} more in {p}" if more else "")
            page.add("</details>")
    cfg = {k: v for k, v in run.config.items() if k != "argv"}
    page.add(f"<details><summary>config.json</summary><pre>{esc(json.dumps(cfg, indent=1)[:20000])}</pre></details>")


def _stores(runs: list[Run]) -> list[dict]:
    """Every capture store of the report: the stores given, and those a run keeps in a sub-folder."""
    out: dict[str, dict] = {}
    for run in runs:
        if run.kind == "capture":
            out.setdefault(run.results["path"], run.results)
            continue
        for m in sorted(run.path.glob("*/manifest.json")):
            try:
                out.setdefault(str(m.parent), load_run(m.parent).results)
            except ValueError:  # a damaged store inside a run only drops out of the stores table
                continue
    return list(out.values())


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:1em 1.5em;color:#1d2125;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2em;margin-top:2em}
h3{font-size:1em;font-family:ui-monospace,monospace;margin:1.5em 0 .2em;color:#333}
.meta,.note{color:#57606a;margin:.2em 0}.headline{background:#f6f8fa;padding:.4em .6em;border-radius:4px}
.warn{color:#9a3412;background:#fff7ed;padding:.3em .6em}
table.sortable{border-collapse:collapse;margin:.6em 0;font-size:13px;display:block;overflow-x:auto;max-width:100%}
caption{text-align:left;font-weight:600;padding:.2em 0;caption-side:top}
th,td{border:1px solid #d0d7de;padding:.2em .5em;vertical-align:top;max-width:36em}
th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:nowrap}
th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.8em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#57606a;font-size:12px}pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:12px}
nav a{margin-right:1em}
"""

_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){
  th.addEventListener('click',function(){
    var table=th.closest('table'),body=table.tBodies[0],idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=!th.classList.contains('asc');
    th.parentNode.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var rows=Array.prototype.slice.call(body.rows);
    function key(r){var c=r.cells[idx];if(!c)return[1,''];var v=c.getAttribute('data-v');
      return v!==null?[0,parseFloat(v)]:[1,c.textContent];}
    rows.sort(function(a,b){var x=key(a),y=key(b);if(x[0]!==y[0])return x[0]-y[0];
      var r=x[0]===0?x[1]-y[1]:x[1].localeCompare(y[1]);return asc?r:-r;});
    rows.forEach(function(r){body.appendChild(r);});
  });
});
"""


def build_html(runs: list[Run], title: str = "veracity report") -> tuple[str, list[str]]:
    """The page for these runs, and the notes on what could not be rendered."""
    page = Page(runs=list(runs))
    stores = _stores(runs)
    groups: dict[str, list[Run]] = {"Capture": [r for r in runs if r.kind == "capture"]} if stores else {}
    headings = [h for h, _ in SECTIONS.values()] + [section_of(r.kind)[0] for r in runs if section_of(r.kind)]
    for heading in dict.fromkeys(headings):
        members = [r for r in runs if section_of(r.kind) and section_of(r.kind)[0] == heading]
        if members:
            groups[heading] = members
    other = [r for r in runs if not section_of(r.kind) and r.kind != "capture"]
    if other:
        groups["Other runs"] = other
    anchor = {h: re.sub(r"[^a-z0-9]+", "-", h.lower()).strip("-") for h in groups}
    page.add(f"<h1>{esc(title)}</h1>")
    page.add(f'<p class="meta">{len(runs)} run(s): '
             + ", ".join(f"{esc(r.path.name)} ({esc(r.kind)})" for r in runs) + "</p>")
    page.add("<nav>" + "".join(f'<a href="#{anchor[h]}">{esc(h)}</a>' for h in groups) + "</nav>")
    for heading, members in groups.items():
        page.add(f'<section id="{anchor[heading]}"><h2>{esc(heading)}</h2>')
        if heading == "Capture":
            _capture_table(page, stores)
        for r in members:
            _run_header(page, r)
            if r.status.startswith("damaged"):
                page.warn(f"{r.path}: {r.status}")
            if r.kind == "capture":
                continue
            if section_of(r.kind) and r.status == "finished":
                _section(page, r)
            _run_files(page, r)
        page.add("</section>")
    body = "\n".join(page.parts)
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{REPORT_MARK}'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{_CSS}</style></head>'
           f"<body>\n{body}\n<script>{_JS}</script></body></html>\n")
    return doc, page.notes


def render_report(run_dirs: list[Path], out: Path, title: str = "veracity report", *,
                  overwrite: bool = False) -> Path:
    """Write one self-contained HTML report for the given run folders / capture stores (or folders of
    them) to `out`; returns `out`. Through the writer guard: `out` is a new .html file or (with
    `overwrite`) an earlier veracity report; anything else is refused before any work."""
    dest = Output(out, "report", overwrite=overwrite)
    runs = expand_runs(run_dirs)
    if not runs:
        raise ValueError(f"no run folders or capture stores found in {', '.join(map(str, run_dirs))}")
    doc, _ = build_html(runs, title=title)
    with dest.writing() as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return dest.path
