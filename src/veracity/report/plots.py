"""Matplotlib figures for the report, each returned as PNG bytes.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas directly rather than through
pyplot, so rendering a report never touches pyplot's global figure registry or the user's backend.
Every axis carries a label with its unit so a figure read out of context still says what it shows.
"""

from __future__ import annotations

import io
import math
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..metrics import BROKEN_AT  # the broken rule's own threshold for the legend, not a second copy of it

Number = float | int


def _new(width: float = 6.4, height: float = 3.8) -> tuple[Figure, object]:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def to_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (tight bounding box), for embedding in the report."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def lines(series: Mapping[str, tuple[Sequence[Number], Sequence[Number | None]]], *, xlabel: str, ylabel: str,
          title: str, hlines: Mapping[str, float] | None = None, styles: Mapping[str, str] | None = None,
          integer_x: bool = True) -> bytes:
    """One line per series (x, y); `hlines` draws labelled reference levels (chance, zero-shot)."""
    fig, ax = _new()
    for name, (xs, ys) in series.items():
        pts = [(x, y) for x, y in zip(xs, ys) if _finite(y)]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], (styles or {}).get(name, "o-"), label=name,
                    markersize=3.5, linewidth=1.4)
    for i, (name, y) in enumerate((hlines or {}).items()):
        if _finite(y):
            ax.axhline(y, color=f"C{(len(series) + i) % 10}", linestyle=":", linewidth=1.2, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if integer_x:
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if series or hlines:
        ax.legend(fontsize=8)
    return to_png(fig)


def heatmap(matrix: Sequence[Sequence[Number | None]], *, xlabel: str, ylabel: str, title: str, cbar_label: str,
            x_ticklabels: Sequence | None = None, y_ticklabels: Sequence | None = None,
            marks: Sequence[tuple[int, int]] = (), outline: Sequence[tuple[int, int]] = (),
            star: tuple[int, int] | None = None,
            vmin: float | None = None, vmax: float | None = None, annotate: bool | None = None,
            cmap: str = "viridis") -> bytes:
    """Matrix as an image (rows = y). `marks` get a red box, `outline` a white dashed box, `star` a star,
    so selected heads, the alpha=0 baseline and the best configuration can be seen on the map."""
    import numpy as np

    m = np.array([[v if _finite(v) else np.nan for v in row] for row in matrix], dtype=float)
    rows, cols = m.shape
    fig, ax = _new(min(11.0, 2.6 + 0.32 * cols), min(9.0, 1.6 + 0.3 * rows))
    im = ax.imshow(np.ma.masked_invalid(m), aspect="auto", origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label=cbar_label)
    if x_ticklabels is not None:
        step = max(1, cols // 24)
        ax.set_xticks(range(0, cols, step))
        ax.set_xticklabels([str(x_ticklabels[i]) for i in range(0, cols, step)], fontsize=7, rotation=0)
    if y_ticklabels is not None:
        step = max(1, rows // 24)
        ax.set_yticks(range(0, rows, step))
        ax.set_yticklabels([str(y_ticklabels[i]) for i in range(0, rows, step)], fontsize=7)
    if annotate is None:
        annotate = rows * cols <= 64
    if annotate:
        lo, hi = im.get_clim()
        for r in range(rows):
            for c in range(cols):
                if np.isfinite(m[r, c]):
                    bright = (m[r, c] - lo) / (hi - lo) > 0.6 if hi > lo else False
                    ax.text(c, r, f"{m[r, c]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if bright else "white")
    # the title names what the boxes and the star mean; a legend would collide with the axis label
    for r, c in marks:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.6))
    for r, c in outline:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="white", linestyle="--", linewidth=1.6))
    if star is not None:
        ax.plot([star[1]], [star[0]], marker="*", color="red", markersize=13, linestyle="none", markeredgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return to_png(fig)


def histograms(groups: Mapping[str, Sequence[Number]], *, xlabel: str, title: str, bins: int = 20) -> bytes:
    """Overlaid per-group histograms on shared bins, normalised to density so unequal group sizes compare."""
    import numpy as np

    vals = {g: [v for v in vs if _finite(v)] for g, vs in groups.items()}
    allv = [v for vs in vals.values() for v in vs]
    fig, ax = _new()
    if allv:
        lo, hi = min(allv), max(allv)
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        for g, vs in vals.items():
            if vs:
                ax.hist(vs, bins=edges, alpha=0.5, density=True, label=f"{g} (n={len(vs)})")
                ax.axvline(float(np.mean(vs)), linestyle="--", linewidth=1.0, color=ax.patches[-1].get_facecolor()[:3])
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (per unit of x)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return to_png(fig)


def heatmap_panels(panels: Sequence[tuple[str, Sequence[Sequence[Number | None]], Sequence]], *, title: str,
                   cbar_label: str, axis_label: str, vmin: float, vmax: float, cmap: str = "viridis") -> bytes:
    """Several small square matrices side by side on one colour scale (e.g. one direction-similarity
    matrix per layer), so a method's geometry across layers reads as one picture."""
    import numpy as np

    n = len(panels)
    fig = Figure(figsize=(min(16.0, 0.6 + 2.7 * n), 3.1), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    im = None
    for ax, (name, matrix, ticks) in zip(axes, panels):
        m = np.array([[v if _finite(v) else np.nan for v in row] for row in matrix], dtype=float)
        im = ax.imshow(np.ma.masked_invalid(m), vmin=vmin, vmax=vmax, cmap=cmap, interpolation="nearest")
        ticks = [str(t) for t in ticks]
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels([t[:10] for t in ticks], rotation=90, fontsize=6)
        ax.set_yticks(range(len(ticks)))
        ax.set_yticklabels([t[:10] for t in ticks], fontsize=6)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel(axis_label, fontsize=7)
    axes[0].set_ylabel(axis_label, fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=list(axes), shrink=0.8, label=cbar_label)
    fig.suptitle(title, fontsize=10)
    return to_png(fig)


def bars(groups: Mapping[str, Mapping[str, Number | None]], *, xlabel: str, ylabel: str, title: str,
         errors: Mapping[str, Mapping[str, tuple[Number, Number]]] | None = None,
         hlines: Mapping[str, float] | None = None) -> bytes:
    """Grouped bars: one group per key of `groups` along x, one coloured bar per series inside it;
    `errors[group][series]` = (low, high) draws an interval; `hlines` labelled reference levels (chance, 0)."""
    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig, ax = _new()
    width = 0.8 / max(1, len(series))
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(names))]
        ys = [groups[g].get(s) for g in names]
        pts = [(x, y, g) for x, y, g in zip(xs, ys, names) if _finite(y)]
        if not pts:
            continue
        ax.bar([p[0] for p in pts], [p[1] for p in pts], width * 0.95, label=s, color=f"C{j % 10}")
        err = [(errors or {}).get(g, {}).get(s) for _, _, g in pts]
        if any(e is not None for e in err):
            lo = [y - e[0] if e is not None and _finite(e[0]) else 0 for (_, y, _), e in zip(pts, err)]
            hi = [e[1] - y if e is not None and _finite(e[1]) else 0 for (_, y, _), e in zip(pts, err)]
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[lo, hi], fmt="none", ecolor="black",
                        capsize=3, linewidth=1)
    for i, (name, y) in enumerate((hlines or {}).items()):
        if _finite(y):
            ax.axhline(y, color="gray", linestyle=":", linewidth=1.2, label=name)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    if series or hlines:
        ax.legend(fontsize=8)
    return to_png(fig)


def gain_cost(rows: Sequence[Mapping], *, title: str, labels: Mapping[str, str] | None = None) -> bytes:
    """The one picture of gain against cost: one panel per (gain, cost) pair of `rows` (`metrics.gain_cost_table`:
    gains down, costs across), every setting a point coloured by its series (interval bars from gain_sd), the
    Pareto front joined by a red line and ringed, reference points (the plain model, prompting) as black markers
    with a dotted line at their gain, a broken model's points (`metrics.broken`) crossed out. `labels`: axis titles
    by metric name (default the name)."""
    labels = labels or {}
    broken_label = "broken (" + ", ".join(f"{k} >= {v:g}" for k, v in BROKEN_AT.items()) + ")"
    gains = list(dict.fromkeys(r["gain_metric"] for r in rows))
    costs = list(dict.fromkeys(r["cost_metric"] for r in rows))
    series = list(dict.fromkeys(r["series"] for r in rows if not r.get("reference")))
    colour = {s: f"C{i % 10}" for i, s in enumerate(series)}
    refs = list(dict.fromkeys(r["reference"] for r in rows if r.get("reference")))
    marker = {r: m for r, m in zip(refs, "s^DPX*")}
    nr, nc = max(1, len(gains)), max(1, len(costs))
    fig = Figure(figsize=(min(18.0, 1.0 + 3.0 * nc), 0.8 + 2.6 * nr), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nr, nc, squeeze=False)
    for i, g in enumerate(gains):
        for j, c in enumerate(costs):
            ax = axes[i][j]
            pts = [r for r in rows if r["gain_metric"] == g and r["cost_metric"] == c]
            for s in series:
                mine = [r for r in pts if r["series"] == s and not r.get("reference")]
                if mine:
                    ax.errorbar([r["cost"] for r in mine], [r["gain"] for r in mine],
                                yerr=[r["gain_sd"] if _finite(r.get("gain_sd")) else 0.0 for r in mine],
                                fmt="o", color=colour[s], markersize=4, elinewidth=0.8, capsize=2, linestyle="none",
                                label=s if i == 0 and j == 0 else None)
            for r in pts:
                if r.get("reference"):
                    ax.plot([r["cost"]], [r["gain"]], marker=marker[r["reference"]], color="black", markersize=7,
                            linestyle="none", label=r["reference"] if i == 0 and j == 0 else None)
                    ax.axhline(r["gain"], color="gray", linestyle=":", linewidth=0.9)
            bad = [r for r in pts if r.get("broken")]  # a broken model's point: crossed out, never on the front
            if bad:
                ax.plot([r["cost"] for r in bad], [r["gain"] for r in bad], "x", color="black", markersize=9,
                        linestyle="none", label=broken_label if i == 0 and j == 0 else None)
            front = sorted((r for r in pts if r["pareto"]), key=lambda r: r["cost"])
            if front:
                ax.plot([r["cost"] for r in front], [r["gain"] for r in front], "-", color="red", linewidth=1.0,
                        label="Pareto front" if i == 0 and j == 0 else None)
                ax.plot([r["cost"] for r in front], [r["gain"] for r in front], "o", markerfacecolor="none",
                        markeredgecolor="red", markersize=9, linestyle="none")
            ax.set_xlabel(labels.get(c, c), fontsize=8)
            if j == 0:
                ax.set_ylabel(labels.get(g, g), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    if rows:
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, len(series) + len(refs) + 1), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return to_png(fig)
