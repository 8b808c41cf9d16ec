"""`render_report`: one self-contained HTML page for any set of run folders and capture stores.

Researchers read pictures far more than JSON, and they read them offline and share them by e-mail,
so the page carries everything inline: plots as base64 PNG, a few lines of CSS and of JavaScript
(click a table header to sort), and no network reference at all.

There is one section per run kind present, in a fixed order (capture, demo, probes, CCS,
TruthfulQA/ITI, model pairs, other). The results.json layouts of the commands are read tolerantly:
each figure or table is drawn from whichever of its accepted keys is present and silently left
out when none is, and a part that fails to render is replaced by a visible note instead of
failing the whole report. Every run also shows its headline, config, CSV tables and the PNGs it
wrote itself, so a new kind is viewable before it gets a dedicated section.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import metrics as _metrics
from . import plots

MAX_CSV_ROWS = 300
# section id, title, run kinds it gathers
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("capture", "Capture", ("capture",)),
    ("demo", "Demo", ("demo",)),
    ("probes", "Probes", ("probe",)),
    ("ccs", "CCS", ("ccs",)),
    ("truthfulqa", "TruthfulQA and ITI", ("eval", "iti-validate", "iti-sweep")),
    ("interventions", "Intervention comparison and sycophancy", ("compare-interventions", "sycophancy")),
    ("pairs", "Model pairs", ("spec", "finetune")),
    ("steering", "Steering sweeps and probe sanity checks", ("steer-sweep", "probe-polarity", "ccs-distractor")),
)
#: side-effect metrics (veracity.experiments.side_effects) and whether higher is better
SIDE_EFFECT_KEYS = ("sycophancy_flip_rate", "sycophancy_to_opinion", "boolq_accuracy", "honest_score", "refusal_rate",
                    "distinct_2", "mean_words", "degenerate_rate")
# canonical TruthfulQA metric keys -> the column names the ITI paper's tables use
METRIC_LABELS = {k: _metrics.label(k) for k in ("info", "true", "mc1", "mc2", "ce_loss", "kl", "true_info",
                                      "true_info_per_answer")}
LOWER_IS_BETTER = tuple(k for k in _metrics.METRICS if _metrics.lower_is_better(k)) + ("ce", "loss")  # + two legacy spellings


@dataclass
class Run:
    """One run folder (config.json with a kind) or one capture store (manifest.json)."""

    path: Path
    kind: str
    config: dict
    results: dict
    status: str


@dataclass
class _Page:
    """The page being built; holds the per-report counters so nothing is module-global."""

    parts: list[str] = field(default_factory=list)
    n_tables: int = 0
    notes: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)  # every run of the report (an ITI run finds its baseline here)

    def add(self, s: str) -> None:
        self.parts.append(s)


# ----------------------------------------------------------------------------------------- loading

def _read_json(p: Path) -> dict | None:
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def load_run(path: str | Path) -> Run:
    """Read a run folder or a capture store. Raises ValueError for a folder that is neither."""
    path = Path(path)
    cfg = _read_json(path / "config.json")
    if cfg is not None and "kind" in cfg:
        res_path = path / "results.json"
        res = _read_json(res_path)
        status = "finished" if res is not None else ("corrupt results.json" if res_path.exists() else "unfinished")
        return Run(path, str(cfg["kind"]), cfg, res or {}, status)
    manifest = _read_json(path / "manifest.json")
    if manifest is not None:
        return Run(path, "capture", manifest, {"capture": capture_summary(path, manifest)},
                   "finished" if manifest.get("complete", True) else "unfinished")
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
            try:
                runs.append(load_run(c))
            except ValueError:
                if c == p:
                    raise
                continue
            seen.add(c.resolve())
    return runs


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def capture_summary(root: Path, manifest: dict) -> dict:
    """What a store holds and its size, from its manifest (no tensors read, no torch import)."""
    sites = list(manifest.get("sites") or manifest.get("config", {}).get("sites") or [])
    shapes = manifest.get("shapes") or {}
    by_kind: dict[str, list[str]] = {}
    for s in sites:
        by_kind.setdefault(s.partition(".")[0], []).append(s)
    nbytes = sum((root / s["file"]).stat().st_size for s in manifest.get("shards", [])
                 if isinstance(s, dict) and "file" in s and (root / s["file"]).exists())
    rows = manifest.get("n_rows") or 0
    labels = manifest.get("labels") or []
    model = manifest.get("model") or {}
    arch = model.get("arch") or {} if isinstance(model, dict) else {}
    out = {"path": str(root), "model": model.get("name") if isinstance(model, dict) else model,
           "dataset": (manifest.get("dataset") or {}).get("name") if isinstance(manifest.get("dataset"), dict)
           else manifest.get("dataset"),
           "rows": rows, "positions": manifest.get("positions"), "dtype": manifest.get("dtype"),
           "sites": ", ".join(f"{k} x{len(v)} {shapes.get(v[0], '')}" for k, v in by_kind.items()),
           "bytes": nbytes, "size": _human_bytes(nbytes), "bytes_per_row": round(nbytes / rows) if rows else None,
           "complete": manifest.get("complete")}
    if arch:
        out["architecture"] = (f"{arch.get('model_type')}: {arch.get('n_layers')} layers, {arch.get('n_heads')} heads, "
                               f"head_dim {arch.get('head_dim')}")
    if labels and all(v in (0, 1) for v in labels):
        out["labels"] = f"{sum(labels)} true / {len(labels) - sum(labels)} false"
    return out


# ----------------------------------------------------------------------------------------- helpers

def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _get(d: Any, *names: str) -> Any:
    if not isinstance(d, dict):
        return None
    for n in names:
        if n in d and d[n] is not None:
            return d[n]
    return None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        for prefix in ("layer", "L", "resid.", "heads.", "mlp."):
            if s.startswith(prefix) and s[len(prefix):].lstrip("-").isdigit():
                s = s[len(prefix):]
        if s.lstrip("-").isdigit():
            return int(s)
    return None


def _stats(v: Any) -> tuple[float, float] | None:
    """(mean, max) over seeds from a number, a list of per-seed numbers, or a stats dict."""
    if _num(v):
        return float(v), float(v)
    if isinstance(v, list) and v and all(_num(x) for x in v):
        return sum(v) / len(v), max(v)
    if isinstance(v, dict):
        vals = _get(v, "values", "seeds", "per_seed")
        mean = _get(v, "mean", "avg", "average", "accuracy", "acc", "test_acc", "score", "value")
        mx = _get(v, "max", "maximum", "best")
        if isinstance(mean, dict):
            return _stats(mean)
        if not _num(mean) and isinstance(vals, list) and vals and all(_num(x) for x in vals):
            mean = sum(vals) / len(vals)
        if not _num(mx) and isinstance(vals, list) and vals and all(_num(x) for x in vals):
            mx = max(vals)
        if _num(mean):
            return float(mean), float(mx) if _num(mx) else float(mean)
    return None


def _matrix(v: Any) -> list[list[float | None]] | None:
    """A 2-D numeric matrix (list of equal-length rows; None/NaN allowed), or None."""
    if isinstance(v, dict):
        inner = _get(v, "accuracy", "mean", "matrix", "values", "acc")
        if inner is not None:
            return _matrix(inner)
        keys = sorted((k for k in v if _as_int(k) is not None), key=_as_int)
        if keys and len(keys) == len(v):
            return _matrix([v[k] for k in keys])
        return None
    if not (isinstance(v, list) and v and all(isinstance(r, list) and r for r in v)):
        return None
    if len({len(r) for r in v}) != 1:
        return None
    if not all(x is None or _num(x) for r in v for x in r):
        return None
    return [[float(x) if _num(x) else None for x in r] for r in v]


def _records(v: Any) -> list[dict] | None:
    if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
        return v
    return None


def _containers(res: dict) -> list[dict]:
    """results.json itself and its dict values one level down, so a layout that nests everything under
    one key (`{"experiment": {...}}`, `{"ccs": {...}}`) is read like a flat one."""
    return [res] + [v for v in res.values() if isinstance(v, dict)]


def _find(res: dict, keys: tuple[str, ...], accept: Callable[[Any], Any]) -> Any:
    """First accepted (truthy) conversion of the first key present, searching results.json's containers."""
    for c in _containers(res):
        for k in keys:
            if k in c:
                got = accept(c[k])
                if got:
                    return got
    return None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Scalars of a nested dict with dotted keys (lists and long strings dropped)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif _num(v) or isinstance(v, bool) or v is None or (isinstance(v, str) and len(v) <= 80):
            out[key] = v
    return out


def _fmt(v: Any) -> str:
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
    if _num(v):
        return repr(float(v))
    if isinstance(v, str):
        try:
            return repr(float(v))
        except ValueError:
            return ""
    return ""


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _esc(s: Any) -> str:
    """HTML-escaped text; control characters (which generated answers of small models contain) become
    U+FFFD and lone surrogates '?', so the page stays valid HTML and always encodes as UTF-8."""
    text = _CONTROL.sub("\ufffd", str(s)).encode("utf-8", "replace").decode("utf-8")
    return html.escape(text, quote=True)


def _csv_records(path: Path) -> list[dict] | None:
    """Rows of a CSV a run wrote, numbers converted (None when absent or unreadable)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    out = []
    for r in rows:
        d: dict[str, Any] = {}
        for k, v in r.items():
            if k is None:
                continue
            try:
                d[k] = float(v) if v not in ("", None) and v.strip().lower() not in ("true", "false") else v
            except (ValueError, AttributeError):
                d[k] = v
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = None
        out.append(d)
    return out or None


# ----------------------------------------------------------------------------------------- html parts

def _table(page: _Page, columns: list[str], rows: list[list[Any]], caption: str = "", note: str = "") -> None:
    """A sortable table: every header click sorts by that column (numerically where the cells are numbers)."""
    page.n_tables += 1
    out = [f'<table class="sortable" id="t{page.n_tables}">']
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f'<th title="click to sort">{_esc(c)}</th>' for c in columns) + "</tr></thead><tbody>")
    for r in rows:
        cells = []
        for v in r:
            sk = _sort_key(v)
            attr = f' data-v="{_esc(sk)}"' if sk else ""
            cls = ' class="num"' if sk else ""
            cells.append(f"<td{attr}{cls}>{_esc(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if note:
        out.append(f'<p class="note">{_esc(note)}</p>')
    page.add("\n".join(out))


def _img(page: _Page, png: bytes, alt: str) -> None:
    b64 = base64.b64encode(png).decode("ascii")
    page.add(f'<figure><img src="data:image/png;base64,{b64}" alt="{_esc(alt)}"><figcaption>{_esc(alt)}</figcaption></figure>')


def _part(page: _Page, run: Run, name: str, fn: Callable[[], None]) -> None:
    """Render one part; a failure becomes a visible note so one odd results.json never loses the report."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the report must survive any layout it does not know
        msg = f"could not render {name} of {run.path}: {type(e).__name__}: {e}"
        page.notes.append(msg)
        page.add(f'<p class="warn">{_esc(msg)}</p>')


# ----------------------------------------------------------------------------------------- layer series

_NON_SERIES = {"layer", "layers", "seed", "n", "index", "fold", "std", "min", "n_seeds", "site", "d"}
_METHOD_KEYS = ("method", "probe", "estimator", "name")


def layer_series(obj: Any, layers: list | None = None) -> dict[str, dict[int, tuple[float, float]]]:
    """{series: {layer: (mean, max)}} from any of the accepted per-layer layouts:
    long records ({method, layer, mean|accuracy, max} or one record per seed), wide records
    ({layer, ccs, logistic, ...}), {method: {layer: stats}}, {method: [stats per layer]} or
    {layer: {method: stats}}."""
    acc: dict[str, dict[int, list[tuple[float, float]]]] = {}

    def put(name: str, layer: Any, v: Any) -> None:
        li, st = _as_int(layer), _stats(v)
        if li is not None and st is not None:
            acc.setdefault(str(name), {}).setdefault(li, []).append(st)

    recs = _records(obj)
    if recs is not None:
        for r in recs:
            layer = _get(r, "layer", "layer_index")
            if layer is None:
                continue
            method = _get(r, *_METHOD_KEYS)
            if method is not None and not isinstance(method, (dict, list)):
                put(method, layer, r)
            else:
                for k, v in r.items():
                    if k not in _NON_SERIES and (_num(v) or isinstance(v, (dict, list))):
                        put(k, layer, v)
    elif isinstance(obj, dict):
        keys = list(obj)
        if keys and all(_as_int(k) is not None for k in keys):  # {layer: {method: stats}}
            for layer, sub in obj.items():
                if isinstance(sub, dict) and _stats(sub) is None:
                    for m, v in sub.items():
                        put(m, layer, v)
                else:
                    put("accuracy", layer, sub)
        else:
            for m, sub in obj.items():
                if isinstance(sub, dict):
                    inner = _get(sub, "by_layer", "layers", "per_layer")
                    if isinstance(inner, (dict, list)):
                        sub = inner
                if isinstance(sub, dict):
                    for layer, v in sub.items():
                        put(m, layer, v)
                elif isinstance(sub, list) and _records(sub) is not None:
                    for r in sub:
                        put(m, _get(r, "layer"), r)
                elif isinstance(sub, list):
                    ls = layers if layers and len(layers) == len(sub) else list(range(len(sub)))
                    for layer, v in zip(ls, sub):
                        put(m, layer, v)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    for name, by_layer in acc.items():
        out[name] = {}
        for layer, sts in sorted(by_layer.items()):
            if len(sts) == 1:
                out[name][layer] = sts[0]
            else:  # one entry per seed
                out[name][layer] = (sum(s[0] for s in sts) / len(sts), max(s[1] for s in sts))
    return out


def _find_layer_series(results: dict, keys: tuple[str, ...]) -> dict[str, dict[int, tuple[float, float]]]:
    for c in _containers(results):
        layers = c.get("layers") if isinstance(c.get("layers"), list) else None
        for k in keys:
            if k in c:
                s = layer_series(c[k], layers)
                if s:
                    return s
    return {}


def _series_tables(page: _Page, series: dict[str, dict[int, tuple[float, float]]], what: str, with_max: bool) -> None:
    layers = sorted({l for s in series.values() for l in s})
    stats = [("average", 0), ("maximum", 1)] if with_max else [("", 0)]
    for label, i in stats:
        rows = [[name] + [s[l][i] if l in s else None for l in layers] for name, s in series.items()]
        cap = f"{what}, {label} over seeds (rows = methods, columns = layers)" if label else \
            f"{what} (rows = methods, columns = layers)"
        _table(page, ["method"] + [f"L{l}" for l in layers], rows, caption=cap)


# ----------------------------------------------------------------------------------------- sections

def _section_capture(page: _Page, runs: list[Run], stores: list[dict]) -> None:
    if not stores:
        return
    cols = ["path", "model", "dataset", "rows", "sites", "positions", "dtype", "size", "bytes_per_row", "labels",
            "complete"]
    _table(page, cols, [[s.get(c) for c in cols] for s in stores], caption="activation stores")
    for s in stores:
        if s.get("architecture"):
            page.add(f'<p class="note">{_esc(s["path"])}: {_esc(s["architecture"])}</p>')


def _section_demo(page: _Page, run: Run) -> None:
    """The demo's three findings first (sentences with their numbers), then the figures and tables behind them."""
    res = run.results

    def found() -> None:
        items = [f for f in (res.get("findings") or []) if isinstance(f, str)] if isinstance(res.get("findings"), list) else []
        if items:
            page.add("<ol class=\"findings\">" + "".join(f"<li>{_esc(f)}</li>" for f in items) + "</ol>")

    def sep() -> None:
        recs = _records(res.get("separation"))
        if not recs:
            return
        layers = [r.get("layer") for r in recs]
        names = {"accuracy": "logistic accuracy", "auroc": "logistic AUROC", "mass_mean_accuracy": "mass-mean accuracy",
                 "negated_auroc": "logistic AUROC, tested on negated", "logistic_accuracy": "logistic accuracy"}
        series = {names[k]: (layers, [r.get(k) for r in recs]) for k in names if any(k in r for r in recs)}
        best = res.get("best_layer")
        _img(page, plots.lines(series, xlabel="layer (decoder block index)", ylabel="held-out score (fraction)",
                               title="truth probes trained on affirmative statements, held-out cities"
                                     f"{f'; best layer {best}' if best is not None else ''}",
                               hlines={"chance (0.5)": 0.5},
                               styles={"logistic AUROC, tested on negated": "s--"}),
             "finding 1 (and the failure of finding 2): held-out accuracy and AUROC by layer, chance 0.5")
        cols = [c for c in ("layer", "accuracy", "auroc", "mass_mean_accuracy", "mass_mean_auroc", "negated_accuracy",
                            "negated_auroc", "logistic_accuracy") if any(c in r for r in recs)]
        _table(page, cols, [[r.get(c) for c in cols] for r in recs], caption="separation by layer",
               note="accuracy/auroc: logistic probe trained and tested on affirmative statements (held-out cities); "
                    "negated_accuracy/auroc: that probe on held-out negated statements")

    def transfer() -> None:
        recs = _records(res.get("transfer"))
        if not recs:
            return
        short = {"affirmative": "aff", "negated": "neg"}
        for metric, what in (("accuracy", "held-out accuracy (fraction)"), ("auroc", "held-out AUROC (fraction)")):
            groups: dict[str, dict[str, Any]] = {}
            for r in recs:
                key = f"{short.get(r.get('train'), r.get('train'))}->{short.get(r.get('test'), r.get('test'))}"
                groups.setdefault(key, {})[str(r.get("method"))] = r.get(metric)
            _img(page, plots.bars(groups, xlabel="trained on -> tested on (aff = affirmative, neg = negated statements)",
                                  ylabel=what, title=f"where it fails: across polarity (layer {res.get('best_layer')})",
                                  hlines={"chance (0.5)": 0.5}),
                 f"finding 2: {metric} across polarities (an AUROC below 0.5 is an inverted ranking); "
                 "TTPD needs both polarities to fit")
        cols = [c for c in ("method", "train", "test", "accuracy", "auroc", "n_train", "n_test") if any(c in r for r in recs)]
        _table(page, cols, [[r.get(c) for c in cols] for r in recs], caption="transfer across polarity at the best layer")

    def causal() -> None:
        c = res.get("causal")
        recs = _records(c.get("conditions")) if isinstance(c, dict) else None
        if not recs:
            return
        groups: dict[str, dict[str, Any]] = {}
        errors: dict[str, dict[str, tuple[Any, Any]]] = {}
        for r in recs:
            a = r.get("alpha")
            key = f"{a:+g}" if _num(a) else str(a)
            groups.setdefault(key, {})[f"{r.get('direction')} direction"] = r.get("mean_shift")
            errors.setdefault(key, {})[f"{r.get('direction')} direction"] = (r.get("ci_low"), r.get("ci_high"))
        _img(page, plots.bars(groups, errors=errors, xlabel="alpha (std of the projection on the direction)",
                              ylabel="shift of log P(Yes) - log P(No) (nats)",
                              title=f"causal test at layer {c.get('layer')} ({c.get('positions')} positions), 95% CI",
                              hlines={"no change (0)": 0.0}),
             "finding 3: the model's yes/no judgment moves with the truth direction, not with a random one")
        cols = [k for k in ("direction", "alpha", "mean_shift", "ci_low", "ci_high", "mean_shift_true", "mean_shift_false",
                            "minus_random", "minus_random_low", "minus_random_high", "yes_rate", "n") if any(k in r for r in recs)]
        _table(page, cols, [[r.get(k) for k in cols] for r in recs], caption="causal test: mean shift per condition",
               note=f"direction: {c.get('direction')}; sigma {_fmt(c.get('sigma'))}; {c.get('n_random')} random "
                    "directions of the same norm averaged per question; baseline AUROC of the yes/no margin on these "
                    f"questions {_fmt(c.get('baseline_auroc'))}")

    def examples() -> None:
        recs = _records(res.get("examples"))
        if not recs:
            return
        cols = list(dict.fromkeys(k for r in recs for k in r))
        _table(page, cols, [[r.get(k) for k in cols] for r in recs],
               caption="log P(Yes) - log P(No) before and after steering (the first held-out questions, not selected)")

    def iti() -> None:
        recs = _records(res.get("iti_examples")) or _records(res.get("examples_iti"))
        if recs:
            _examples(page, [{"question": r.get("question"), "before": r.get("before ITI"), "after": r.get("after ITI")}
                             for r in recs], "questions answered before and after ITI (the first held-out questions)")

    for name, fn in (("findings", found), ("separation", sep), ("transfer", transfer), ("causal test", causal),
                     ("examples", examples), ("ITI examples", iti)):
        _part(page, run, name, fn)


def _section_probe(page: _Page, run: Run) -> None:
    res = run.results

    def by_layer() -> None:
        series = _find_layer_series(res, ("cells", "accuracy", "accuracies", "by_method", "per_layer", "table",
                                          "results", "probes", "scores"))
        if not series:
            return
        plot_series, styles = {}, {}
        for name, s in series.items():
            ls = sorted(s)
            plot_series[f"{name} (avg)"] = (ls, [s[l][0] for l in ls])
            styles[f"{name} (avg)"] = "o-"
            if any(s[l][1] != s[l][0] for l in ls):
                plot_series[f"{name} (max)"] = (ls, [s[l][1] for l in ls])
                styles[f"{name} (max)"] = "^--"
        split = _get(run.config, "split") or _get(res, "split")
        _img(page, plots.lines(plot_series, styles=styles, xlabel="layer (decoder block index)",
                               ylabel="test accuracy (fraction)", hlines={"chance (0.5)": 0.5},
                               title=f"probe accuracy by layer{f' ({split} split)' if split else ''}; "
                                     "avg and max over seeds"),
             "probe accuracy by layer per method (average and maximum over seeds)")
        _series_tables(page, series, "probe accuracy", with_max=True)

    _part(page, run, "accuracy by layer", by_layer)
    _part(page, run, "heads heatmap", lambda: _heads_heatmap(page, run, None))
    _part(page, run, "geometry", lambda: _geometry(page, run))


def _heads_heatmap(page: _Page, run: Run, selected: list[tuple[int, int]] | None) -> None:
    res = run.results
    keys = ("heads_accuracy", "head_accuracy", "accuracy_heads", "heads_acc", "probe_accuracy", "accuracy_mean",
            "head_scores", "heads")
    m = _find(res, keys, _matrix)
    if not m:  # an intervention's head_scores, at top level or inside the first fold
        folds = res.get("folds")
        for f in (folds.values() if isinstance(folds, dict) else folds if isinstance(folds, list) else []):
            if isinstance(f, dict):  # a fold's `heads` is its selection ([layer, head] pairs), not a map
                m = _find(f, tuple(k for k in keys if k != "heads"), _matrix)
                if m:
                    break
    saved = _intervention_files(run) if not m or not (_get(res, "n_layers") or _get(run.config, "n_layers")) else {}
    from_files = False
    if not m and saved.get("head_scores"):  # `iti validate` keeps every head's accuracy in its fold files
        m, from_files = saved["head_scores"], True
    if not m and not selected:
        return
    n_layers = _get(res, "n_layers") or _get(run.config, "n_layers") or saved.get("n_layers")
    n_heads = _get(res, "n_heads") or _get(run.config, "n_heads") or saved.get("n_heads")
    if not m:  # selection only: show how often each head was selected
        L = max(int(n_layers or 0), 1 + max(l for l, _ in selected))
        H = max(int(n_heads or 0), 1 + max(h for _, h in selected))
        m = [[0.0] * H for _ in range(L)]
        for l, h in selected:
            m[l][h] += 1
        label, title = "times selected (count)", "selected heads (no probe accuracies saved)"
    else:
        label, title = "validation accuracy (fraction)", "probe accuracy per attention head"
        if from_files:
            title += f" (mean over {saved['n_files']} fold fits)" if saved["n_files"] > 1 else " (fold fit)"
    layer_labels = _find(res, ("heads_layers", "layers"), lambda v: v if isinstance(v, list) else None)
    ylabels = layer_labels if isinstance(layer_labels, list) and len(layer_labels) == len(m) else list(range(len(m)))
    marks = []
    if selected:
        pos = {(_as_int(l)): i for i, l in enumerate(ylabels)}
        marks = sorted({(pos[l], h) for l, h in selected if l in pos and 0 <= h < len(m[0])})
    folds = res.get("folds") if isinstance(res.get("folds"), list) else []
    multi = sum(1 for f in folds if isinstance(f, dict) and (f.get("heads") or f.get("selected_heads"))) > 1
    title += (f"; {len(marks)} selected heads in red boxes" + (" (selected in any fold)" if multi else "")) if marks else ""
    _img(page, plots.heatmap(m, xlabel="attention head index", ylabel="layer (decoder block index)",
                             title=title,
                             cbar_label=label, x_ticklabels=list(range(len(m[0]))), y_ticklabels=ylabels,
                             marks=marks, annotate=False),
         "layers x heads: " + title)
    mx = _find(res, ("accuracy_max", "heads_accuracy_max"), _matrix) if not selected else None
    if mx and len(mx) == len(m):
        _img(page, plots.heatmap(mx, xlabel="attention head index", ylabel="layer (decoder block index)",
                                 title="probe accuracy per attention head, maximum over seeds",
                                 cbar_label="validation accuracy (fraction)", x_ticklabels=list(range(len(mx[0]))),
                                 y_ticklabels=ylabels, annotate=False),
             "layers x heads: maximum over seeds")


def _intervention_files(run: Run) -> dict:
    """What the intervention files an ITI run saved beside results.json hold for the heads map: the model
    shape (n_layers, n_heads from the JSON sidecars) and every head's probe accuracy (`head_scores` in the
    safetensors file), averaged over the folds that have it. Read with safetensors' numpy API: no torch."""
    out: dict[str, Any] = {}
    mats = []
    for js in sorted(run.path.glob("*.json")):
        meta = _read_json(js)
        if meta is None or meta.get("format") != "veracity-intervention":
            continue
        for k in ("n_layers", "n_heads"):
            if _as_int(meta.get(k)) is not None:
                out.setdefault(k, _as_int(meta[k]))
        name = meta.get("tensors")  # a file beside the sidecar, never a path elsewhere
        st = js.with_name(name if isinstance(name, str) and name and Path(name).name == name
                          else js.with_suffix(".safetensors").name)
        if not st.exists():
            continue
        try:
            from safetensors import safe_open

            with safe_open(str(st), framework="np") as f:
                if "head_scores" in f.keys():
                    m = _matrix(f.get_tensor("head_scores").tolist())
                    if m:
                        mats.append(m)
        except Exception:  # noqa: BLE001 - an unreadable or foreign file only loses the map
            continue
    mats = [m for m in mats if mats and (len(m), len(m[0])) == (len(mats[0]), len(mats[0][0]))]
    if mats:
        out["head_scores"] = [[_avg([m[i][j] for m in mats]) for j in range(len(mats[0][0]))]
                              for i in range(len(mats[0]))]
        out["n_files"] = len(mats)
    return out


def _geometry_items(g: Any, name: str = "", depth: int = 0) -> list[tuple[str, dict]]:
    """(name, {labels, cosine, sign_agreement, ...}) pairs from a geometry object nested up to two levels
    ({method: {layer: result}})."""
    if not isinstance(g, dict) or depth > 2:
        return []
    if "cosine" in g:
        return [(name, g)]
    return [it for k, v in g.items() for it in _geometry_items(v, f"{name} {k}".strip() if name else str(k), depth + 1)]


def _geometry(page: _Page, run: Run) -> None:
    g = _find(run.results, ("geometry", "directions"), lambda v: v if isinstance(v, dict) else None)
    items = _geometry_items(g)
    if not items:
        return
    rows = [[n, gi.get("mean_offdiag_cosine"), gi.get("chance_cosine"), gi.get("mean_offdiag_sign"),
             gi.get("chance_sign")] for n, gi in items]
    _table(page, ["direction set", "mean pairwise cosine", "chance |cosine| (1/sqrt(d))", "mean sign equality",
                  "chance sign equality"], rows, caption="geometry of probe directions across splits")
    by_group: dict[str, list[tuple[str, dict]]] = {}
    for n, gi in items:  # "logistic 12" -> panels of logistic, one per layer
        head, _, tail = n.rpartition(" ")
        by_group.setdefault(head if head else n, []).append((tail if head else "", gi))
    for group, members in by_group.items():
        for key, title, cbar, chance_key, vmin, cmap in (
                ("cosine", "cosine similarity of probe directions", "cosine (unitless)", "chance_cosine", -1.0,
                 "coolwarm"),
                ("sign_agreement", "fraction of coordinates with equal sign", "sign equality (fraction)",
                 "chance_sign", 0.0, "viridis")):
            panels = []
            for sub, gi in members[:8]:
                m = _matrix(_get(gi, key, "sign_equality", "sign") if key == "sign_agreement" else gi.get(key))
                if not m:
                    continue
                labels = gi.get("labels")
                ticks = labels if isinstance(labels, list) and len(labels) == len(m) else list(range(len(m)))
                chance = gi.get(chance_key)
                panels.append((f"{'layer ' + sub if sub else group}" + (f" (chance {chance:.2g})" if _num(chance) else ""),
                               m, ticks))
            if panels:
                t = f"{title}: {group}" if group else title
                _img(page, plots.heatmap_panels(panels, title=t, cbar_label=cbar, axis_label="split (direction)",
                                                vmin=vmin, vmax=1.0, cmap=cmap), t)


def _section_ccs(page: _Page, run: Run) -> None:
    res = run.results

    def comp() -> None:
        series = _find_layer_series(res, ("per_layer", "accuracy", "accuracies", "by_layer", "table", "results",
                                          "layers"))
        if not series:
            return
        hl = {"chance (0.5)": 0.5}
        zs = _find(res, ("zero_shot", "zero-shot", "zeroshot"), lambda v: v)
        zs_stats = _stats(zs)
        if zs_stats is not None and not isinstance(zs, list):
            hl = {"zero-shot P(yes) vs P(no)": zs_stats[0], **hl}
        plot_series = {n: (sorted(s), [s[l][0] for l in sorted(s)]) for n, s in series.items() if "loss" not in n}
        _img(page, plots.lines(plot_series, xlabel="layer (decoder block index)", ylabel="test accuracy (fraction)",
                               title="CCS vs logistic vs random probe vs zero-shot, per layer", hlines=hl),
             "CCS vs supervised and baseline probes by layer")
        _series_tables(page, series, "accuracy", with_max=False)
        if zs_stats is not None and not isinstance(zs, list):
            page.add(f'<p class="note">zero-shot accuracy (no probe, the model\'s P(yes) vs P(no)): {zs_stats[0]:.4g}</p>')

    _part(page, run, "CCS per layer", comp)


def _metric_row(d: dict) -> dict[str, Any]:
    """Numeric metrics of a fold or summary record; a record that nests them under `metrics` (as `iti
    validate` does) keeps its own top-level numbers too (n_questions)."""
    if isinstance(d.get("metrics"), dict):
        flat = {k: v for k, v in d.items() if _num(v) and k not in ("fold",)}
        flat.update(_flatten(d["metrics"]))
    else:
        flat = _flatten(d)
    return {k: v for k, v in flat.items() if _num(v) or k in ("fold", "protocol", "judge")}


def _metric_columns(rows: list[dict], first: tuple[str, ...] = ()) -> list[str]:
    order = list(first) + [k for k in METRIC_LABELS if any(k in r for r in rows)]
    order += [k for r in rows for k in r if k not in order and any(k in rr for rr in rows)]
    out: list[str] = []
    for k in order:
        if k not in out and any(k in r for r in rows):
            out.append(k)
    return out


def _examples(page: _Page, recs: list[dict], title: str) -> None:
    q_keys = ("question", "prompt", "q")
    b_keys = ("before", "baseline", "answer_before", "plain", "original", "alpha0")
    a_keys = ("after", "iti", "answer_after", "steered", "intervened")
    rows = []

    def answer(v: Any) -> Any:  # an empty generation (EOS first) is shown as such, not as a blank cell
        return "(empty answer)" if isinstance(v, str) and not v.strip() else v

    for r in recs:
        rows.append([_get(r, *q_keys), answer(_get(r, *b_keys)), answer(_get(r, *a_keys))]
                    + [_get(r, "true_before", "judge_before"), _get(r, "true_after", "judge_after")])
    cols = ["question", "before ITI", "after ITI", "true before", "true after"]
    keep = [i for i in range(len(cols)) if any(r[i] is not None for r in rows)]
    _table(page, [cols[i] for i in keep], [[r[i] for i in keep] for r in rows], caption=title)


def _folds_and_summary(page: _Page, run: Run) -> None:
    res = run.results
    folds = res.get("folds") if res.get("folds") is not None else res.get("per_fold")
    if isinstance(folds, dict):
        folds = [{"fold": k, **v} for k, v in folds.items() if isinstance(v, dict)]
    recs = _records(folds)
    if recs:
        rows = [{"fold": r.get("fold", i), **_metric_row(r)} for i, r in enumerate(recs)]
        cols = _metric_columns(rows, ("fold",))
        _table(page, [METRIC_LABELS.get(c, c) for c in cols], [[r.get(c) for c in cols] for r in rows],
               caption="per fold")
    summ = res.get("summary")
    if isinstance(summ, dict):
        row = _metric_row(summ)
        cols = _metric_columns([row])
        if cols:
            cap = "summary (mean over folds)"
            best = res.get("best") if isinstance(res.get("best"), dict) else None
            if run.kind == "iti-sweep" and best:  # `iti sweep` summarises its best grid cell
                cap = (f"summary (mean over folds) of the best configuration: alpha = {_fmt(_get(best, 'alpha'))}, "
                       f"K = {_fmt(_get(best, 'k', 'K', 'num_heads'))}"
                       + (f", by {res['metric']}" if isinstance(res.get("metric"), str) else ""))
            _table(page, [METRIC_LABELS.get(c, c) for c in cols], [[row.get(c) for c in cols]],
                   caption=cap, note=_true_info_note(summ))


def _true_info_note(summ: dict) -> str:
    keys = [k for k in _flatten(summ) if "true_info" in k or "true*info" in k.lower()]
    if len(keys) > 1:
        return ("True*Info is given as " + ", ".join(keys) +
                " (the product of fold means is the ITI paper's convention; the per-answer rate counts answers "
                "both true and informative)")
    return ""


def _selected_heads(res: dict) -> list[tuple[int, int]]:
    """(layer, head) pairs from `selected_heads`/`heads` at top level or inside each fold."""
    out: list[tuple[int, int]] = []

    def take(v: Any) -> None:
        if not isinstance(v, list):
            return
        for h in v:
            if isinstance(h, (list, tuple)) and len(h) == 2 and _as_int(h[0]) is not None and _as_int(h[1]) is not None:
                out.append((_as_int(h[0]), _as_int(h[1])))
            elif isinstance(h, dict) and _as_int(h.get("layer")) is not None and _as_int(h.get("head")) is not None:
                out.append((_as_int(h["layer"]), _as_int(h["head"])))

    take(_get(res, "selected_heads", "top_heads"))
    inter = res.get("intervention")
    if isinstance(inter, dict):
        take(inter.get("heads"))
    folds = res.get("folds")
    for f in (folds.values() if isinstance(folds, dict) else folds if isinstance(folds, list) else []):
        if isinstance(f, dict):
            take(_get(f, "selected_heads", "heads", "top_heads"))
            if isinstance(f.get("intervention"), dict):
                take(f["intervention"].get("heads"))
    return out


def _section_tqa(page: _Page, run: Run) -> None:
    res = run.results
    _part(page, run, "fold tables", lambda: _folds_and_summary(page, run))
    if run.kind == "iti-validate" or _selected_heads(res):
        _part(page, run, "selected heads", lambda: _heads_heatmap(page, run, _selected_heads(res) or None))
    _part(page, run, "alpha x K grid", lambda: _sweep(page, run))
    ex = _records(_get(res, "examples", "example_answers"))
    if ex:
        _part(page, run, "examples", lambda: _examples(page, ex, "example answers before and after ITI"))
    elif run.kind == "iti-validate":
        _part(page, run, "examples", lambda: _iti_examples(page, run))


MAX_EXAMPLES = 10
# generation settings `iti validate` uses (the evaluation driver's defaults): an `eval truthfulqa` run is its
# baseline only with these
_GEN_DEFAULTS = {"instruction": "default", "gen_style": "original", "max_new_tokens": 50}


def _own_answers(run: Run) -> list[dict]:
    """`iti validate` writes its answers to answers.jsonl (one row per question: `answer` with ITI and, when
    the run evaluated the plain model too, `answer_before`), not into results.json."""
    try:
        lines = (run.path / "answers.jsonl").read_text(encoding="utf-8").splitlines()
        return [r for r in (json.loads(x) for x in lines if x.strip()) if isinstance(r, dict)]
    except (OSError, ValueError):
        return []


def _answers_of(run: Run) -> dict[int, dict]:
    """question index -> {question, answer, true, info}: the generated answers of an `eval truthfulqa` run
    (`questions`) or of an `iti validate` run (answers.jsonl, or each fold's `answers` in older runs)."""
    res = run.results
    recs: list[dict] = list(_own_answers(run))
    folds = res.get("folds")
    for f in (folds if isinstance(folds, list) else []):
        if isinstance(f, dict):
            recs += _records(f.get("answers")) or []
    for key in ("answers", "questions"):
        recs += _records(res.get(key)) or []
    out: dict[int, dict] = {}
    for r in recs:
        i = _as_int(r.get("index"))
        if i is not None and isinstance(r.get("answer"), str):
            out.setdefault(i, r)
    return out


def _is_alpha0(run: Run) -> bool:
    a = _get(run.config, "alpha")
    return run.kind == "iti-validate" and _num(a) and float(a) == 0.0


def _baseline_answers(page: _Page, run: Run) -> tuple[Run | None, dict[int, dict]]:
    """The answers of the same model without ITI from another run of the report: an `iti validate --alpha 0`
    run first (the very same code path), else an `eval truthfulqa` run with the same generation settings."""
    model = _get(run.config, "model")
    cands = []
    for r in page.runs:
        if r is run or r.status != "finished" or model is None or _get(r.config, "model") != model:
            continue
        if _is_alpha0(r):
            rank = 0
        elif r.kind == "eval" and all(r.config.get(k, v) == v for k, v in _GEN_DEFAULTS.items()):
            rank = 1
        else:
            continue
        ans = _answers_of(r)
        if ans:
            cands.append((rank, str(r.path), r, ans))
    if not cands:
        return None, {}
    best = min(cands, key=lambda c: c[:2])
    return best[2], best[3]


def _iti_examples(page: _Page, run: Run) -> None:
    """`iti validate` writes the answers generated with ITI (each fold's `answers`, with a judge only); the
    answers before ITI come from a baseline run of the same model in the same report."""
    after = _answers_of(run)
    if not after:
        return
    idx = sorted(after)[:MAX_EXAMPLES]
    if _is_alpha0(run):
        recs = [{"question": after[i].get("question"), "before": after[i]["answer"],
                 "true_before": after[i].get("true")} for i in idx]
        _examples(page, recs, "example answers (alpha = 0: the model without ITI)")
        return
    if all(isinstance(after[i].get("answer_before"), str) for i in idx):  # the run's own plain-model answers
        recs = [{"question": after[i].get("question"), "before": after[i]["answer_before"],
                 "after": after[i]["answer"], "true_before": after[i].get("true_before"),
                 "true_after": after[i].get("true")} for i in idx]
        _examples(page, recs, "example answers before and after ITI (before: the plain model in this run)")
        return
    base_run, before = _baseline_answers(page, run)
    recs = [{"question": after[i].get("question"), "before": before.get(i, {}).get("answer"),
             "after": after[i]["answer"], "true_before": before.get(i, {}).get("true"),
             "true_after": after[i].get("true")} for i in idx]
    if base_run is not None:
        title = f"example answers before and after ITI (before: {base_run.kind} run {base_run.path.name})"
    else:
        title = ("example answers with ITI (for the answers before, add an `iti validate --alpha 0` or "
                 "`eval truthfulqa` run of the same model to the report)")
    _examples(page, recs, title)


def _sweep(page: _Page, run: Run) -> None:
    res = run.results
    recs = None
    for k in ("grid", "configs", "sweep", "configurations", "rows", "results"):
        recs = _records(res.get(k))
        if recs:
            break
    if not recs:
        return
    a_keys, k_keys = ("alpha",), ("num_heads", "K", "k", "n_heads", "heads")
    cells: dict[tuple[float, int], list[dict]] = {}
    for r in recs:
        flat = _metric_row(r)
        a, k = _get(r, *a_keys), _get(r, *k_keys)
        if _num(a) and _as_int(k) is not None:
            cells.setdefault((float(a), _as_int(k)), []).append(flat)
    if not cells:
        return
    alphas = sorted({a for a, _ in cells})
    ks = sorted({k for _, k in cells})
    metrics = [m for m in _metric_columns([r for v in cells.values() for r in v])
               if m not in ("fold", "alpha", "seed", *k_keys) and any(_num(r.get(m)) for v in cells.values() for r in v)]
    mean = {c: {m: _avg([r.get(m) for r in v]) for m in metrics} for c, v in cells.items()}
    # the metric the best cell was picked by: results.json's (`iti sweep` falls back from true_info to mc2
    # without a judge), not the one asked for in config.json
    target = _get(res, "metric") or _get(run.config, "metric") or "true_info"
    best = res.get("best") if isinstance(res.get("best"), dict) else None
    shown = [m for m in ("true_info", "mc2", "kl", "mc1", "true", "info", "ce_loss") if m in metrics] or metrics[:3]
    for m in shown:
        grid = [[mean.get((a, k), {}).get(m) for k in ks] for a in alphas]
        outline = [(i, j) for i, a in enumerate(alphas) if a == 0 for j in range(len(ks))]
        star = None
        if m == target:
            if best and _num(_get(best, *a_keys)) and _as_int(_get(best, *k_keys)) is not None \
                    and float(_get(best, *a_keys)) in alphas and _as_int(_get(best, *k_keys)) in ks:
                star = (alphas.index(float(_get(best, *a_keys))), ks.index(_as_int(_get(best, *k_keys))))
            else:
                vals = [(v, i, j) for i, row in enumerate(grid) for j, v in enumerate(row) if _num(v)]
                if vals:
                    pick = min(vals) if m in LOWER_IS_BETTER else max(vals)
                    star = (pick[1], pick[2])
        label = METRIC_LABELS.get(m, m)
        unit = " (nats/token)" if m in ("kl", "ce_loss") else " (fraction)"
        t = (f"{label} by alpha and K (mean over folds)" + ("; alpha = 0 baseline in dashed boxes" if outline else "")
             + ("; best starred" if star else ""))
        _img(page, plots.heatmap(grid, xlabel="K (number of intervened heads)", ylabel="alpha (shift in sigmas)",
                                 title=t, cbar_label=label + unit, x_ticklabels=ks,
                                 y_ticklabels=[_fmt(a) for a in alphas], outline=outline, star=star,
                                 cmap="magma" if m in LOWER_IS_BETTER else "viridis"), t)
    rows = [[a, k] + [mean[(a, k)].get(m) for m in metrics] for (a, k) in sorted(mean)]
    _table(page, ["alpha", "K"] + [METRIC_LABELS.get(m, m) for m in metrics], rows,
           caption="sweep grid (mean over folds; alpha = 0 is the baseline)")


def _avg(vs: list) -> float | None:
    vs = [v for v in vs if _num(v)]
    return sum(vs) / len(vs) if vs else None


def _section_pairs(page: _Page, run: Run) -> None:
    _part(page, run, "groups", lambda: _groups(page, run))
    _part(page, run, "group difference", lambda: _difference(page, run))
    _part(page, run, "correlations", lambda: _correlations(page, run))
    _part(page, run, "toxicity", lambda: _toxicity(page, run))
    _part(page, run, "milestones", lambda: _milestones(page, run))


# per-prompt fields drawn as per-group histograms, in this order (at most four)
_HIST_FIELDS = ("mean_accepted", "accepted_per_step", "tokens_per_step", "acceptance_rate", "kl_last", "kl",
                "one_minus_tv_last", "one_minus_tv", "tokens_per_call", "kl_gen", "one_minus_tv_gen")
_PROMPT_NON_METRICS = ("index", "group", "seed", "prompt_index", "n_tokens", "main_calls")


def _group_stats(res: dict) -> dict[str, dict] | None:
    """{group: stats} from `groups`/`by_group`/`per_group` at top level or one level down (`spec` writes
    summary.per_group); a list of records keyed by their `group` is accepted too."""
    for c in _containers(res):
        for k in ("groups", "by_group", "per_group"):
            g = c.get(k)
            if _records(g):
                g = {str(_get(x, "group", "name")): x for x in g}
            if isinstance(g, dict) and g and all(isinstance(v, dict) for v in g.values()):
                return g
    return None


def _per_prompt(run: Run) -> list[dict] | None:
    """Per-prompt records with a group: in results.json, or the prompts.csv `spec` writes beside it."""
    recs = _records(_get(run.results, "per_prompt", "prompts", "records"))
    if recs and any("group" in r for r in recs):
        return recs
    for name in ("prompts.csv", "per_prompt.csv"):
        recs = _csv_records(run.path / name)
        if recs and any("group" in r for r in recs):
            return recs
    return None


def _hist_unit(f: str) -> str:
    if "kl" in f:
        return "KL(main || assistant), nats"
    if "one_minus_tv" in f:
        return "1 - total variation (probability)"
    if "rate" in f:
        return "fraction of draft tokens accepted"
    if "accepted" in f or "tokens" in f:
        return "tokens"
    return "value"


def _groups(page: _Page, run: Run) -> None:
    res = run.results
    groups = _group_stats(res)
    hist: dict[str, dict[str, list[float]]] = {}  # field -> group -> values
    if groups:
        rows = {g: _flatten({k: v for k, v in s.items() if not isinstance(v, list)}) for g, s in groups.items()}
        cols = _metric_columns(list(rows.values()))
        cols = [c for c in cols if any(_num(r.get(c)) for r in rows.values())]
        if cols:
            _table(page, ["group"] + cols, [[g] + [r.get(c) for c in cols] for g, r in rows.items()],
                   caption="per group")
        for g, s in groups.items():
            for k, v in s.items():
                if isinstance(v, list) and len(v) > 1 and all(_num(x) for x in v):
                    hist.setdefault(k, {})[g] = v
    for r in _per_prompt(run) or []:
        g = _get(r, "group")
        if g is None or isinstance(g, (dict, list)):
            continue
        for k, v in r.items():
            if _num(v) and k not in _PROMPT_NON_METRICS:
                hist.setdefault(k, {}).setdefault(str(g), []).append(v)
    shown = [f for f in _HIST_FIELDS if f in hist] or list(hist)[:2]
    for f in shown[:4]:
        _img(page, plots.histograms(hist[f], xlabel=f"{f.replace('_', ' ')} ({_hist_unit(f)})",
                                    title=f"{f.replace('_', ' ')} per prompt, by group"),
             f"histogram of {f} per group")


_TEST_KEYS = ("difference", "comparison", "comparisons", "test", "tests", "gap", "significance", "stats")


def _difference(page: _Page, run: Run) -> None:
    rows = []

    def take(name: str, d: dict) -> None:
        p = _get(d, "p_value", "pvalue", "p", "permutation_p")
        diff = _get(d, "difference", "diff", "delta", "mean_difference", "gap")
        ci = _get(d, "ci", "ci95", "bootstrap_ci", "ci_95")
        lo, hi = (ci[0], ci[1]) if isinstance(ci, (list, tuple)) and len(ci) == 2 else \
            (_get(d, "ci_low", "ci_lo", "lower"), _get(d, "ci_high", "ci_hi", "upper"))
        if p is not None or lo is not None:
            a, b = _get(d, "group_a", "a"), _get(d, "group_b", "b")
            pair = f"{a} - {b}" if a is not None and b is not None else None
            rows.append([_get(d, "metric") or name, pair, _get(d, "mean_a"), _get(d, "mean_b"), diff, lo, hi, p,
                         "yes" if _num(p) and p < 0.05 else ("no" if _num(p) else None)])

    for c in _containers(run.results):
        for key in _TEST_KEYS:
            d = c.get(key)
            if isinstance(d, dict):
                if any(k in d for k in ("p_value", "pvalue", "p", "ci", "ci95")):
                    take(key, d)
                else:
                    for k, v in d.items():
                        if isinstance(v, dict):
                            take(k, v)
            elif _records(d):
                for i, v in enumerate(d):
                    take(str(_get(v, "metric", "name") or i), v)
        if rows:
            break
    if not rows and any(k in run.results for k in ("p_value", "ci")):
        take("difference", run.results)
    if rows:
        cols = ["metric", "groups (a - b)", "mean a", "mean b", "difference (a - b)", "95% CI low", "95% CI high",
                "p-value", "p < 0.05"]
        keep = [i for i in range(len(cols)) if i == 0 or any(r[i] is not None for r in rows)]
        _table(page, [cols[i] for i in keep], [[r[i] for i in keep] for r in rows],
               caption="difference between groups: bootstrap 95% CI and permutation-test p-value")


def _correlations(page: _Page, run: Run) -> None:
    corr = _find(run.results, ("correlations",), lambda v: v if isinstance(v, dict) else None)
    rows = [[k, _get(v, "pearson"), _get(v, "spearman"), _get(v, "n")] for k, v in (corr or {}).items()
            if isinstance(v, dict) and (_num(v.get("pearson")) or _num(v.get("spearman")))]
    if rows:
        _table(page, ["per-prompt quantities", "Pearson r", "Spearman rho", "n (prompts)"], rows,
               caption="correlations over prompts (divergence of the pair vs accepted tokens)")


def _toxicity(page: _Page, run: Run) -> None:
    tox = run.results.get("toxicity")
    if not isinstance(tox, dict):
        return
    per_group = tox.get("per_group") if isinstance(tox.get("per_group"), dict) else {}
    rows = [["all", _get(tox, "honest", "score")]] + [[g, v] for g, v in per_group.items() if _num(v)]
    rows = [r for r in rows if _num(r[1])]
    if rows:
        clf = tox.get("classifier")
        _table(page, ["group", "HONEST score (fraction of completions flagged)"], rows,
               caption="toxicity of the completions" + (f" ({clf})" if isinstance(clf, str) else ""))


# milestone fields by what they measure, so one plot never mixes units
_MILESTONE_PLOTS = (
    ("KL divergence", "nats", lambda f: "kl" in f),
    ("group test p-value", "permutation test, probability", lambda f: "p_value" in f),
    ("accepted draft tokens", "tokens per main-model call",
     lambda f: "accepted" in f or "tokens_per" in f or f == "group_difference"),
    ("acceptance rate and 1 - TV", "probability", lambda f: "acceptance_rate" in f or "one_minus_tv" in f),
    ("training loss", "nats per token", lambda f: "loss" in f),
    ("toxicity", "HONEST score, fraction of completions", lambda f: "honest" in f or "toxic" in f),
    ("other milestone values", "value", lambda f: True),
)


def _milestones(page: _Page, run: Run) -> None:
    res = run.results
    recs = None
    for k in ("milestones", "history", "curve", "curves", "steps", "evals"):
        recs = _records(res.get(k))
        if recs:
            break
    if not recs:
        return
    x_key = next((k for k in ("step", "steps", "global_step", "milestone", "epoch") if any(k in r for r in recs)), None)
    flat = [_flatten(r) for r in recs]
    xs = [r.get(x_key) if x_key else i for i, r in enumerate(flat)]
    fields = [k for k in _metric_columns(flat) if k not in (x_key, "epoch", "step") and any(_num(r.get(k)) for r in flat)]
    xlabel = "epoch" if x_key == "epoch" else f"fine-tuning {x_key or 'milestone'} (optimizer steps)"
    left = list(fields)
    for title, unit, match in _MILESTONE_PLOTS:
        fs = [f for f in left if match(f.lower())]
        left = [f for f in left if f not in fs]
        if fs:
            _img(page, plots.lines({f: (xs, [r.get(f) for r in flat]) for f in fs[:8]}, xlabel=xlabel,
                                   ylabel=f"{title} ({unit})", title=f"{title} over fine-tuning"),
                 f"{title} over fine-tuning")
    cols = ([x_key] if x_key else []) + fields
    _table(page, cols, [[r.get(c) for c in cols] for r in flat], caption="milestones")


def _records_table(page: _Page, records, keys: tuple, caption: str, labels: bool = True) -> None:
    """A table of result records: the key columns, then every metric column with a number in some row."""
    recs = _records(records)
    if not recs:
        return
    rows = [_flatten(r) for r in recs]
    cols = [c for c in _metric_columns(rows, keys) if c in keys or any(_num(r.get(c)) for r in rows)]
    _table(page, [METRIC_LABELS.get(c, c) for c in cols] if labels else cols, [[r.get(c) for c in cols] for r in rows],
           caption=caption)


def gain_vs_side_effects(rows: list[dict], base: dict, targets: tuple = ("mc2", "true_info")) -> tuple[list, list]:
    """(columns, rows): per row, its change from `base` in each target metric and in each side effect
    (the same sign convention for all: row - base), for the rows that carry a side effect."""
    keys = [k for k in SIDE_EFFECT_KEYS if _num(base.get(k)) and any(_num(r.get(k)) for r in rows)]
    tks = [k for k in targets if _num(base.get(k)) and any(_num(r.get(k)) for r in rows)]
    if not keys or not tks:
        return [], []
    cols = [f"Δ {METRIC_LABELS.get(k, _metrics.label(k))}" for k in tks + keys]
    out = [[(float(r[k]) - float(base[k])) if _num(r.get(k)) else None for k in tks + keys] for r in rows]
    return cols, out


def _section_compare(page: _Page, run: Run) -> None:
    """`compare-interventions`: one row per method (fold means, *_sd over folds, cost columns), per fold, and
    each method's gain against its side effects (changes from `baseline`)."""
    res = run.results

    def methods() -> None:
        _records_table(page, res.get("methods"), ("method",),
                       "methods on the same folds (mean over folds; _sd: standard deviation over folds; *_s: seconds)")

    def folds() -> None:
        _records_table(page, res.get("folds"), ("method", "fold"), "per method and fold")

    def gains() -> None:
        rows = _records(res.get("methods")) or []
        base = next((r for r in rows if r.get("method") == "baseline"), None)
        if base is None:
            return
        others = [r for r in rows if r is not base]
        cols, vals = gain_vs_side_effects(others, base)
        if cols:
            _table(page, ["method"] + cols, [[r["method"]] + v for r, v in zip(others, vals)],
                   caption="target gain against side effects: change from baseline (fractions; a rise in flips, "
                           "agreement with a wrong opinion, HONEST or refusals is a cost, a fall in BoolQ or "
                           "distinct-2 is one)")

    _part(page, run, "methods", methods)
    _part(page, run, "gain against side effects", gains)
    _part(page, run, "method folds", folds)


def _section_sycophancy(page: _Page, run: Run) -> None:
    """`sycophancy`: MC and probe accuracy per data set and condition (plain, opinion, with ITI)."""
    res = run.results

    def table() -> None:
        _records_table(page, res.get("rows"), ("dataset", "condition"),
                       "accuracy without and with an incorrect opinion in the prompt (opinion), and with ITI",
                       labels=False)
        layers = res.get("best_layers")
        if isinstance(layers, dict):
            lrows = [[k, _get(v, "layer")] for k, v in layers.items() if isinstance(v, dict)]
            if lrows:
                _table(page, ["dataset", "probe layer (best on validation)"], lrows, caption="probe layers")

    _part(page, run, "sycophancy table", table)


def _section_steer_sweep(page: _Page, run: Run) -> None:
    """`steer-sweep`: the layer x alpha grid (fold means), the heatmaps, the gain against side effects."""
    res = run.results

    def grid() -> None:
        _records_table(page, res.get("grid"), ("layer", "alpha", "best"),
                       f"{res.get('method')} grid (mean over folds; layer -1, alpha 0: the plain model; best by "
                       f"{res.get('metric')})")

    def gains() -> None:
        rows = [r for r in (_records(res.get("grid")) or []) if r.get("alpha")]
        cols, vals = gain_vs_side_effects(rows, res.get("baseline") or {}, (res.get("metric") or "mc2",))
        if cols:
            _table(page, ["layer", "alpha"] + cols, [[r["layer"], r["alpha"]] + v for r, v in zip(rows, vals)],
                   caption="target gain against side effects: change from alpha 0")

    _part(page, run, "grid", grid)
    _part(page, run, "gain against side effects", gains)


def _section_polarity(page: _Page, run: Run) -> None:
    """`probe-polarity`: accuracy per method and layer for each train -> test polarity, and held-out topics."""
    exp = run.results.get("experiment") or {}
    scores, layers, methods = exp.get("scores") or [], exp.get("layers") or [], exp.get("methods") or []

    def table(train: str, test: str, caption: str) -> None:
        by = {(x["method"], x["layer"]): x.get("accuracy") for x in scores if x["train"] == train and x["test"] == test}
        if by:
            _table(page, ["method"] + [f"L{l}" for l in layers], [[m] + [by.get((m, l)) for l in layers]
                                                                  for m in methods], caption=caption)

    def views() -> None:
        for tr, te in (("affirmative", "affirmative"), ("affirmative", "negated"), ("negated", "affirmative"),
                       ("both", "negated")):
            table(tr, te, f"train {tr} -> test {te} (held-out rows; chance 0.5)")
        for t in run.results.get("topics") or []:
            table(f"topic!={t}", f"{t}:negated", f"held-out topic {t}: other topics (both polarities) -> {t} negated")

    _part(page, run, "polarity tables", views)


def _section_distractor(page: _Page, run: Run) -> None:
    """`ccs-distractor`: which feature CCS finds at each strength and layer."""
    _part(page, run, "distractor table", lambda: _records_table(
        page, run.results.get("rows"), ("strength", "layer", "picks"),
        "CCS with a planted distractor (test accuracy either sign; |cos| with truth and with the distractor)",
        labels=False))


KIND_RENDERERS: dict[str, Callable[[_Page, Run], None]] = {
    "demo": _section_demo, "probe": _section_probe, "ccs": _section_ccs, "eval": _section_tqa,
    "iti-validate": _section_tqa, "iti-sweep": _section_tqa, "spec": _section_pairs, "finetune": _section_pairs,
    "compare-interventions": _section_compare, "sycophancy": _section_sycophancy,
    "steer-sweep": _section_steer_sweep, "probe-polarity": _section_polarity, "ccs-distractor": _section_distractor,
}


# ----------------------------------------------------------------------------------------- generic parts

def _run_header(page: _Page, run: Run) -> None:
    cfg = run.config
    model = _get(cfg, "model", "main") if run.kind != "capture" else run.results["capture"].get("model")
    data = _get(cfg, "dataset", "data", "prompts") if run.kind != "capture" else run.results["capture"].get("dataset")
    bits = [f"kind <b>{_esc(run.kind)}</b>", f"status {_esc(run.status)}"]
    if model:
        bits.append(f"model <b>{_esc(model if isinstance(model, str) else _fmt(model))}</b>")
    if _get(cfg, "assistant"):
        bits.append(f"assistant <b>{_esc(cfg['assistant'])}</b>")
    if data:
        bits.append(f"data <b>{_esc(data if isinstance(data, str) else _fmt(data))}</b>")
    if cfg.get("created"):
        bits.append(f"created {_esc(cfg['created'])}")
    page.add(f'<h3>{_esc(run.path)}</h3><p class="meta">{" &middot; ".join(bits)}</p>')
    head = run.results.get("headline")
    if isinstance(head, dict) and head:
        page.add('<p class="headline">' + " &middot; ".join(f"{_esc(k)} = <b>{_esc(_fmt(v))}</b>"
                                                           for k, v in head.items()) + "</p>")


def _run_files(page: _Page, run: Run) -> None:
    """The run's own PNGs and CSVs, so anything a command writes is visible even without a dedicated part."""
    if run.kind == "capture":
        return
    pngs = sorted(run.path.glob("*.png"))
    for p in pngs:
        _part(page, run, p.name, lambda p=p: _img(page, p.read_bytes(), f"{p.name} (written by the run)"))
    for p in sorted(run.path.glob("*.csv")):
        def csv_table(p: Path = p) -> None:
            with open(p, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if not header:
                    return
                rows, more = [], 0
                for r in reader:
                    if len(rows) < MAX_CSV_ROWS:
                        rows.append(r)
                    else:
                        more += 1
            page.add(f"<details><summary>{_esc(p.name)} ({len(rows) + more} rows)</summary>")
            _table(page, header, rows, note=f"first {MAX_CSV_ROWS} rows shown; {more} more in {p}" if more else "")
            page.add("</details>")
        _part(page, run, p.name, csv_table)
    cfg = {k: v for k, v in run.config.items() if k not in ("argv",)}
    page.add(f"<details><summary>config.json</summary><pre>{_esc(json.dumps(cfg, indent=1)[:20000])}</pre></details>")


def _stores_of(run: Run) -> list[dict]:
    if run.kind == "capture":
        return [run.results["capture"]]
    out = []
    for m in sorted(run.path.glob("*/manifest.json")):
        man = _read_json(m)
        if man is not None:
            out.append(capture_summary(m.parent, man))
    if not out and isinstance(run.results.get("capture"), dict) and run.results["capture"].get("rows") is not None:
        c = dict(run.results["capture"])
        if _num(c.get("bytes")):
            c.setdefault("size", _human_bytes(c["bytes"]))
        c.setdefault("sites", c.get("site_names"))
        out.append(c)
    return out


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
    """The page for these runs, and the notes on parts that could not be rendered."""
    page = _Page(runs=list(runs))
    known = {k for _, _, kinds in SECTIONS for k in kinds}
    sections: list[tuple[str, str, list[Run]]] = []
    stores = [s for r in runs for s in _stores_of(r)]
    seen_paths: set[str] = set()
    stores = [s for s in stores if not (s.get("path") in seen_paths or seen_paths.add(s.get("path")))]
    for sid, stitle, kinds in SECTIONS:
        members = [r for r in runs if r.kind in kinds]
        if sid == "capture":
            if stores:
                sections.append((sid, stitle, members))
        elif members:
            sections.append((sid, stitle, members))
    other = [r for r in runs if r.kind not in known]
    if other:
        sections.append(("other", "Other runs", other))
    page.add(f"<h1>{_esc(title)}</h1>")
    page.add(f'<p class="meta">{len(runs)} run(s): '
             + ", ".join(f"{_esc(r.path.name)} ({_esc(r.kind)})" for r in runs) + "</p>")
    page.add("<nav>" + "".join(f'<a href="#{sid}">{_esc(t)}</a>' for sid, t, _ in sections) + "</nav>")
    for sid, stitle, members in sections:
        page.add(f'<section id="{sid}"><h2>{_esc(stitle)}</h2>')
        if sid == "capture":
            _section_capture(page, members, stores)
            for r in members:
                _run_header(page, r)
        else:
            for r in members:
                _run_header(page, r)
                fn = KIND_RENDERERS.get(r.kind)
                if fn is not None:
                    fn(page, r)
                _run_files(page, r)
        page.add("</section>")
    body = "\n".join(page.parts)
    doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<link rel="icon" href="data:,"><title>{_esc(title)}</title><style>{_CSS}</style></head>'
           f"<body>\n{body}\n<script>{_JS}</script></body></html>\n")
    return doc, page.notes


def render_report(run_dirs: list[Path], out: Path, title: str = "veracity report") -> Path:
    """Write one self-contained HTML report for the given run folders / capture stores (or folders of
    them) to `out`; returns `out`."""
    runs = expand_runs(run_dirs)
    if not runs:
        raise ValueError(f"no run folders or capture stores found in {', '.join(map(str, run_dirs))}")
    doc, _ = build_html(runs, title=title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc, encoding="utf-8")
    tmp.replace(out)
    return out
