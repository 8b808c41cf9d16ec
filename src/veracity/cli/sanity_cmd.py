"""`veracity probe-polarity` (train on affirmative statements, test on negated ones, and held-out topics,
for logistic / mass-mean / TTPD / any probe) and `veracity ccs-distractor` (does CCS find a planted
distractor instead of truth? Farquhar et al. 2023) -- the probe sanity checks of `veracity.probes.sanity`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, OverwriteOpt, console, parse_int_list, parse_str_list, print_table


def probe_polarity_command(
    model: str = ModelOpt,
    sets: str = typer.Option("cities,sp_en_trans", "--sets",
                             help="Sets with negated twins: Geometry-of-Truth names with a neg_ file (cities, "
                                  "sp_en_trans) and Azaria & Mitchell's interleaved neg_companies, neg_facts."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated, negatives from the end; default all."),
    methods: str = typer.Option("logistic,mass-mean,ttpd", "--methods", help="Probe methods (as `veracity probe`, plus ttpd)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="A seeded sample of N statements per file."),
    test_size: float = typer.Option(0.2, "--test-size", help="Held-out fraction (stratified by polarity x label)."),
    seed: int = typer.Option(0, "--seed"),
    C: float = typer.Option(1.0, "--C", help="Inverse L2 strength (logistic; TTPD's 2-D classifier)."),
    keep_twins: bool = typer.Option(True, "--keep-twins/--random-rows",
                                    help="Split by fact: a statement and its negation on the same side (default), "
                                         "or by random rows."),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    device: Optional[str] = typer.Option(None, "--device"),
    data_dir: Optional[Path] = DataDirOpt,
    out: Path = typer.Option(..., "--out", "-o"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Polarity split and held-out topics for every probe method at every layer (resid, last token)."""
    from ..experiments.probe_sanity import PolarityConfig, run_probe_polarity

    cfg = PolarityConfig(model=model, sets=parse_str_list(sets), layers=parse_int_list(layers),
                         methods=parse_str_list(methods), limit=limit, test_size=test_size, seed=seed, C=C,
                         keep_twins=keep_twins, batch_size=batch_size, device=device,
                         data_dir=str(data_dir) if data_dir else None)
    res = run_probe_polarity(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    console.print(f"done; run folder {out}")


def ccs_distractor_command(
    model: str = ModelOpt,
    dataset: str = typer.Option("boolq", "--dataset", help="Contrast pairs (meta x_plus / x_minus) to capture."),
    acts: Optional[Path] = typer.Option(None, "--acts", help="Instead of --model/--dataset: the contrast-pair store "
                                                             "of a `veracity ccs` run (x+ rows, then x-)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="A seeded sample of N pairs (with --dataset)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated, negatives from the end; default all."),
    strengths: str = typer.Option("0.5,1,2", "--strengths", help="Distractor sizes, in RMS norms of the centred activations."),
    test_size: float = typer.Option(0.4, "--test-size"),
    n_restarts: int = typer.Option(10, "--n-restarts"),
    epochs: int = typer.Option(1000, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(8, "--batch-size", "-b"),
    device: Optional[str] = typer.Option(None, "--device"),
    data_dir: Optional[Path] = DataDirOpt,
    out: Path = typer.Option(..., "--out", "-o"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Fit CCS on clean and on distracted contrast pairs; report which feature it finds."""
    from ..constraints import parse_numbers
    from ..experiments.probe_sanity import DistractorConfig, run_ccs_distractor

    sizes = parse_numbers(strengths, float, "--strengths")
    cfg = DistractorConfig(model=model, dataset=dataset, acts=str(acts) if acts else None, limit=limit,
                           layers=parse_int_list(layers), strengths=sizes, test_size=test_size, n_restarts=n_restarts,
                           epochs=epochs, lr=lr, seed=seed, batch_size=batch_size, device=device,
                           data_dir=str(data_dir) if data_dir else None)
    res = run_ccs_distractor(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    console.print(f"done; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("probe-polarity")(probe_polarity_command)
    app.command("ccs-distractor")(ccs_distractor_command)
