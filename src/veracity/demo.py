"""`veracity demo`: the main job, end to end on the embedded default model and data, offline.

Captures the synthetic number-comparison set on smollm2, reports per layer how well held-out probes
(mass-mean direction, logistic regression) separate true from false statements, fits ITI on a small
split, answers three questions before and after it, and writes a self-contained report.html.
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
    logistic_accuracy: float = float("nan")  # held-out accuracy of an L2 logistic probe on the same layer


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


SYNTHETIC_QUESTIONS = ("Is seventy-one larger than fifty-two?", "Is twelve larger than eighty-three?",
                       "Is forty-four smaller than nine?")


def _itidata_from_heads(X: torch.Tensor, y: torch.Tensor, source: dict):
    """ITI data from statements: each statement is its own "question" (one row per question)."""
    import numpy as np

    from .steer.iti import ITIData

    return ITIData(X=X, labels=y, question=np.arange(len(y)), source=source)


def run_demo(out: str | Path | None = None, model: str = "smollm2", n: int = 400, seed: int = 0,
             data_dir: str | Path | None = None, progress: bool = True, overwrite: bool = False,
             iti_k: int = 16, iti_alpha: float = 15.0, tqa_questions: int = 60, max_new_tokens: int = 40) -> dict:
    """Run the demo; writes a run folder (default runs/demo-<timestamp>) with report.html, returns results.

    Steps: capture the synthetic set (residual stream and heads, every layer), probe every layer
    (logistic and mass-mean, held-out half), fit ITI on a small split (TruthfulQA when a data folder is
    set, else the synthetic statements), answer three held-out questions before and after ITI, write
    the headline tables and a self-contained report.
    """
    from rich.console import Console
    from rich.table import Table

    from .capture import capture_dataset
    from .data import get_dataset, resolve_data_dir
    from .evaluate.generation import generate_answers
    from .models import load
    from .probes import LogisticProbe
    from .report import render_report
    from .runs import RunFolder
    from .steer import apply
    from .steer.iti import ITIConfig, fit_fold, load_iti_data, make_folds

    console = Console()
    out = Path(out) if out else Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    data_dir = resolve_data_dir(data_dir)
    run = RunFolder(out, "demo", {"model": model, "dataset": "synthetic", "n": n, "data_dir": data_dir,
                                  "iti_k": iti_k, "iti_alpha": iti_alpha, "tqa_questions": tqa_questions,
                                  "max_new_tokens": max_new_tokens}, seed=seed, overwrite=overwrite)
    t0 = time.time()
    console.rule("[bold]veracity demo")
    console.print(f"[1/5] loading [bold]{model}[/bold] (the first run converts the GGUF once, ~30 s)")
    lm = load(model)
    console.print(f"      {lm.arch.model_type}: {lm.arch.n_layers} layers, {lm.arch.n_heads} heads "
                  f"({lm.arch.n_kv_heads} KV), head_dim {lm.arch.head_dim}")

    ds = get_dataset("synthetic", limit=n, seed=seed)
    console.print(f"[2/5] capturing {len(ds)} synthetic statements (residual stream + heads, every layer), "
                  f"e.g. {ds.texts[0]!r} (label {ds.labels[0]})")
    acts = capture_dataset(lm, ds, "resid,heads", out=run.file("capture"), progress=progress)
    y = acts.labels
    train, test = stratified_halves(y, seed=seed)

    console.print(f"[3/5] probing every layer: fit on {len(train)} statements, scored on {len(test)} held out")
    X = acts.stack("resid").float()  # [N, L, D]
    logit = LogisticProbe(C=0.1).fit(X[train], y[train])
    log_acc = torch.as_tensor(logit.score(X[test], y[test])).reshape(-1)
    rows = []
    for i, layer in enumerate(acts.layers("resid")):
        acc, auc = mass_mean_separation(X[:, i], y, train, test)
        rows.append(LayerSeparation(layer, acc, auc, float(log_acc[i])))
    best = max(rows, key=lambda r: r.auroc)
    table = Table(title="held-out truth probes by layer (synthetic statements)")
    for c in ("layer", "mass-mean acc", "mass-mean AUROC", "logistic acc", ""):
        table.add_column(c)
    for r in rows:
        bar = "#" * int(round(max(0.0, r.auroc - 0.5) * 40))
        table.add_row(str(r.layer), f"{r.accuracy:.3f}", f"{r.auroc:.3f}", f"{r.logistic_accuracy:.3f}",
                      bar + (" <- best" if r is best else ""))
    console.print(table)
    run.write_csv("separation.csv", rows)

    tqa = data_dir is not None and (Path(data_dir) / "truthfulqa").is_dir()
    cfg = ITIConfig(seed=seed, max_k=iti_k)
    if tqa:
        console.print(f"[4/5] ITI on the first {tqa_questions} TruthfulQA questions: heads captured at the last "
                      "token of every (question, answer) row, fitted on one fold, shown on the other")
        from .data import load_truthfulqa

        data = load_iti_data(lm, data_dir=data_dir, limit=tqa_questions, progress=progress)
        folds = make_folds(data.questions, 2, seed=seed)
        fit = fit_fold(data, folds[0], cfg, fold=0, test_questions=folds[1])
        items = {it.index: it for it in load_truthfulqa(data_dir)}
        shown = [int(q) for q in folds[1][:3]]
        questions = [items[q].question for q in shown]
        source = "truthfulqa"
    else:
        console.print("[4/5] ITI on the synthetic statements (set VERACITY_DATA or --data-dir for TruthfulQA): "
                      "heads at the last token, fitted on the training half")
        data = _itidata_from_heads(acts.stack("heads"), y, {"dataset": "synthetic", "model": lm.name})
        fit = fit_fold(data, train.numpy(), cfg, fold=0, test_questions=test.numpy())
        shown, questions, source = [-1, -2, -3], list(SYNTHETIC_QUESTIONS), "synthetic"
    iv = fit.intervention(min(iti_k, len(fit.heads)), iti_alpha)
    iv.save(run.file("intervention"))
    console.print(f"      top {iv.k} heads by validation accuracy: "
                  + ", ".join(f"L{l}H{h}" for l, h in iv.heads[:8]) + (" ..." if iv.k > 8 else "")
                  + f"; alpha {iv.alpha:g}")
    console.print(f"[5/5] answering {len(questions)} held-out questions before and after ITI")
    before = generate_answers(lm, questions, shown, max_new_tokens=max_new_tokens)
    with apply(lm, iv, positions="last"):
        after = generate_answers(lm, questions, shown, max_new_tokens=max_new_tokens)
    examples = [{"question": q, "before": b.answer, "after": a.answer} for q, b, a in zip(questions, before, after)]
    t = Table(title=f"answers before and after ITI (K={iv.k}, alpha={iv.alpha:g}, {source})", show_lines=True)
    for c in ("question", "before ITI", "after ITI"):
        t.add_column(c, overflow="fold")
    for e in examples:
        t.add_row(e["question"], e["before"], e["after"])
    console.print(t)
    run.write_csv("examples.csv", examples)

    results = {"separation": rows, "best_layer": best.layer, "seconds": time.time() - t0,
               "capture": acts.summary(), "examples": examples,
               "iti": {"source": source, "k": iv.k, "alpha": iv.alpha, "heads": iv.heads,
                       "head_scores": fit.head_scores, "val_acc_top": [float(fit.head_scores[l, h]) for l, h in iv.heads]}}
    run.finish(results, headline={"best_layer": best.layer, "best_auroc": best.auroc,
                                  "best_logistic_acc": max(r.logistic_accuracy for r in rows)})
    report = render_report([run.path], run.file("report.html"), title="veracity demo")
    console.print(f"best layer {best.layer}: mass-mean held-out accuracy {best.accuracy:.3f}, AUROC {best.auroc:.3f}; "
                  f"best logistic accuracy {max(r.logistic_accuracy for r in rows):.3f}")
    console.print(f"run folder {run.path}; report [bold]{report}[/bold] ({time.time() - t0:.0f} s)")
    return results
