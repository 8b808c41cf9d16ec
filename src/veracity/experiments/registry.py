"""The studies registry: kind -> `Study` (its Config, its run function, its one Result type, its headline,
its report heading and CLI command). The report's sections (`report.sections.SECTIONS`), the results.json
reference (docs/reference/results.md) and the conformance test (tests/experiments/test_studies.py, which
runs every registered study on a tiny model) all read it, as the probe contract test reads `PROBES`.

A study conforms when:
- its Config subclasses `constraints.Checked` and holds the model (and every other setting of the run);
- `run(config, out, *, overwrite=False, log=print) -> Result` writes the run folder `out` through
  `runs.RunFolder` (a finished folder is refused without `overwrite`; an unfinished one of the same kind is
  resumed or restarted, as the study's checkpoint allows);
- its one Result type has `to_json()`, `from_json(d)` (refusing a newer `schema_version`), `write(run)`
  (its files, then results.json last), `headline()` and `tables()` (the console tables, each
  (title, columns, rows)).

This module is shared, not a study: it imports the studies, and no study imports it (no circle of files).
A new study is one `register_study` call here (or in a plugin, at import time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import ccs, demo, detect, probe_sanity, spec, truthfulqa


@dataclass(frozen=True)
class Study:
    """One registered study. `headline`: the keys its results' headline may hold (what `veracity runs list`
    shows); `section`: the report's page heading (kinds sharing one share a page section, in registration
    order); `smallest`: the options of its smallest run on the tiny test model (tiny-llama), beside the
    Config's defaults: what the conformance test runs."""

    kind: str
    config: type
    run: Callable[..., Any]
    result: type
    schema_version: int
    headline: tuple[str, ...]
    section: str
    command: str
    smallest: Mapping[str, Any] = field(default_factory=dict)


STUDIES: dict[str, Study] = {}


def register_study(study: Study) -> Study:
    """Add a study to `STUDIES` (its kind must be new), after checking that its types have the conforming
    methods, so a half-conforming study fails at registration, not in a run."""
    if study.kind in STUDIES:
        raise ValueError(f"study kind {study.kind!r} is already registered")
    missing = [m for m in ("to_json", "from_json", "write", "headline", "tables") if not hasattr(study.result, m)]
    if missing:
        raise TypeError(f"study {study.kind!r}: {study.result.__name__} lacks {', '.join(missing)}")
    from ..constraints import Checked

    if not issubclass(study.config, Checked):
        raise TypeError(f"study {study.kind!r}: {study.config.__name__} does not subclass constraints.Checked")
    STUDIES[study.kind] = study
    return study


def study_of(kind: str) -> Study:
    """The registered study of `kind`; KeyError naming the registered kinds otherwise."""
    try:
        return STUDIES[kind]
    except KeyError:
        raise KeyError(f"no study of kind {kind!r}; registered: {', '.join(STUDIES)}") from None


for _s in (
    Study("demo", demo.DemoConfig, demo.run_demo, demo.DemoResult, demo.SCHEMA_VERSION,
          ("best_layer", "accuracy", "auroc", "affirmative_to_negated", "ttpd_on_negated", "causal_shift",
           "random_shift"), "Demo", "demo",
          {"model": "tiny-llama", "n_cities": 8, "n_causal": 4, "alphas": [2.0], "n_random": 1, "n_select": 4,
           "n_examples": 2, "data_dir": "/nonexistent-veracity-data"}),
    Study("ccs", ccs.CCSConfig, ccs.run_ccs, ccs.CCSRun, ccs.SCHEMA_VERSION,
          ("ccs_best_acc", "ccs_best_layer", "zero_shot"), "CCS", "ccs",
          {"model": "tiny-llama", "dataset": "boolq", "limit": 16, "epochs": 10, "n_restarts": 2,
           "zero_shot": False}),
    Study("eval", truthfulqa.EvalConfig, truthfulqa.run_eval, truthfulqa.EvalOutput, truthfulqa.SCHEMA_VERSION,
          truthfulqa.HEADLINE, "TruthfulQA and ITI", "eval truthfulqa",
          {"model": "tiny-llama", "protocol": "lm-eval", "limit": 4, "judge": "none", "metrics": ["mc", "kl"],
           "n_docs": 2, "max_tokens": 16}),
    Study("spec", spec.SpecConfig, spec.run_spec, spec.SpecRun, spec.SCHEMA_VERSION,
          ("diff_mean_accepted", "p_value"), "Model pairs", "spec",
          {"main": "tiny-llama", "assistant": "tiny-llama", "limit": 6, "max_new_tokens": 3, "gamma": 2}),
    Study("probe-polarity", probe_sanity.PolarityConfig, probe_sanity.run_probe_polarity, probe_sanity.PolarityRun,
          probe_sanity.SCHEMA_VERSION, ("rows", "worst_affirmative_to_negated"),
          "Steering sweeps and probe sanity checks", "probe-polarity",
          {"model": "tiny-llama", "sets": ["cities"], "limit": 24, "layers": [1, -1], "methods": ["logistic"],
           "device": "cpu"}),
    Study("detect", detect.DetectConfig, detect.run_detect, detect.DetectResult, detect.SCHEMA_VERSION,
          detect.HEADLINE, "Detecting wrong answers", "detect",
          {"model": "tiny-llama", "tables": ["continents"], "n_questions": 8, "n_samples": 2, "max_new_tokens": 4,
           "layers": [0, 1], "positions": ["pre", "answer_last"], "probes": ["logistic"], "n_boot": 20,
           "device": "cpu"}),
):
    register_study(_s)
