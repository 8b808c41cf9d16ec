"""`veracity probe` (supervised probes per layer or per head, with topic splits and direction geometry)
and `veracity ccs` (Contrast-Consistent Search vs logistic, random and zero-shot baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, OverwriteOpt, console, parse_int_list, parse_str_list, print_table


def probe_command(
    acts: Optional[Path] = typer.Option(None, "--acts", help="Capture store (from `veracity capture`); instead of "
                                        "--model/--dataset."),
    model: str = ModelOpt,
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="Without --acts: the labelled data set whose "
                                "activations are captured (in memory) and probed."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Without --acts: only the first N rows."),
    positions: str = typer.Option("last", "--positions", help="Without --acts: the captured token, last | mean."),
    dtype: str = typer.Option("float16", "--dtype", help="Without --acts: the captured dtype (float16, as a store's; "
                              "bfloat16 or float32; fp16/fp32 as in capture)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Without --acts: rows per forward."),
    data_dir: Optional[Path] = DataDirOpt,
    site: Optional[str] = typer.Option(None, "--site", help="resid (default) | mlp | heads"),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated, negatives count from the end; default all."),
    methods: str = typer.Option("logistic,mlp-tiny,mlp-small,mlp-medium,mass-mean", "--methods",
                                help="logistic, mlp-tiny, mlp-small, mlp-medium, mass-mean, mass-mean-cov, random"),
    split: str = typer.Option("leave-one-topic-out", "--split", help="random | kfold | leave-one-topic-out | transfer"),
    seeds: int = typer.Option(5, "--seeds", help="Repeat every split over this many seeds."),
    test_size: float = typer.Option(0.2, "--test-size", help="Held-out fraction for --split random."),
    k: int = typer.Option(5, "--k", help="Folds for --split kfold."),
    test_acts: Optional[Path] = typer.Option(None, "--test-acts", help="For --split transfer: the store to test on."),
    heads: bool = typer.Option(False, "--heads", help="Per-(layer, head) logistic probes on heads.* -> layers x heads matrix."),
    C: float = typer.Option(1.0, "--C", help="Inverse L2 strength of the logistic probe."),
    device: Optional[str] = typer.Option(None, "--device"),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Train probes per layer (or per head) on a store or a model's captured activations and print average
    and max accuracy over seeds."""
    from ..experiments.probe import ProbeConfig, run_probe

    cfg = ProbeConfig(model=model, dataset=dataset, acts=str(acts) if acts else None, limit=limit,
                      positions=positions, dtype=dtype, batch_size=batch_size,
                      data_dir=str(data_dir) if data_dir else None, site=site, layers=parse_int_list(layers),
                      methods=parse_str_list(methods), split=split, seeds=seeds, test_size=test_size, k=k,
                      test_acts=str(test_acts) if test_acts else None, heads=heads, C=C, device=device)
    res = run_probe(cfg, out, overwrite=overwrite, log=console.print)
    _show(res)
    console.print(f"run folder {out}")


def _show(res) -> None:
    for table in res.tables():
        print_table(*table)
    for line in res.lines():
        console.print(line)


def ccs_command(
    model: str = ModelOpt,
    dataset: str = typer.Option("boolq", "--dataset", "-d", help="A data set whose meta holds x_plus/x_minus (boolq)."),
    layers: Optional[str] = typer.Option("all", "--layers", help="'all' or comma-separated (negatives from the end)."),
    acts: Optional[Path] = typer.Option(None, "--acts", help="Contrast-pair store from an earlier ccs run (rows: all x+, then all x-)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only N questions."),
    test_size: float = typer.Option(0.4, "--test-size"),
    n_restarts: int = typer.Option(10, "--n-restarts"),
    epochs: int = typer.Option(1000, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    zero_shot: bool = typer.Option(True, "--zero-shot/--no-zero-shot", help="Score the model's own P(Yes) vs P(No)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b"),
    device: Optional[str] = typer.Option(None, "--device"),
    data_dir: Optional[Path] = DataDirOpt,
    out: Path = typer.Option(..., "--out", "-o"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """CCS per layer on yes/no contrast pairs vs logistic regression, a random direction and zero-shot."""
    from ..experiments.ccs import CCSConfig, run_ccs

    cfg = CCSConfig(model=model, dataset=dataset, layers=parse_int_list(layers),
                    acts=str(acts) if acts else None, limit=limit, test_size=test_size, n_restarts=n_restarts,
                    epochs=epochs, lr=lr, seed=seed, zero_shot=zero_shot, batch_size=batch_size, device=device,
                    data_dir=str(data_dir) if data_dir else None)
    res = run_ccs(cfg, out, overwrite=overwrite, log=console.print)
    _show(res)
    console.print(f"done; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_command)
    app.command("ccs")(ccs_command)
