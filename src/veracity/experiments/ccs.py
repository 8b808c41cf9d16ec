"""CCS study (`veracity ccs`): Contrast-Consistent Search per layer on yes/no contrast pairs, beside a supervised
ceiling (logistic on x+ - x-), a floor (a random direction) and the model's own zero-shot answer, on one split.

All layers train as one batched CCS fit; the contrast pairs' last-token residual stream is captured into the run
folder (or reopened from an earlier run's store).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
if TYPE_CHECKING:
    import torch

from ..constraints import Checked
from ..methods import options as o
from ..runs import schema_version

#: results.json layout of the ccs kind (docs/reference/results.md); files without the field are version 0 (the
#: same layout) and still read.
SCHEMA_VERSION = 1


@dataclass
class CCSLayerResult:
    """One layer's CCS result, beside a supervised ceiling (logistic) and a floor (a random direction) on the same
    pairs."""
    layer: int
    ccs_accuracy: float  # sign fixed on the training labels
    ccs_accuracy_either_sign: float  # max(acc, 1 - acc) on the test rows: optimistic, as in the CCS paper
    ccs_loss: float
    logistic_accuracy: float  # supervised ceiling: logistic regression on x+ - x-
    random_accuracy: float  # random direction on x+ - x-, threshold and sign from train


@dataclass
class CCSExperiment:
    """CCS on every layer, the zero-shot accuracy of the same prompts, and the split sizes and seed."""
    layers: list[CCSLayerResult]
    zero_shot: dict[str, float] | None
    n_train: int
    n_test: int
    seed: int
    elapsed_s: float = 0.0


def run_ccs_experiment(X_pos: torch.Tensor, X_neg: torch.Tensor, labels: Sequence[int], layers: Sequence[int],
                       test_size: float = 0.4, seed: int = 0, n_restarts: int = 10, epochs: int = 1000,
                       lr: float = 1e-3, weight_decay: float = 0.01, zero_shot_scores: torch.Tensor | None = None,
                       C: float = 1.0, device: str | None = None) -> CCSExperiment:
    """CCS per layer (all layers as one batched fit) vs logistic and random baselines on the same split.
    X_pos / X_neg: [N, G, D] (G = layers); labels: 1 when the "Yes" side is true."""
    import torch
    from ..probes.ccs import CCSProbe
    from ..probes.logistic import LogisticProbe
    from ..probes.random import RandomProbe
    from ..probes.splits import stratified_split
    from ..probes.zero_shot import zero_shot_accuracy

    t0 = time.time()
    y = torch.as_tensor(np.asarray(labels)).long()
    sp = stratified_split(y.tolist(), test_size, seed)
    tr, te = torch.as_tensor(sp.train_idx), torch.as_tensor(sp.test_idx)
    P = torch.as_tensor(X_pos).to(device or X_pos.device, torch.float32)
    Q = torch.as_tensor(X_neg).to(P.device, torch.float32)
    if P.dim() == 2:
        P, Q = P.unsqueeze(1), Q.unsqueeze(1)
    ccs = CCSProbe(n_restarts=n_restarts, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
    ccs.fit(P[tr], Q[tr], y[tr])
    acc = ccs.score(P[te], Q[te], y[te])
    acc_any = ccs.score_either_sign(P[te], Q[te], y[te])
    diff = P - Q
    lr_acc = LogisticProbe(C=C).fit(diff[tr], y[tr]).score(diff[te], y[te])
    rnd_acc = RandomProbe(seed=seed).fit(diff[tr], y[tr]).score(diff[te], y[te])
    rows = [CCSLayerResult(int(l), float(acc[i]), float(acc_any[i]), float(ccs.loss_[i]), float(lr_acc[i]),
                           float(rnd_acc[i])) for i, l in enumerate(layers)]
    zs = zero_shot_accuracy(zero_shot_scores[te], y[te].tolist()) if zero_shot_scores is not None else None
    return CCSExperiment(rows, zs, len(tr), len(te), seed, time.time() - t0)


# ---------------------------------------------------------------- the study (veracity ccs)

@dataclass
class CCSConfig(Checked):
    """Every option of `veracity ccs`."""

    _constraints = {"model": o.MODEL, "dataset": o.MODEL, "layers": o.LAYERS, "acts": o.OPTIONAL_TEXT,
                    "limit": o.LIMIT, "test_size": o.FRACTION, "n_restarts": o.COUNT, "epochs": o.COUNT,
                    "lr": o.POSITIVE, "seed": o.SEED, "zero_shot": o.BOOL, "batch_size": o.BATCH,
                    "device": o.DEVICE, "data_dir": o.OPTIONAL_TEXT}
    _commands = ("ccs",)

    model: str = "smollm2"
    dataset: str = "boolq"  # a data set whose meta holds x_plus / x_minus
    layers: list[int] | None = None  # None: all
    acts: str | None = None  # a contrast-pair store of an earlier run (x+ rows, then x- rows)
    limit: int | None = None
    test_size: float = 0.4
    n_restarts: int = 10
    epochs: int = 1000
    lr: float = 1e-3
    seed: int = 0
    zero_shot: bool = True
    batch_size: int = 8
    device: str | None = None
    data_dir: str | None = None


@dataclass
class CCSRun:
    """The typed result of `veracity ccs`: results.json = {"ccs": CCSExperiment, "store": path}."""

    ccs: CCSExperiment
    store: str
    dataset: str = ""
    schema_version: int = SCHEMA_VERSION

    def zero_shot_accuracy(self) -> float:
        """The model's own zero-shot accuracy on the pairs (NaN when not measured): what CCS should beat."""
        return self.ccs.zero_shot["accuracy"] if self.ccs.zero_shot else float("nan")

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        best = max(self.ccs.layers, key=lambda r: r.ccs_accuracy)
        return {"ccs_best_acc": best.ccs_accuracy, "ccs_best_layer": best.layer, "zero_shot": self.zero_shot_accuracy()}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows)."""
        zs = self.zero_shot_accuracy()
        return [(f"{self.dataset}: {self.ccs.n_train} train / {self.ccs.n_test} test pairs (test accuracy)",
                 ["layer", "CCS (sign from train)", "CCS max(acc,1-acc)", "logistic", "random", "zero-shot", "CCS loss"],
                 [[r.layer, r.ccs_accuracy, r.ccs_accuracy_either_sign, r.logistic_accuracy, r.random_accuracy, zs,
                   r.ccs_loss] for r in self.ccs.layers])]

    def lines(self) -> list[str]:
        """Summary lines printed under the tables."""
        z = self.ccs.zero_shot
        return [f"zero-shot: {z['accuracy']:.3f} (calibrated at the median: {z['accuracy_calibrated']:.3f})"] if z else []

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "ccs": self.ccs, "store": self.store, "dataset": self.dataset}

    @classmethod
    def from_json(cls, d: dict) -> "CCSRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        v = schema_version(d, "ccs", SCHEMA_VERSION)
        c = d["ccs"]
        exp = CCSExperiment([CCSLayerResult(**r) for r in c["layers"]], c.get("zero_shot"), c["n_train"],
                            c["n_test"], c["seed"], c.get("elapsed_s", 0.0))
        return cls(exp, d.get("store", ""), d.get("dataset", ""), schema_version=v)

    def write(self, run) -> None:
        """Write the run's CSV tables and finish its folder with results.json and the headline."""
        run.write_csv("ccs_layers.csv", self.ccs.layers)
        run.finish(self.to_json(), headline=self.headline())


def run_ccs(cfg: CCSConfig, out, overwrite: bool = False, log: Callable[[str], None] = print) -> CCSRun:
    """`veracity ccs`: contrast pairs of `cfg.dataset`, their last-token residual stream (captured into
    out/acts, or reopened from `cfg.acts`), CCS per layer against logistic, random and zero-shot."""
    from ..capture.store import open_checked
    from pathlib import Path
    from ..runs import check_out_folder

    check_out_folder(out, "ccs", overwrite=overwrite)  # before reading any input or loading a model
    from ..capture import capture
    from ..data import get_dataset
    from ..models import load_checked
    from ..probes import site_matrix
    from ..probes.zero_shot import contrast_scores
    from ..runs import RunFolder
    from ..validation import BadInput, check_layers

    ds = get_dataset(cfg.dataset, data_dir=cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
    if not ds.meta or "x_plus" not in ds.meta[0]:
        raise BadInput(f"{cfg.dataset} has no contrast pairs (meta x_plus/x_minus); use boolq")
    x_plus = [m["x_plus"] for m in ds.meta]
    x_minus = [m["x_minus"] for m in ds.meta]
    run = RunFolder(out, "ccs", {"model": cfg.model, "dataset": cfg.dataset, "layers": cfg.layers, "limit": cfg.limit,
                                 "test_size": cfg.test_size, "n_restarts": cfg.n_restarts, "epochs": cfg.epochs,
                                 "lr": cfg.lr, "acts": str(cfg.acts) if cfg.acts else None},
                    overwrite=overwrite, seed=cfg.seed, defer=True)
    store = open_checked(cfg.acts) if cfg.acts is not None else None
    n = len(x_plus)
    if store is not None:
        if store.n_rows != 2 * n:
            raise BadInput(f"{cfg.acts} has {store.n_rows} rows; expected {2 * n} (x+ then x- for {n} pairs of "
                           f"{cfg.dataset})")
        check_layers(cfg.layers, store.n_layers)
    lm = None
    if store is None or cfg.zero_shot:
        lm = load_checked(cfg.model, cfg.device)
    acts = cfg.acts
    if store is None:
        check_layers(cfg.layers, lm.arch.n_layers)  # before capturing every layer
        run.start()
        acts = str(Path(out) / "acts")
        store = capture(lm, x_plus + x_minus, "resid", positions="last", batch_size=cfg.batch_size, out=acts,
                        labels=list(ds.labels) * 2, dataset_name=f"{ds.name}-contrast", overwrite=overwrite,
                        config={"contrast_layout": "x_plus rows then x_minus rows", "n_pairs": n})
    X, absl = site_matrix(store, "resid", cfg.layers)
    scores = None
    if cfg.zero_shot and lm is not None:
        log("zero-shot: scoring P(Yes) vs P(No) with the model")
        scores = contrast_scores(lm, x_plus, x_minus, batch_size=cfg.batch_size)
    res = run_ccs_experiment(X[:n], X[n:], ds.labels, absl, test_size=cfg.test_size, seed=cfg.seed,
                             n_restarts=cfg.n_restarts, epochs=cfg.epochs, lr=cfg.lr, zero_shot_scores=scores,
                             device=cfg.device)
    result = CCSRun(res, str(acts), cfg.dataset)
    result.write(run)
    return result
