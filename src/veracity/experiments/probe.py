"""Probe study (`veracity probe`): every method x every layer x every split x every seed, from one [N, G, D]
tensor; with `--heads`, per-(layer, head) logistic probes. The activations are a capture store or the model's,
captured in the run. One run kind, one Result (`ProbeRun`, either layout). (CCS is its own study:
`experiments.ccs`.)

All layers (or (layer, head) pairs) of one method train in a single batched fit per split and seed.
Deterministic methods (logistic, mass-mean) are fitted once per distinct training set and reused
across seeds, since refitting would reproduce the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
if TYPE_CHECKING:
    import torch
    from ..probes.geometry import GeometryResult

from ..constraints import Checked, IgnoredUnless, ListOf, Registered, choices_in
from ..runs import schema_version
from ..methods import options as o

# ---------------------------------------------------------------- records

@dataclass
class ProbeScore:
    """Accuracy of one method at one layer on one split and seed."""

    method: str
    layer: int | str
    split: str
    seed: int
    accuracy: float
    n_train: int
    n_test: int


@dataclass
class ProbeCell:
    """One (method, layer): the split-averaged accuracy of each seed, aggregated over seeds."""

    method: str
    layer: int | str
    mean: float
    std: float
    max: float
    min: float
    per_seed: list[float]


@dataclass
class ProbeExperiment:
    """Probe accuracies per (method, layer, seed) on one split, and per (method, layer) cell their mean and spread
    over seeds."""
    split: str
    methods: list[str]
    layers: list[int | str]
    seeds: list[int]
    scores: list[ProbeScore]
    cells: list[ProbeCell]
    geometry: dict[str, dict[str, GeometryResult]] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def table(self, stat: str = "mean") -> list[list]:
        """Rows = methods, columns = layers, value = `stat` (mean, max, std, min) over seeds."""
        by = {(c.method, c.layer): getattr(c, stat) for c in self.cells}
        return [[m] + [by[(m, l)] for l in self.layers] for m in self.methods]


def run_probe_experiment(X: torch.Tensor, labels: Sequence[int], groups: Sequence[str] | None = None,
                         layers: Sequence[int | str] | None = None, methods: Sequence[str] = ("logistic",),
                         split: str = "leave-one-topic-out", seeds: int | Sequence[int] = 5, test_size: float = 0.2,
                         k: int = 5, n_train: int | None = None, C: float = 1.0, device: str | None = None,
                         mlp_kwargs: dict | None = None,
                         progress: Callable[[str], None] | None = None,
                         polarity: Sequence[int] | None = None) -> ProbeExperiment:
    """Train and test every method on X [N, G, D] (G = layers) over the splits of `split` for each seed.

    Per seed the accuracy is averaged over that seed's splits (e.g. the six held-out topics); cells keep
    mean, std, max and min over seeds. Geometry compares each (method, layer)'s directions across the
    splits of the first seed (or across seeds when a seed has a single split)."""
    import torch
    from ..probes.base import accuracy_per_group
    from ..probes.geometry import GeometryResult, compare_directions
    from ..probes.splits import aggregate, make_splits
    from ..probes.registry import is_deterministic, make_probe, needs_polarity
    t0 = time.time()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    X = torch.as_tensor(X)
    X = X.to(device or X.device, torch.float32)
    if X.dim() == 2:
        X = X.unsqueeze(1)
    N, G, D = X.shape
    y = torch.as_tensor(np.asarray(labels)).long()
    layer_names = list(layers) if layers is not None else list(range(G))
    if len(layer_names) != G:
        raise ValueError(f"{len(layer_names)} layer names for {G} groups")
    for m in methods:
        make_probe(m)  # validate names before any work
    pol = None
    if polarity is not None:
        pol = np.asarray(polarity)
        if len(pol) != N:
            raise ValueError(f"{len(pol)} polarities for {N} rows")
    elif any(needs_polarity(m) for m in methods):
        raise ValueError(f"{', '.join(m for m in methods if needs_polarity(m))} needs the polarity of every "
                         "statement (+1 affirmative, -1 negated): pass polarity= (from the command line: "
                         "`veracity probe-polarity`)")
    scores: list[ProbeScore] = []
    dirs: dict[str, list[tuple[str, torch.Tensor]]] = {m: [] for m in methods}
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for seed in seed_list:
        splits = make_splits(split, y.tolist(), groups, seed=seed, test_size=test_size, k=k, n_train=n_train)
        for sp in splits:
            tr = torch.as_tensor(sp.train_idx)
            te = torch.as_tensor(sp.test_idx)
            Xtr, Xte = X[tr], X[te]
            for m in methods:
                key = (m, sp.name, hash(sp.train_idx.tobytes()), hash(sp.test_idx.tobytes()))
                if is_deterministic(m) and key in cache:
                    acc, d = cache[key]
                else:
                    probe = make_probe(m, seed=seed, C=C, **(mlp_kwargs or {}) if m.startswith("mlp-") else {})
                    if needs_polarity(m):
                        probe.fit(Xtr, y[tr], polarity=pol[sp.train_idx],
                                  topics=None if groups is None else np.asarray(groups)[sp.train_idx])
                    else:
                        probe.fit(Xtr, y[tr])
                    acc = accuracy_per_group(probe.predict(Xte), y[te].to(X.device))
                    d = probe.direction_.detach().cpu() if hasattr(probe, "direction_") else None
                    if is_deterministic(m):
                        cache[key] = (acc, d)
                for gi, lname in enumerate(layer_names):
                    scores.append(ProbeScore(m, lname, sp.name, seed, float(acc[gi]), len(tr), len(te)))
                if d is not None and (seed == seed_list[0] or len(splits) == 1):
                    dirs[m].append((sp.name if len(splits) > 1 else f"seed{seed}", d))
                if progress:
                    progress(f"seed {seed} split {sp.name} {m}: " + " ".join(f"{a:.3f}" for a in acc.tolist()))
    cells = []
    for m in methods:
        for lname in layer_names:
            per_seed = []
            for seed in seed_list:
                vals = [s.accuracy for s in scores if s.method == m and s.layer == lname and s.seed == seed]
                per_seed.append(float(np.mean(vals)))
            st = aggregate(per_seed)
            cells.append(ProbeCell(m, lname, st.mean, st.std, st.max, st.min, st.values))
    geometry: dict[str, dict[str, GeometryResult]] = {}
    for m, lst in dirs.items():
        if len(lst) < 2:
            continue
        geometry[m] = {}
        for gi, lname in enumerate(layer_names):
            geometry[m][str(lname)] = compare_directions(torch.stack([d[gi] for _, d in lst]), [n for n, _ in lst])
    return ProbeExperiment(split, list(methods), layer_names, seed_list, scores, cells, geometry, time.time() - t0)


# ---------------------------------------------------------------- the study (veracity probe)

#: results.json layout of the probe kind (docs/reference/results.md); files without the field are
#: version 0 (the same layout) and still read.
SCHEMA_VERSION = 1
DEFAULT_METHODS = ("logistic", "mlp-tiny", "mlp-small", "mlp-medium", "mass-mean")


def _probe_names():
    from ..probes.registry import PROBES

    return PROBES


def _split_kinds():
    from ..probes.splits import SPLIT_KINDS

    return SPLIT_KINDS


@dataclass
class ProbeConfig(Checked):
    """Every option of `veracity probe`: the activations of `model` on `dataset` (captured in memory at the
    probed site and layers), or `acts`, a capture store (then the model is not loaded)."""

    _constraints = {"model": o.MODEL, "dataset": o.MODEL, "acts": o.OPTIONAL_TEXT, "limit": o.LIMIT,
                    "positions": [choices_in("veracity.capture.engine", "POSITIONS", "positions choice")],
                    "dtype": [choices_in("veracity.capture.engine", "STORE_DTYPES", "dtype")],
                    "batch_size": o.BATCH, "data_dir": o.OPTIONAL_TEXT,
                    "site": [None, choices_in("veracity.capture.sites", "KINDS", "site")], "layers": o.LAYERS,
                    "methods": [ListOf([Registered(_probe_names, "probe method")], unique=True)],
                    "split": [Registered(_split_kinds, "split")], "seeds": o.COUNT, "test_size": o.FRACTION,
                    "k": o.FOLDS, "test_acts": o.OPTIONAL_TEXT, "heads": o.BOOL, "C": o.POSITIVE,
                    "device": o.DEVICE}
    _rules = (IgnoredUnless("k", "split", ("kfold",), example=3),
              IgnoredUnless("test_acts", "split", ("transfer",), example="store"))
    _commands = ("probe",)

    model: str = "smollm2"
    dataset: str = "synthetic"  # a labelled data set (`veracity datasets`), captured without `acts`
    acts: str | None = None  # a capture store (`veracity capture`); replaces model + dataset
    limit: int | None = None  # the first N rows of `dataset`
    positions: str = "last"  # the captured token: last | mean (as `veracity capture --positions`)
    dtype: str = "float16"  # the captured activations' dtype (as a store's, so both inputs give the same numbers)
    batch_size: int = 16
    data_dir: str | None = None
    site: str | None = None  # resid (default) | mlp | heads
    layers: list[int] | None = None  # None: all; negatives count from the end
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    split: str = "leave-one-topic-out"
    seeds: int = 5
    test_size: float = 0.2
    k: int = 5
    test_acts: str | None = None  # --split transfer: the store to test on
    heads: bool = False  # per-(layer, head) logistic probes on heads.*
    C: float = 1.0
    device: str | None = None


def _plot_accuracy(exp: ProbeExperiment):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = list(range(len(exp.layers)))
    for row_mean, row_std in zip(exp.table("mean"), exp.table("std")):
        ax.errorbar(xs, row_mean[1:], yerr=row_std[1:], marker="o", capsize=3, label=row_mean[0])
    ax.set_xticks(xs, [str(l) for l in exp.layers])
    ax.set_xlabel("layer")
    ax.set_ylabel(f"test accuracy ({exp.split}, mean ± std over {len(exp.seeds)} seeds)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8)
    return fig


def _plot_geometry(exp: ProbeExperiment):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in exp.methods if m in exp.geometry]
    if not methods:
        return None
    L = len(exp.layers)
    fig, axes = plt.subplots(len(methods), L, figsize=(2.6 * L + 1, 3.0 * len(methods) + 0.5), squeeze=False)
    fig.subplots_adjust(hspace=0.7, wspace=0.5)
    for i, m in enumerate(methods):
        for j, l in enumerate(exp.layers):
            g = exp.geometry[m][str(l)]
            g = g if isinstance(g, dict) else g.__dict__
            ax = axes[i][j]
            im = ax.imshow(g["cosine"], vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_xticks(range(len(g["labels"])), g["labels"], rotation=90, fontsize=6)
            ax.set_yticks(range(len(g["labels"])), g["labels"], fontsize=6)
            ax.set_title(f"{m} L{l}: mean cos {g['mean_offdiag_cosine']:.2f}\n(chance {g['chance_cosine']:.2f})",
                         fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6)
    return fig


@dataclass
class HeadProbeAccuracy:
    """Per-(layer, head) logistic accuracy over seeds (`veracity probe --heads`): [layers][heads] matrices."""

    accuracy_mean: list[list[float]]  # [layers, heads]
    accuracy_max: list[list[float]]
    accuracy_std: list[list[float]]
    layers: list[int]
    seeds: int
    test_size: float

    def best(self) -> tuple[int, int, float]:
        """(layer, head, accuracy) of the most accurate head by mean accuracy."""
        A = np.asarray(self.accuracy_mean)
        i, h = divmod(int(A.argmax()), A.shape[1])
        return self.layers[i], h, float(A.max())

    def to_json(self) -> dict:
        """Its results.json fields (beside schema_version: the layout of a `--heads` run)."""
        return {"accuracy_mean": self.accuracy_mean, "accuracy_max": self.accuracy_max,
                "accuracy_std": self.accuracy_std, "layers": self.layers, "seeds": self.seeds,
                "test_size": self.test_size}

    @classmethod
    def from_json(cls, d: dict) -> "HeadProbeAccuracy":
        """Read back; files without `accuracy_std` / `test_size` (older runs) get NaN / 0.2."""
        mean = d["accuracy_mean"]
        std = d.get("accuracy_std") or [[float("nan")] * len(r) for r in mean]
        return cls(mean, d["accuracy_max"], std, list(d["layers"]), d["seeds"], d.get("test_size", 0.2))


@dataclass
class ProbeRun:
    """The typed result of `veracity probe`: per layer, `experiment` (results.json = {"experiment":
    ProbeExperiment}); with `--heads`, `heads` (results.json = HeadProbeAccuracy's fields). One run kind, one
    type: each layout is the one older runs wrote, so their folders read back unchanged."""

    experiment: ProbeExperiment | None = None
    heads: HeadProbeAccuracy | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if (self.experiment is None) == (self.heads is None):
            raise ValueError("a probe run holds either a per-layer experiment or a per-head matrix")

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        if self.heads is not None:
            l, h, acc = self.heads.best()
            return {"best_head_acc": acc, "best_head": f"L{l}H{h}"}
        best = max(self.experiment.cells, key=lambda c: c.mean)
        return {"best_acc": best.mean, "best": f"{best.method}@L{best.layer}"}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows)."""
        if self.heads is not None:
            hp = self.heads
            H = len(hp.accuracy_mean[0]) if hp.accuracy_mean else 0
            return [(f"per-head logistic accuracy (mean over {hp.seeds} seeds, random {hp.test_size:.0%} held out)",
                     ["layer"] + [f"h{h}" for h in range(H)],
                     [[l] + list(row) for l, row in zip(hp.layers, hp.accuracy_mean)])]
        exp = self.experiment
        cols = ["method"] + [f"L{l}" for l in exp.layers]
        return [(f"average accuracy ({exp.split}; mean over {len(exp.seeds)} seeds)", cols, exp.table("mean")),
                (f"maximum accuracy over {len(exp.seeds)} seeds", cols, exp.table("max"))]

    def lines(self) -> list[str]:
        """Summary lines printed under the tables: the best head, or the direction geometry (the last layer of
        each method)."""
        if self.heads is not None:
            l, h, acc = self.heads.best()
            return [f"best head L{l}.H{h}: {acc:.3f}"]
        out = []
        for m, per_layer in self.experiment.geometry.items():
            l, g = list(per_layer.items())[-1]
            g = g if isinstance(g, dict) else g.__dict__
            out.append(f"geometry {m} L{l}: mean pairwise cosine {g['mean_offdiag_cosine']:.3f} "
                       f"(chance ~{g['chance_cosine']:.3f}), sign agreement {g['mean_offdiag_sign']:.3f} "
                       f"(chance {g['chance_sign']})")
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        if self.heads is not None:
            return {"schema_version": self.schema_version, **self.heads.to_json()}
        return {"schema_version": self.schema_version, "experiment": self.experiment}

    @classmethod
    def from_json(cls, d: dict) -> "ProbeRun":
        """Either layout read back (a `--heads` run's holds `accuracy_mean`); the experiment with typed scores and
        cells (geometry stays {method: {layer: dict}}); a newer schema_version is refused."""
        v = schema_version(d, "probe", SCHEMA_VERSION)
        if "accuracy_mean" in d:
            return cls(heads=HeadProbeAccuracy.from_json(d), schema_version=v)
        e = d["experiment"]
        exp = ProbeExperiment(e["split"], list(e["methods"]), list(e["layers"]), list(e["seeds"]),
                              [ProbeScore(**s) for s in e["scores"]], [ProbeCell(**c) for c in e["cells"]],
                              e.get("geometry", {}), e.get("elapsed_s", 0.0))
        return cls(exp, schema_version=v)

    def write(self, run) -> None:
        """Per layer: scores.csv, summary.csv, accuracy_vs_layer.png, cosine_heatmap.png; per head:
        head_accuracy.csv, head_accuracy.png; then results.json (last)."""
        if self.heads is not None:
            _write_heads(run, self.heads)
        else:
            run.write_csv("scores.csv", self.experiment.scores)
            run.write_csv("summary.csv", self.experiment.cells)
            run.save_figure(_plot_accuracy(self.experiment), "accuracy_vs_layer.png")
            fig = _plot_geometry(self.experiment)
            if fig is not None:
                run.save_figure(fig, "cosine_heatmap.png")
        run.finish(self.to_json(), headline=self.headline())


def _write_heads(run, hp: HeadProbeAccuracy) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run.write_csv("head_accuracy.csv", [
        {"layer": l, "head": h, "accuracy_mean": m, "accuracy_std": s, "accuracy_max": x}
        for l, rm, rs, rx in zip(hp.layers, hp.accuracy_mean, hp.accuracy_std, hp.accuracy_max)
        for h, (m, s, x) in enumerate(zip(rm, rs, rx))])
    H = len(hp.accuracy_mean[0])
    fig, ax = plt.subplots(figsize=(1 + 0.4 * H, 1 + 0.25 * len(hp.layers)))
    im = ax.imshow(np.asarray(hp.accuracy_mean), aspect="auto", cmap="viridis")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_yticks(range(len(hp.layers)), [str(l) for l in hp.layers], fontsize=6)
    fig.colorbar(im, ax=ax, label="validation accuracy")
    run.save_figure(fig, "head_accuracy.png")


def head_probe_seeds(store, layers: Sequence[int] | None, seeds: int, C: float = 1.0, device: str | None = None,
                     test_size: float = 0.2) -> HeadProbeAccuracy:
    """Per-(layer, head) logistic validation accuracy (`probes.head_accuracy_matrix`) over `seeds` seeded
    random splits: mean, max and population s.d. over seeds."""
    import torch
    from ..probes import head_accuracy_matrix

    accs, probe_layers = [], None
    for seed in range(seeds):
        hp = head_accuracy_matrix(store, layers=layers, C=C, device=device, seed=seed, val_size=test_size)
        accs.append(hp.accuracy)
        probe_layers = hp.layers
    A = torch.stack(accs).double()
    return HeadProbeAccuracy(A.mean(0).tolist(), A.max(0).values.tolist(), A.std(0, unbiased=False).tolist(),
                             [int(l) for l in probe_layers], seeds, test_size)


def _captured(cfg: ProbeConfig, site: str):
    """The model's activations of `cfg.dataset` at `site` (the probed layers only), captured in memory as
    `veracity capture` would store them (same rows, positions and dtype, so the probes' numbers match)."""
    import torch
    from ..capture import capture_dataset
    from ..capture.engine import STORE_DTYPES
    from ..data import get_dataset
    from ..models import load_checked
    from ..validation import BadInput

    ds = get_dataset(cfg.dataset, data_dir=cfg.data_dir, limit=cfg.limit)
    if ds.labels is None:
        raise BadInput(f"{cfg.dataset} has no labels; probe a labelled data set")
    lm = load_checked(cfg.model, cfg.device, cfg.layers)
    sites = site if cfg.layers is None else ",".join(f"{site}.{lm.arch.resolve_layer(l)}" for l in cfg.layers)
    return capture_dataset(lm, ds, sites, positions=cfg.positions, batch_size=cfg.batch_size,
                           dtype=getattr(torch, STORE_DTYPES[cfg.dtype]), progress=False)


def run_probe(cfg: ProbeConfig, out, *, overwrite: bool = False, log: Callable[[str], None] = print) -> ProbeRun:
    """`veracity probe`: check every option (and the store, given one) and the run folder before any capture or
    fit, capture the model's activations unless a store is given, train the probes (per layer, or per head with
    `heads`), write the run folder."""
    import torch
    from ..capture.store import open_checked
    from ..probes import SPLIT_KINDS, site_matrix
    from ..runs import RunFolder, check_out_folder
    from ..validation import BadInput, check_layers

    check_out_folder(out, "probe", overwrite=overwrite)  # before reading any input or loading a model
    if cfg.heads and cfg.site not in (None, "heads"):
        raise BadInput(f"--heads probes the heads.* sites; drop --site {cfg.site}")
    if cfg.test_acts is not None and cfg.split != "transfer":
        raise BadInput(f"--test-acts is only used by --split transfer (got --split {cfg.split})")
    if cfg.split not in SPLIT_KINDS:
        raise BadInput(f"--split must be one of {', '.join(SPLIT_KINDS)}")
    if cfg.split == "transfer" and cfg.test_acts is None and not cfg.heads:
        raise BadInput("--split transfer needs --test-acts STORE")
    site = "heads" if cfg.heads else (cfg.site or "resid")
    settings = {"site": site, "layers": cfg.layers, "methods": list(cfg.methods), "split": cfg.split,
                "seeds": cfg.seeds, "test_size": cfg.test_size, "k": cfg.k, "C": cfg.C, "heads": cfg.heads,
                "test_acts": str(cfg.test_acts) if cfg.test_acts else None}
    store = None
    if cfg.acts is not None:
        store = open_checked(cfg.acts)
        check_layers(cfg.layers, store.n_layers)
        if store.labels is None:
            raise BadInput(f"{cfg.acts} has no labels; capture a labelled data set")
        source = {"model": store.manifest["model"]["name"], "dataset": store.manifest["dataset"]["name"]}
    else:
        from ..capture.engine import STORE_DTYPES
        source = {"model": cfg.model, "dataset": cfg.dataset, "limit": cfg.limit, "positions": cfg.positions,
                  "dtype": STORE_DTYPES[cfg.dtype]}  # fp16 and float16 record the same run
    other = open_checked(cfg.test_acts) if (cfg.split == "transfer" and not cfg.heads) else None
    run = RunFolder(out, "probe", {"acts": str(cfg.acts) if cfg.acts else None, **settings, **source},
                    overwrite=overwrite, seed=0, defer=True)  # created on first write
    if store is None:
        store = _captured(cfg, site)
    try:
        if cfg.heads:
            result = ProbeRun(heads=head_probe_seeds(store, cfg.layers, cfg.seeds, cfg.C, cfg.device, cfg.test_size))
            result.write(run)
            return result
        X, absl = site_matrix(store, site, cfg.layers)
        labels, groups, n_train = store.labels.tolist(), store.groups, None
        if other is not None:
            X2, _ = site_matrix(other, site, cfg.layers)
            n_train = X.shape[0]
            X = torch.cat([X, X2])
            labels = labels + other.labels.tolist()
            groups = None
    except KeyError as e:
        raise BadInput(str(e).strip("'\"")) from None
    log(f"{X.shape[0]} rows, {len(absl)} layers of {site} (d={X.shape[-1]}); split {cfg.split}, {cfg.seeds} seeds")
    try:
        exp = run_probe_experiment(X, labels, groups, absl, list(cfg.methods), cfg.split, cfg.seeds,
                                   test_size=cfg.test_size, k=cfg.k, n_train=n_train, C=cfg.C, device=cfg.device,
                                   progress=run.log)
    except ValueError as e:
        raise BadInput(str(e)) from None
    result = ProbeRun(exp)
    result.write(run)
    return result
