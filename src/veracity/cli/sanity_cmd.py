"""`veracity probe-polarity` (train on affirmative statements, test on negated ones, and held-out topics,
for logistic / mass-mean / TTPD / any probe) and `veracity ccs-distractor` (does CCS find a planted
distractor instead of truth? Farquhar et al. 2023) -- the probe sanity checks of `veracity.probes.sanity`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, OverwriteOpt, console, fail, parse_int_list, parse_str_list, print_table


def probe_polarity_command(
    model: str = ModelOpt,
    sets: str = typer.Option("cities,sp_en_trans", "--sets",
                             help="Geometry-of-Truth sets with a neg_ twin (affirmative file + neg_ file each)."),
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
    from ..data import DataError
    from ..models import ModelNotAvailable, load
    from ..probes import make_probe
    from ..probes.sanity import polarity_statements, run_polarity_experiment
    from ..runs import RunExists, RunFolder
    from ..validation import check_layers

    method_list = parse_str_list(methods)
    set_list = parse_str_list(sets)
    try:
        for m in method_list:
            make_probe(m)
        ds = polarity_statements(set_list, data_dir=data_dir, limit=limit, seed=seed)
    except (ValueError, DataError) as e:
        fail(str(e))
    layer_list = parse_int_list(layers)
    cfg = {"model": model, "sets": set_list, "layers": layers, "methods": method_list, "limit": limit,
           "test_size": test_size, "seed": seed, "C": C, "keep_twins": keep_twins, "rows": len(ds),
           "content_hash": ds.content_hash}
    try:
        run = RunFolder(out, "probe-polarity", cfg, overwrite=overwrite, seed=seed, defer=True)
    except RunExists as e:
        fail(str(e))
    try:
        lm = load(model, device=device)
    except ModelNotAvailable as e:
        fail(str(e))
    check_layers(layer_list, lm.arch.n_layers)
    run.start()
    from ..capture import capture

    absl = list(range(lm.arch.n_layers)) if layer_list is None else [lm.arch.resolve_layer(l) for l in layer_list]
    sites = ",".join(f"resid.{l}" for l in absl)
    acts = capture(lm, ds.texts, sites, positions="last", batch_size=batch_size, labels=ds.labels,
                   groups=ds.groups, dataset_name=ds.name, progress=False)
    X = acts.stack("resid", absl).float()
    pol = [m["polarity"] for m in ds.meta]
    twins = [m["twin"] for m in ds.meta] if keep_twins else None
    exp = run_polarity_experiment(X, ds.labels, pol, ds.groups, absl, method_list, seed=seed, test_size=test_size, C=C,
                                  twins=twins)
    cols = ["method"] + [f"L{l}" for l in absl]
    for train, test in (("affirmative", "affirmative"), ("affirmative", "negated"), ("negated", "affirmative"),
                        ("both", "negated")):
        print_table(f"train {train} -> test {test} (held-out rows)", cols, exp.table(train, test))
    topics = sorted(set(ds.groups))
    if len(topics) > 1:
        for t in topics:
            print_table(f"held-out topic {t}: train on the other topics (both polarities) -> {t} negated", cols,
                        exp.table(f"topic!={t}", f"{t}:negated"))
    run.write_csv("polarity_scores.csv", exp.scores)
    aff_neg = [s["accuracy"] for s in exp.scores if s["train"] == "affirmative" and s["test"] == "negated"
               and s["accuracy"] is not None]
    run.finish({"experiment": exp}, headline={"rows": len(ds), "worst_affirmative_to_negated": min(aff_neg, default=None)})
    console.print(f"done; run folder {out}")


def ccs_distractor_command(
    acts: Path = typer.Option(..., "--acts", help="Contrast-pair store of a `veracity ccs` run (x+ rows, then x-)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Comma-separated, negatives from the end; default all."),
    strengths: str = typer.Option("0.5,1,2", "--strengths", help="Distractor sizes, in RMS norms of the centred activations."),
    test_size: float = typer.Option(0.4, "--test-size"),
    n_restarts: int = typer.Option(10, "--n-restarts"),
    epochs: int = typer.Option(1000, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o"),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Fit CCS on clean and on distracted contrast pairs; report which feature it finds."""
    from ..capture import Activations
    from ..probes import site_matrix
    from ..probes.sanity import ccs_distractor_test
    from ..runs import RunExists, RunFolder
    from ..validation import check_layers

    try:
        sizes = [float(s) for s in parse_str_list(strengths)]
    except ValueError:
        fail(f"--strengths: expected comma-separated numbers, got {strengths!r}")
    if not sizes or any(s < 0 for s in sizes):
        fail("--strengths: give one or more non-negative numbers")
    try:
        store = Activations.open(acts)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    if store.labels is None or store.n_rows % 2:
        fail(f"{acts} is not a contrast-pair store (labelled x+ rows then x- rows)")
    layer_list = parse_int_list(layers)
    check_layers(layer_list, store.n_layers)
    cfg = {"acts": str(acts), "layers": layers, "strengths": sizes, "test_size": test_size, "n_restarts": n_restarts,
           "epochs": epochs, "lr": lr, "seed": seed}
    try:
        run = RunFolder(out, "ccs-distractor", cfg, overwrite=overwrite, seed=seed)
    except RunExists as e:
        fail(str(e))
    X, absl = site_matrix(store, "resid", layer_list)
    n = store.n_rows // 2
    y = store.labels[:n]
    rows = []
    for s in sizes:
        res = ccs_distractor_test(X[:n].float(), X[n:].float(), y, strength=s, seed=seed, test_size=test_size,
                                  n_restarts=n_restarts, epochs=epochs, lr=lr)
        for i, l in enumerate(absl):
            rows.append({"strength": s, "layer": l, "picks": res.picks[i], "acc_truth": res.acc_truth[i],
                         "acc_distractor": res.acc_distractor[i], "cos_truth": res.cos_truth[i],
                         "cos_distractor": res.cos_distractor[i], "clean_acc_truth": res.clean_acc_truth[i],
                         "clean_cos_truth": res.clean_cos_truth[i]})
        run.log(f"strength {s}: " + " ".join(f"L{l}:{p}" for l, p in zip(absl, res.picks)))
    print_table("CCS with a planted distractor (test accuracy either sign; |cos| with truth = supervised diff-means)",
                ["strength", "layer", "picks", "acc truth", "acc distractor", "|cos| truth", "|cos| distr.", "clean acc truth"],
                [[r["strength"], r["layer"], r["picks"], r["acc_truth"], r["acc_distractor"], r["cos_truth"],
                  r["cos_distractor"], r["clean_acc_truth"]] for r in rows])
    run.write_csv("distractor.csv", rows)
    run.finish({"rows": rows}, headline={"picks_distractor": sum(r["picks"] == "distractor" for r in rows),
                                         "cells": len(rows)})
    console.print(f"done; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("probe-polarity")(probe_polarity_command)
    app.command("ccs-distractor")(ccs_distractor_command)
