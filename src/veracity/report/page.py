"""The page shell's pieces: run folders read from disk, the page being built, and the HTML primitives
(escaped text, sortable tables, inlined images) every section writes with.

Nothing here knows a run kind's results.json layout: a section reads its kind's typed result
(`Result.from_json`) and calls these helpers with what it found."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import metrics as _metrics



@dataclass
class Run:
    """One run folder (config.json with a kind) or one capture store (manifest.json; `results` is then
    the store's summary)."""

    path: Path
    kind: str
    config: dict
    results: dict
    status: str


@dataclass
class Page:
    """The page being built; holds the per-report counters so nothing is module-global."""

    parts: list[str] = field(default_factory=list)
    n_tables: int = 0
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)  # every run of the report (an ITI run finds its baseline here)

    def add(self, s: str) -> None:
        """Append raw HTML (already escaped) to the page."""
        self.parts.append(s)

    def note(self, text: str) -> None:
        """Append a note paragraph (the text is escaped)."""
        self.add(f'<p class="note">{esc(text)}</p>')

    def warn(self, msg: str) -> None:
        """A visible note in the page, also returned to the caller (the CLI prints it)."""
        self.notes.append(msg)
        self.add(f'<p class="warn">{esc(msg)}</p>')


# ----------------------------------------------------------------------------------------- loading

def load_run(path: str | Path, damaged_ok: bool = False) -> Run:
    """Read a run folder or a capture store with the artifact readers (`veracity.artifacts`). A damaged
    config.json or results.json is `ArtifactError` naming the file, or with `damaged_ok` (a run found under
    a root the user named) a run with status "damaged: FILE ...", shown with its header and files only,
    as `runs list` shows it. Raises ValueError for a folder that is neither a run nor a store."""
    from ..artifacts import RUN_RESULTS, ArtifactError, read_json, short
    from ..runs import run_config

    path = Path(path)
    try:
        cfg = run_config(path)
    except ArtifactError as e:
        if not damaged_ok:
            raise
        return Run(path, "damaged", {}, {}, f"damaged: {short(e, path)}")
    if cfg is not None:
        res_path, res, status = path / "results.json", None, "unfinished"
        if res_path.exists():
            try:
                res, status = read_json(res_path, RUN_RESULTS, "run results"), "finished"
            except ArtifactError as e:
                if not damaged_ok:
                    raise
                status = f"damaged: {short(e, path)}"
        return Run(path, str(cfg["kind"]), cfg, res or {}, status)
    if (path / "manifest.json").exists():
        from ..capture.store import verify_store

        # the store's own checks, as `--acts` gets them (manifest, hash, every shard's size, header and CRC-32):
        # StoreDamaged (a ValueError) names the file
        manifest = verify_store(path)
        summary = capture_summary(path, manifest)
        return Run(path, "capture", manifest, summary, "finished" if summary["complete"] else "unfinished")
    raise ValueError(f"{path} is neither a run folder (config.json with a kind) nor a capture store (manifest.json)")


def expand_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Each path is a run, a store, or a folder searched recursively for both (stores inside a run are
    shown with that run, not again on their own)."""
    runs: list[Run] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such run folder")
        if (p / "config.json").exists() or (p / "manifest.json").exists():
            cands = [p]
        else:
            cands = sorted({c.parent for c in p.rglob("config.json")} | {m.parent for m in p.rglob("manifest.json")})
            run_roots = [c for c in cands if (c / "config.json").exists()]
            cands = [c for c in cands if (c / "config.json").exists()
                     or not any(r in c.parents for r in run_roots)]
        for c in cands:
            if c.resolve() in seen:
                continue
            try:  # a run named directly must be readable; one found under a root may be listed as damaged
                runs.append(load_run(c, damaged_ok=c != p))
            except ValueError:
                if c == p:
                    raise
                continue
            seen.add(c.resolve())
    return runs


def human_bytes(n: float) -> str:
    """A byte count in binary units ("1.5 MiB"), for store sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def capture_summary(root: Path, manifest: dict) -> dict:
    """What a store holds and its size, from its manifest (capture.store's layout; no tensors read)."""
    by_kind: dict[str, list[str]] = {}
    for site in manifest["sites"]:
        by_kind.setdefault(site.partition(".")[0], []).append(site)
    nbytes = sum((root / s["file"]).stat().st_size for s in manifest["shards"] if (root / s["file"]).exists())
    rows, labels, arch = manifest["n_rows"], manifest.get("labels"), manifest["model"]["arch"]
    out = {"path": str(root), "model": manifest["model"]["name"], "dataset": manifest["dataset"]["name"],
           "rows": rows, "positions": manifest["positions"], "dtype": manifest["dtype"],
           "sites": ", ".join(f"{k} x{len(v)} {manifest['shapes'][v[0]]}" for k, v in by_kind.items()),
           "bytes": nbytes, "size": human_bytes(nbytes), "bytes_per_row": round(nbytes / rows) if rows else None,
           "complete": manifest.get("complete", False),
           "architecture": f"{arch['model_type']}: {arch['n_layers']} layers, {arch['n_heads']} heads, "
                           f"head_dim {arch['head_dim']}"}
    if labels and all(v in (0, 1) for v in labels):
        out["labels"] = f"{sum(labels)} true / {len(labels) - sum(labels)} false"
    return out


# ----------------------------------------------------------------------------------------- html primitives

def num(v: Any) -> bool:
    """Whether `v` is a finite real number (bools excluded): what a table may format and a plot may draw."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any) -> str:
    """How the page writes a value: 4 significant digits for floats (the test formats headline figures
    with this to find them in a section)."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v)
        return s if len(s) <= 120 else s[:117] + "..."
    return str(v)


def _sort_key(v: Any) -> str:
    if num(v):
        return repr(float(v))
    if isinstance(v, str):
        try:
            return repr(float(v))
        except ValueError:
            return ""
    return ""


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def esc(s: Any) -> str:
    """HTML-escaped text; control characters (which generated answers of small models contain) become
    U+FFFD and lone surrogates '?', so the page stays valid HTML and always encodes as UTF-8."""
    text = _CONTROL.sub("\ufffd", str(s)).encode("utf-8", "replace").decode("utf-8")
    return html.escape(text, quote=True)


def table(page: Page, columns: list[str], rows: list[list[Any]], caption: str = "", note: str = "") -> None:
    """A sortable table: every header click sorts by that column (numerically where the cells are numbers)."""
    page.n_tables += 1
    out = [f'<table class="sortable" id="t{page.n_tables}">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th title="click to sort">{esc(c)}</th>' for c in columns) + "</tr></thead><tbody>")
    for r in rows:
        cells = []
        for v in r:
            sk = _sort_key(v)
            attr = f' data-v="{esc(sk)}"' if sk else ""
            cls = ' class="num"' if sk else ""
            cells.append(f"<td{attr}{cls}>{esc(fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="note">{esc(note)}</p>')
    page.add("\n".join(out))


def records_table(page: Page, records: list[dict], keys: tuple, caption: str, labels: bool = True,
                  note: str = "") -> None:
    """A table of result rows: the key columns, then every other column with a number in some row, in the
    order they first appear (TruthfulQA metrics first, under their paper labels unless `labels` is off)."""
    if not records:
        return
    first = _metrics.columns("results")  # the TruthfulQA metrics, under the ITI paper's column names
    rest = list(dict.fromkeys(k for r in records for k in r if k not in keys))
    cols = list(keys) + [k for k in first if k in rest] + [k for k in rest if k not in first]
    cols = [c for c in cols if c in keys or any(num(r.get(c)) for r in records)]
    table(page, [_metrics.column_label(c) if c in first else c for c in cols] if labels else cols,
          [[r.get(c) for c in cols] for r in records],
          caption=caption, note=note)


def img(page: Page, png: bytes, alt: str) -> None:
    """Embed a PNG as a captioned figure (base64 inline), so the report is one self-contained file."""
    b64 = base64.b64encode(png).decode("ascii")
    page.add(f'<figure><img src="data:image/png;base64,{b64}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>')
