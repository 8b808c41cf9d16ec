"""The studies registry: kind -> `Study` (its Config, its run function, its one Result type, its headline,
its report heading and CLI command). The report's sections (`report.sections.SECTIONS`), the results.json
reference (docs/reference/results.md) and the conformance test (tests/experiments/test_studies.py, which
runs every registered study on a tiny model) all read it, as the probe contract test reads `PROBES`.

A study conforms when:
- its Config subclasses `constraints.Checked` and holds the model (and every other setting of the run);
- `run(config, out, *, overwrite=False, log=print) -> Result` writes the run folder `out` through
  `runs.RunFolder` (a finished folder is refused without `overwrite`; an unfinished one of the same kind is
  resumed or restarted, as the study's checkpoint allows). A `resumable` study (a sweep: its results.sqlite
  holds one committed row per cell and fold) takes a finished folder too: a rerun computes only the cells
  the folder lacks (none with the same settings; the new ones of a longer grid) and returns an equal Result;
- its one Result type has `to_json()`, `from_json(d)` (refusing a newer `schema_version`), `write(run)`
  (its files, then results.json last), `headline()` and `tables()` (the console tables, each
  (title, columns, rows)).

This module is shared, not a study: it imports the studies, and no study imports it (no circle of files).
A new study is one `register_study` call here (or in a plugin, at import time)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..metrics import columns, headlines, rankable_metrics
from . import (ccs, demo, detect, finetune_milestones, interventions, iti_sweep, iti_validate, probe, probe_sanity,
               spec, steer_compare, steer_sweep, sycophancy, truthfulqa)


@dataclass(frozen=True)
class Study:
    """One registered study. `headline`: the keys its results' headline may hold (what `veracity runs list`
    shows); `section`: the report's page heading (kinds sharing one share a page section, in registration
    order); `smallest`: the options of its smallest run on the tiny test model (tiny-llama), beside the
    Config's defaults: what the conformance test runs (`{tmp}` in a text setting: its temporary folder, e.g.
    for an activation store the study writes). `resumable`: a finished run folder is resumed, not
    refused (its results.sqlite store: a rerun evaluates only the missing cells). `inputs`: the run folders
    its smallest run reads (a study that compares other runs), {folder: (kind, that kind's smallest-style
    settings)}, `{tmp}` as in `smallest`: the conformance test runs each of them first."""

    kind: str
    config: type
    run: Callable[..., Any]
    result: type
    schema_version: int
    headline: tuple[str, ...]
    section: str
    command: str
    smallest: Mapping[str, Any] = field(default_factory=dict)
    resumable: bool = False
    inputs: Mapping[str, tuple[str, Mapping[str, Any]]] = field(default_factory=dict)


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


def _parse_value(key: str, text: str, annotation: str) -> Any:
    """`text` (a `--set` value) as the field's annotated type: None for none/null where the field allows it,
    a list from JSON (`[1, 2]`) or comma-separated items, bool from true/false, int, float, else the text (or
    JSON, for an unannotated field). The Config's constraints then check the value itself."""
    from ..validation import BadInput

    ann = (annotation.__name__ if isinstance(annotation, type) else str(annotation)).replace(" ", "")
    t = text.strip()
    if t.lower() in ("none", "null") and ("None" in ann or "Optional" in ann):
        return None
    base = ann.replace("|None", "").replace("None|", "")
    if base.startswith("Optional["):
        base = base[len("Optional["):-1]
    try:
        if base.startswith(("list[", "tuple[", "Sequence[", "list", "tuple")):
            items = json.loads(t) if t.startswith("[") else [x for x in t.split(",") if x.strip()]
            inner = base[base.index("[") + 1:-1] if "[" in base else "str"
            return [_parse_value(key, str(x), inner) if isinstance(x, str) else x for x in items]
        if base == "bool":
            if t.lower() in ("true", "yes", "1", "on"):
                return True
            if t.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError(t)
        if base == "int":
            return int(t)
        if base == "float":
            return float(t)
        if base == "str":
            return text
        return json.loads(t)
    except ValueError:
        if base in ("int", "float", "bool") or base.startswith(("list", "tuple", "Sequence")):
            raise BadInput(f"--set {key}={text}: expected {annotation}") from None
        return text


def study_config(kind: str, settings: Iterable[str] = ()) -> Any:
    """The validated Config of study `kind` from `KEY=VALUE` strings (`veracity run KIND --set KEY=VALUE`), each
    parsed by its field's type (`_parse_value`); `KEY.SUB=VALUE` sets a field of a nested Config (finetune's
    `train.max_steps=2`). Unknown keys, malformed values and the Config's constraints raise `BadInput`."""
    from ..validation import BadInput

    try:
        study = study_of(kind)
    except KeyError as e:
        raise BadInput(e.args[0]) from None
    fields = {f.name: f for f in dataclasses.fields(study.config)}
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for item in settings:
        key, eq, text = item.partition("=")
        key, _, sub = key.strip().partition(".")
        if not eq or key not in fields:
            raise BadInput(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        if sub:
            default = fields[key].default_factory() if fields[key].default_factory is not dataclasses.MISSING \
                else fields[key].default
            if not dataclasses.is_dataclass(default):
                raise BadInput(f"--set {item!r}: {key} has no fields")
            subfields = {f.name: f for f in dataclasses.fields(default)}
            if sub not in subfields:
                raise BadInput(f"--set {item!r}: {key} has no field {sub!r}; its fields: {', '.join(subfields)}")
            nested.setdefault(key, {})[sub] = _parse_value(item.partition("=")[0], text, subfields[sub].type)
        else:
            values[key] = _parse_value(key, text, fields[key].type)
    for key, subs in nested.items():
        f = fields[key]
        base = values.get(key) or (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        values[key] = dataclasses.replace(base, **subs)
    return study.config(**values)


def run_study(kind: str, settings: Iterable[str], out, *, overwrite: bool = False,
              log: Callable[[str], None] = print) -> Any:
    """Run study `kind` with its Config built from `KEY=VALUE` settings (`study_config`): what `veracity run`
    calls, so a newly registered study runs from the CLI without a CLI edit."""
    cfg = study_config(kind, settings)
    return study_of(kind).run(cfg, out, overwrite=overwrite, log=log)


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
    Study("finetune", finetune_milestones.FinetuneConfig, finetune_milestones.run_finetune,
          finetune_milestones.FinetuneRun, finetune_milestones.SCHEMA_VERSION, ("steps", "final_loss", "final_kl"),
          "Model pairs", "finetune",
          {"model": "tiny-llama", "corpus_limit": 4, "eval_every": 1,
           "train": finetune_milestones.TrainConfig(max_steps=2, batch_size=2, max_length=16)}),
    Study("ccs-distractor", probe_sanity.DistractorConfig, probe_sanity.run_ccs_distractor, probe_sanity.DistractorRun,
          probe_sanity.SCHEMA_VERSION, ("picks_distractor", "cells"), "Steering sweeps and probe sanity checks",
          "ccs-distractor",
          {"model": "tiny-llama", "dataset": "boolq", "limit": 16, "layers": [1, -1], "strengths": [0.0, 3.0],
           "n_restarts": 2, "epochs": 20}),
    Study("detect", detect.DetectConfig, detect.run_detect, detect.DetectResult, detect.SCHEMA_VERSION,
          detect.HEADLINE, "Detecting wrong answers", "detect",
          {"model": "tiny-llama", "tables": ["continents"], "n_questions": 8, "n_samples": 2, "max_new_tokens": 4,
           "layers": [0, 1], "positions": ["pre", "answer_last"], "probes": ["logistic"], "n_boot": 20,
           "device": "cpu"}),
    Study("iti-sweep", iti_sweep.SweepConfig, iti_sweep.run_iti_sweep, iti_sweep.SweepRun, iti_sweep.SCHEMA_VERSION,
          ("best_alpha", "best_k", *rankable_metrics()), "TruthfulQA and ITI", "iti sweep",
          {"model": "tiny-llama", "alphas": [0.0, 5.0], "num_heads": [2], "folds": 2, "limit": 8, "ce_texts": 0,
           "metric": "mc2", "side_effects": [], "device": "cpu", "acts": "{tmp}/acts"}, resumable=True),
    Study("steer-sweep", steer_sweep.SteerSweepConfig, steer_sweep.run_steer_sweep, steer_sweep.SteerSweepRun,
          steer_sweep.SCHEMA_VERSION, ("best_layer", "best_alpha", *rankable_metrics()),
          "Steering sweeps and probe sanity checks", "steer sweep",
          {"model": "tiny-llama", "method": "caa", "layers": [1], "alphas": [0.0, 2.0], "folds": 2, "limit": 8,
           "ce_texts": 0, "side_effects": [], "device": "cpu", "acts": "{tmp}/acts"}, resumable=True),
    Study("steer-compare", steer_compare.SteerCompareConfig, steer_compare.run_steer_compare,
          steer_compare.SteerCompareResult, steer_compare.SCHEMA_VERSION,
          ("best_method", "best_setting", *rankable_metrics()), "Steering sweeps and probe sanity checks",
          "steer compare", {"runs": ["{tmp}/caa", "{tmp}/ace"], "metric": "mc2"},
          inputs={f"{{tmp}}/{m}": ("steer-sweep", {"model": "tiny-llama", "method": m, "layers": [1, 2],
                                                  "alphas": [0.0, 2.0], "folds": 2, "limit": 8, "ce_texts": 0,
                                                  "side_effects": [], "device": "cpu", "acts": "{tmp}/acts"})
                  for m in ("caa", "ace")}),
    Study("compare-interventions", interventions.CompareRunConfig, interventions.run_compare_interventions,
          interventions.CompareRun, interventions.SCHEMA_VERSION, ("best_by_mc2", "mc2"),
          "Intervention comparison and sycophancy", "compare-interventions",
          {"model": "tiny-llama", "methods": ["baseline", "instruction"], "folds": 2, "limit": 8, "ce_texts": 0,
           "side_effects": [], "device": "cpu", "acts": "{tmp}/acts"}, resumable=True),
    Study("iti-validate", iti_validate.ValidateConfig, iti_validate.run_validate, iti_validate.ValidateRun,
          iti_validate.SCHEMA_VERSION, tuple(k for k in headlines() if k in columns("summary")),
          "TruthfulQA and ITI", "iti validate",
          {"model": "tiny-llama", "num_heads": 2, "alpha": 5.0, "folds": 2, "limit": 8, "ce_texts": 0,
           "device": "cpu", "acts": "{tmp}/acts"}),
    Study("probe", probe.ProbeConfig, probe.run_probe, probe.ProbeRun, probe.SCHEMA_VERSION,
          ("best_acc", "best", "best_head_acc", "best_head"), "Probes", "probe",
          {"model": "tiny-llama", "dataset": "synthetic", "limit": 24, "layers": [1, -1],
           "methods": ["logistic", "mass-mean"], "split": "random", "seeds": 2, "device": "cpu"}),
    Study("sycophancy", sycophancy.SycophancyConfig, sycophancy.run_sycophancy, sycophancy.SycophancyRun,
          sycophancy.SCHEMA_VERSION,
          tuple(f"{d}:{c}:mc_acc" for d in sycophancy.DATASETS for c in sycophancy.CONDITIONS), "Intervention comparison and sycophancy", "sycophancy",
          {"model": "tiny-llama", "limit": 8, "iti_k": 4, "iti_alpha": 5.0, "batch_size": 4, "device": "cpu",
           "acts": "{tmp}/acts"}),
):
    register_study(_s)
