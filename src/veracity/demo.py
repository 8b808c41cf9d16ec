"""`veracity demo`: the main job, end to end on the embedded default model and data, offline.

Captures the synthetic number-comparison set on smollm2 and reports, per layer, how well a held-out
mass-mean direction separates true from false statements.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class LayerSeparation:
    layer: int
    accuracy: float  # held-out accuracy of thresholding the projection at the train midpoint
    auroc: float  # held-out AUROC of the projection (threshold-free)


def stratified_halves(labels: torch.Tensor, seed: int = 0, test_frac: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(len(idx) * test_frac))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def mass_mean_separation(X: torch.Tensor, y: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> tuple[float, float]:
    """Direction = mean(true) - mean(false) on train rows only; scored on test rows."""
    X = X.float()
    mu1, mu0 = X[train][y[train] == 1].mean(0), X[train][y[train] == 0].mean(0)
    d = mu1 - mu0
    thr = 0.5 * ((mu1 + mu0) @ d)
    s = X[test] @ d
    acc = ((s > thr).long() == y[test]).float().mean().item()
    return acc, auroc(s, y[test])


def run_demo(out: str | Path | None = None, model: str = "smollm2", n: int = 400, seed: int = 0,
             data_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Run the demo; writes a run folder (default runs/demo-<timestamp>) and returns its results."""
    from rich.console import Console

    from .capture import capture_dataset
    from .data import get_dataset
    from .models import load
    from .runs import RunFolder

    console = Console()
    out = Path(out) if out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    run = RunFolder(out, "demo", {"model": model, "dataset": "synthetic", "n": n, "data_dir": data_dir}, seed=seed)
    t0 = time.time()
    console.rule("[bold]veracity demo")
    console.print(f"[1/3] loading [bold]{model}[/bold] (first run converts the GGUF once, ~30 s)")
    lm = load(model)
    console.print(f"      {lm.arch.model_type}: {lm.arch.n_layers} layers, {lm.arch.n_heads} heads "
                  f"({lm.arch.n_kv_heads} KV), head_dim {lm.arch.head_dim}")
    ds = get_dataset("synthetic", limit=n, seed=seed, data_dir=data_dir)
    console.print(f"[2/3] capturing {len(ds)} synthetic statements, e.g. {ds.texts[0]!r} (label {ds.labels[0]})")
    acts = capture_dataset(lm, ds, "resid", out=run.file("capture"), progress=progress)
    y = acts.labels
    train, test = stratified_halves(y, seed=seed)
    console.print(f"[3/3] mass-mean direction per layer: fit on {len(train)} statements, scored on {len(test)} held out")
    rows = []
    for layer in acts.layers("resid"):
        acc, auc = mass_mean_separation(acts[f"resid.{layer}"], y, train, test)
        rows.append(LayerSeparation(layer, acc, auc))
    from rich.table import Table

    table = Table(title="held-out separation of true vs false by a mass-mean direction")
    for c in ("layer", "accuracy", "AUROC", ""):
        table.add_column(c)
    best = max(rows, key=lambda r: r.auroc)
    for r in rows:
        bar = "#" * int(round(max(0.0, r.auroc - 0.5) * 40))
        table.add_row(str(r.layer), f"{r.accuracy:.3f}", f"{r.auroc:.3f}", bar + (" <- best" if r is best else ""))
    console.print(table)
    run.write_csv("separation.csv", rows)
    results = {"separation": rows, "best_layer": best.layer, "seconds": time.time() - t0,
               "capture": acts.summary()}
    run.finish(results, headline={"best_layer": best.layer, "best_auroc": best.auroc})
    console.print(f"best layer {best.layer}: held-out accuracy {best.accuracy:.3f}, AUROC {best.auroc:.3f}; "
                  f"run folder {run.path} ({time.time() - t0:.0f} s)")
    return results
