"""The probe sanity checks as studies: `veracity probe-polarity` (train on affirmative statements, test on
negated ones, and held-out topics, for every probe method) and `veracity ccs-distractor` (does CCS find a
planted distractor instead of truth? Farquhar et al. 2023). The computations are in `veracity.probes.sanity`;
this module owns the configs, the typed results and the run folders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..constraints import Checked, Interval, ListOf, Registered
from ..runs import schema_version
from ..methods import options as o

if TYPE_CHECKING:
    from ..probes.sanity import PolarityExperiment

#: results.json layout of probe-polarity and ccs-distractor runs (docs/reference/results.md)
SCHEMA_VERSION = 1
POLARITY_VIEWS = (("affirmative", "affirmative"), ("affirmative", "negated"), ("negated", "affirmative"),
                  ("both", "negated"))


def _polarity_methods():
    from ..probes.registry import PROBES

    return PROBES


def _polarity_sets():
    from ..data.statements import GOT_NAMES
    from ..probes.sanity import INTERLEAVED

    return sorted({n for n in GOT_NAMES if f"neg_{n}" in GOT_NAMES} | set(INTERLEAVED))


@dataclass
class PolarityConfig(Checked):
    """Every option of `veracity probe-polarity`."""

    _constraints = {"model": o.MODEL, "sets": [ListOf([Registered(_polarity_sets, "set", note="the sets with negated twins")], unique=True)], "layers": o.LAYERS,
                    "methods": [ListOf([Registered(_polarity_methods, "probe method")], unique=True)],
                    "limit": o.LIMIT, "test_size": o.FRACTION, "seed": o.SEED, "C": o.POSITIVE,
                    "keep_twins": o.BOOL, "batch_size": o.BATCH, "device": o.DEVICE, "data_dir": o.OPTIONAL_TEXT}
    _commands = ("probe-polarity",)

    model: str = "smollm2"
    sets: list[str] = field(default_factory=lambda: ["cities", "sp_en_trans"])
    layers: list[int] | None = None
    methods: list[str] = field(default_factory=lambda: ["logistic", "mass-mean", "ttpd"])
    limit: int | None = None
    test_size: float = 0.2
    seed: int = 0
    C: float = 1.0
    keep_twins: bool = True  # a statement and its negation on the same side of every split
    batch_size: int = 32
    device: str | None = None
    data_dir: str | None = None


@dataclass
class PolarityRun:
    """The typed result of `veracity probe-polarity`: results.json = {"experiment": PolarityExperiment}."""

    experiment: PolarityExperiment
    topics: list[str] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        aff_neg = [s["accuracy"] for s in self.experiment.scores if s["train"] == "affirmative"
                   and s["test"] == "negated" and s["accuracy"] is not None]
        return {"rows": self.experiment.n_rows, "worst_affirmative_to_negated": min(aff_neg, default=None)}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows)."""
        exp = self.experiment
        cols = ["method"] + [f"L{l}" for l in exp.layers]
        out = [(f"train {tr} -> test {te} (held-out rows)", cols, exp.table(tr, te)) for tr, te in POLARITY_VIEWS]
        if len(self.topics) > 1:
            out += [(f"held-out topic {t}: train on the other topics (both polarities) -> {t} negated", cols,
                     exp.table(f"topic!={t}", f"{t}:negated")) for t in self.topics]
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "experiment": self.experiment, "topics": self.topics}

    @classmethod
    def from_json(cls, d: dict) -> "PolarityRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..probes.sanity import PolarityExperiment
        v = schema_version(d, "probe-polarity", SCHEMA_VERSION)
        e = d["experiment"]
        exp = PolarityExperiment(list(e["methods"]), list(e["layers"]), list(e["scores"]), e["n_rows"], e["seed"])
        topics = d.get("topics") or sorted({s["test"].split(":")[0] for s in exp.scores if ":" in s["test"]})
        return cls(exp, topics, schema_version=v)

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("polarity_scores.csv", self.experiment.scores)
        run.finish(self.to_json(), headline=self.headline())


def run_probe_polarity(cfg: PolarityConfig, out, overwrite: bool = False,
                       log: Callable[[str], None] = print) -> PolarityRun:
    """Check the methods, data and run folder before loading the model; capture the last-token residual
    stream of every statement at the chosen layers; run `probes.sanity.run_polarity_experiment`."""
    from ..capture import capture
    from ..models import load_checked
    from ..probes import make_probe
    from ..probes.sanity import polarity_statements, run_polarity_experiment
    from ..runs import RunFolder, check_out_folder
    from ..validation import BadInput

    check_out_folder(out, "probe-polarity", overwrite=overwrite)  # before reading any input or loading a model
    try:
        for m in cfg.methods:
            make_probe(m)
    except ValueError as e:
        raise BadInput(str(e)) from None
    ds = polarity_statements(cfg.sets, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
    run = RunFolder(out, "probe-polarity", {"model": cfg.model, "sets": list(cfg.sets), "layers": cfg.layers,
                                            "methods": list(cfg.methods), "limit": cfg.limit,
                                            "test_size": cfg.test_size, "seed": cfg.seed, "C": cfg.C,
                                            "keep_twins": cfg.keep_twins, "rows": len(ds),
                                            "content_hash": ds.content_hash},
                    overwrite=overwrite, seed=cfg.seed, defer=True)
    lm = load_checked(cfg.model, cfg.device, cfg.layers)
    run.start()
    absl = list(range(lm.arch.n_layers)) if cfg.layers is None else [lm.arch.resolve_layer(l) for l in cfg.layers]
    log(f"{len(ds)} statements, {len(absl)} layers")
    acts = capture(lm, ds.texts, ",".join(f"resid.{l}" for l in absl), positions="last", batch_size=cfg.batch_size,
                   labels=ds.labels, groups=ds.groups, dataset_name=ds.name, progress=False)
    X = acts.stack("resid", absl).float()
    exp = run_polarity_experiment(X, ds.labels, [m["polarity"] for m in ds.meta], ds.groups, absl, list(cfg.methods),
                                  seed=cfg.seed, test_size=cfg.test_size, C=cfg.C,
                                  twins=[m["twin"] for m in ds.meta] if cfg.keep_twins else None)
    result = PolarityRun(exp, sorted(set(ds.groups)))
    result.write(run)
    return result


@dataclass
class DistractorConfig(Checked):
    """Every option of `veracity ccs-distractor`: the model's contrast pairs of `dataset` (captured in memory),
    or `acts`, the contrast-pair store of an earlier `veracity ccs` run (then the model is not loaded)."""

    _constraints = {"model": o.MODEL, "dataset": o.MODEL, "acts": o.OPTIONAL_TEXT, "limit": o.LIMIT,
                    "layers": o.LAYERS, "strengths": [ListOf([Interval(float, 0, None)])], "test_size": o.FRACTION,
                    "n_restarts": o.COUNT, "epochs": o.COUNT, "lr": o.POSITIVE, "seed": o.SEED,
                    "batch_size": o.BATCH, "device": o.DEVICE, "data_dir": o.OPTIONAL_TEXT}
    _commands = ("ccs-distractor",)

    model: str = "smollm2"
    dataset: str = "boolq"  # a data set whose meta holds x_plus / x_minus (read without `acts`)
    acts: str | None = None  # a contrast-pair store (x+ rows, then x- rows); replaces model + dataset
    limit: int | None = None
    layers: list[int] | None = None
    strengths: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # RMS norms of the centred activations
    test_size: float = 0.4
    n_restarts: int = 10
    epochs: int = 1000
    lr: float = 1e-3
    seed: int = 0
    batch_size: int = 8
    device: str | None = None
    data_dir: str | None = None


@dataclass
class DistractorRun:
    """The typed result of `veracity ccs-distractor`: one row per (strength, layer)."""

    rows: list[dict]
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        return {"picks_distractor": sum(r["picks"] == "distractor" for r in self.rows), "cells": len(self.rows)}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows)."""
        return [("CCS with a planted distractor (test accuracy either sign; |cos| with truth = supervised diff-means)",
                 ["strength", "layer", "picks", "acc truth", "acc distractor", "|cos| truth", "|cos| distr.",
                  "clean acc truth"],
                 [[r["strength"], r["layer"], r["picks"], r["acc_truth"], r["acc_distractor"], r["cos_truth"],
                   r["cos_distractor"], r["clean_acc_truth"]] for r in self.rows])]

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "rows": self.rows}

    @classmethod
    def from_json(cls, d: dict) -> "DistractorRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        return cls(list(d.get("rows", [])), schema_version=schema_version(d, "ccs-distractor", SCHEMA_VERSION))

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("distractor.csv", self.rows)
        run.finish(self.to_json(), headline=self.headline())


def _contrast_pairs(cfg: DistractorConfig):
    """(store-like activations, n_pairs, labels) of the model's contrast pairs of `cfg.dataset`, captured in
    memory (last token, every layer), or of the store `cfg.acts`."""
    from ..capture import capture
    from ..capture.store import open_checked
    from ..data import get_dataset
    from ..models import load_checked
    from ..validation import BadInput, check_layers

    if cfg.acts is not None:
        store = open_checked(cfg.acts)
        if store.labels is None or store.n_rows % 2:
            raise BadInput(f"{cfg.acts} is not a contrast-pair store (labelled x+ rows then x- rows)")
        check_layers(cfg.layers, store.n_layers)
        return store
    ds = get_dataset(cfg.dataset, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
    if not ds.meta or "x_plus" not in ds.meta[0]:
        raise BadInput(f"{cfg.dataset} has no contrast pairs (meta x_plus/x_minus); use boolq")
    lm = load_checked(cfg.model, cfg.device, cfg.layers)
    return capture(lm, [m["x_plus"] for m in ds.meta] + [m["x_minus"] for m in ds.meta], "resid", positions="last",
                   batch_size=cfg.batch_size, labels=list(ds.labels) * 2, dataset_name=f"{ds.name}-contrast",
                   progress=False)


def run_ccs_distractor(cfg: DistractorConfig, out, *, overwrite: bool = False,
                       log: Callable[[str], None] = print) -> DistractorRun:
    """CCS on the clean and distracted contrast pairs (the model's, or a store's) at every strength
    (`probes.sanity.ccs_distractor_test`)."""
    from ..probes import site_matrix
    from ..probes.sanity import ccs_distractor_test
    from ..runs import RunFolder, check_out_folder
    from ..validation import BadInput

    check_out_folder(out, "ccs-distractor", overwrite=overwrite)  # before reading any input or loading a model
    if not cfg.strengths or any(s < 0 for s in cfg.strengths):
        raise BadInput("--strengths: give one or more non-negative numbers")
    source = ({"acts": str(cfg.acts)} if cfg.acts is not None else
              {"model": cfg.model, "dataset": cfg.dataset, "limit": cfg.limit})
    run = RunFolder(out, "ccs-distractor", {**source, "layers": cfg.layers, "strengths": cfg.strengths,
                                            "test_size": cfg.test_size, "n_restarts": cfg.n_restarts,
                                            "epochs": cfg.epochs, "lr": cfg.lr, "seed": cfg.seed},
                    overwrite=overwrite, seed=cfg.seed, defer=True)
    store = _contrast_pairs(cfg)
    run.start()
    X, absl = site_matrix(store, "resid", cfg.layers)
    n = store.n_rows // 2
    y = store.labels[:n]
    rows = []
    for s in cfg.strengths:
        res = ccs_distractor_test(X[:n].float(), X[n:].float(), y, strength=s, seed=cfg.seed, test_size=cfg.test_size,
                                  n_restarts=cfg.n_restarts, epochs=cfg.epochs, lr=cfg.lr)
        for i, l in enumerate(absl):
            rows.append({"strength": s, "layer": l, "picks": res.picks[i], "acc_truth": res.acc_truth[i],
                         "acc_distractor": res.acc_distractor[i], "cos_truth": res.cos_truth[i],
                         "cos_distractor": res.cos_distractor[i], "clean_acc_truth": res.clean_acc_truth[i],
                         "clean_cos_truth": res.clean_cos_truth[i]})
        msg = f"strength {s}: " + " ".join(f"L{l}:{p}" for l, p in zip(absl, res.picks))
        run.log(msg)
        log(msg)
    result = DistractorRun(rows)
    result.write(run)
    return result
