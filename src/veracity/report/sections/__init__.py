"""One module per run kind, each with `render(page, run)`: it reads the kind's typed result
(`Result.from_json(run.results)`) and draws its figures and tables.

SECTIONS maps a kind to (page heading, render); kinds that share a heading share a page section, in this
order. A new kind is one module here and one line below."""

from __future__ import annotations

from typing import Callable

from ..page import Page, Run
from . import ccs, demo, distractor, finetune, interventions, iti_sweep, iti_validate, polarity, probe, spec
from . import steer_sweep, sycophancy, truthfulqa

SECTIONS: dict[str, tuple[str, Callable[[Page, Run], None]]] = {
    "demo": ("Demo", demo.render),
    "probe": ("Probes", probe.render),
    "ccs": ("CCS", ccs.render),
    "eval": ("TruthfulQA and ITI", truthfulqa.render),
    "iti-validate": ("TruthfulQA and ITI", iti_validate.render),
    "iti-sweep": ("TruthfulQA and ITI", iti_sweep.render),
    "compare-interventions": ("Intervention comparison and sycophancy", interventions.render),
    "sycophancy": ("Intervention comparison and sycophancy", sycophancy.render),
    "spec": ("Model pairs", spec.render),
    "finetune": ("Model pairs", finetune.render),
    "steer-sweep": ("Steering sweeps and probe sanity checks", steer_sweep.render),
    "probe-polarity": ("Steering sweeps and probe sanity checks", polarity.render),
    "ccs-distractor": ("Steering sweeps and probe sanity checks", distractor.render),
}
