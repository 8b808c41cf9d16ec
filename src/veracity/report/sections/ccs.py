"""`ccs`: CCS against a supervised (logistic) and a random probe and the zero-shot answer, per layer."""

from __future__ import annotations

from dataclasses import asdict

from .. import plots
from ..page import Page, Run, fmt, img
from .common import series_tables


def render(page: Page, run: Run) -> None:
    """Draw a `ccs` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.ccs import CCSRun

    res = CCSRun.from_json(run.results)
    layers = [r.layer for r in res.ccs.layers]
    series: dict[str, dict] = {}
    for r in res.ccs.layers:
        for k, v in asdict(r).items():
            if k != "layer":
                series.setdefault(k, {})[r.layer] = (v,)
    zs = res.ccs.zero_shot["accuracy"] if res.ccs.zero_shot else None
    hl = ({"zero-shot P(yes) vs P(no)": zs} if zs is not None else {}) | {"chance (0.5)": 0.5}
    img(page, plots.lines({n: (layers, [s[l][0] for l in layers]) for n, s in series.items() if "loss" not in n},
                          xlabel="layer (decoder block index)", ylabel="test accuracy (fraction)",
                          title="CCS vs logistic vs random probe vs zero-shot, per layer", hlines=hl),
        "CCS vs supervised and baseline probes by layer")
    series_tables(page, series, layers, "accuracy", {"": 0})
    if zs is not None:
        page.note(f"zero-shot accuracy (no probe, the model's P(yes) vs P(no)): {fmt(zs)}")
