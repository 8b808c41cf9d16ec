"""`probe`: accuracy by layer per method (average and maximum over seeds) and the geometry of the probe
directions across splits; with `--heads`, the layers x heads map of probe accuracy."""

from __future__ import annotations

from .. import plots
from ..page import Page, Run, fmt, img, table
from .common import heads_heatmap, series_tables


def render(page: Page, run: Run) -> None:
    """Draw a `probe` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.probe import ProbeRun

    res = ProbeRun.from_json(run.results)
    head = res.headline()
    if res.heads is not None:
        _heads(page, res.heads, head["best_head"])
    else:
        _layers(page, res.experiment)
        page.note(f"best: {head['best']}, mean accuracy {fmt(head['best_acc'])} over {len(res.experiment.seeds)} "
                  "seeds")
        _geometry(page, res.experiment.geometry)


def _layers(page: Page, exp) -> None:
    series: dict[str, dict] = {}
    for c in exp.cells:
        series.setdefault(c.method, {})[c.layer] = (c.mean, c.max)
    lines, styles = {}, {}
    for name, s in series.items():
        ls = sorted(s)
        lines[f"{name} (avg)"], styles[f"{name} (avg)"] = (ls, [s[l][0] for l in ls]), "o-"
        if any(s[l][1] != s[l][0] for l in ls):
            lines[f"{name} (max)"], styles[f"{name} (max)"] = (ls, [s[l][1] for l in ls]), "^--"
    img(page, plots.lines(lines, styles=styles, xlabel="layer (decoder block index)", ylabel="test accuracy (fraction)",
                          hlines={"chance (0.5)": 0.5},
                          title=f"probe accuracy by layer ({exp.split} split); avg and max over seeds"),
        "probe accuracy by layer per method (average and maximum over seeds)")
    series_tables(page, series, exp.layers, "probe accuracy", {"average": 0, "maximum": 1})


def _heads(page: Page, res, name: str) -> None:
    layer, head, acc = res.best()
    heads_heatmap(page, res.accuracy_mean, res.layers, "probe accuracy per attention head",
                  "validation accuracy (fraction)")
    page.note(f"best head: layer {layer}, head {head}, mean accuracy {fmt(acc)} over {res.seeds} seeds ({name})")
    heads_heatmap(page, res.accuracy_max, res.layers, "probe accuracy per attention head, maximum over seeds",
                  "validation accuracy (fraction)")


def _geometry(page: Page, geometry: dict) -> None:
    """{method: {layer: cosine and sign-agreement matrices between the splits' directions}}."""
    if not geometry:
        return
    items = [(m, l, g) for m, per_layer in geometry.items() for l, g in per_layer.items()]
    table(page, ["direction set", "mean pairwise cosine", "chance |cosine| (1/sqrt(d))", "mean sign equality",
                 "chance sign equality"],
          [[f"{m} {l}", g["mean_offdiag_cosine"], g["chance_cosine"], g["mean_offdiag_sign"], g["chance_sign"]]
           for m, l, g in items], caption="geometry of probe directions across splits")
    for method, per_layer in geometry.items():
        for key, title, cbar, chance_key, vmin, cmap in (
                ("cosine", "cosine similarity of probe directions", "cosine (unitless)", "chance_cosine", -1.0,
                 "coolwarm"),
                ("sign_agreement", "fraction of coordinates with equal sign", "sign equality (fraction)",
                 "chance_sign", 0.0, "viridis")):
            panels = [(f"layer {l} (chance {g[chance_key]:.2g})", g[key], g["labels"])
                      for l, g in list(per_layer.items())[:8]]
            t = f"{title}: {method}"
            img(page, plots.heatmap_panels(panels, title=t, cbar_label=cbar, axis_label="split (direction)",
                                           vmin=vmin, vmax=1.0, cmap=cmap), t)
