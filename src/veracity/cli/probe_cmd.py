"""`veracity probe` (supervised probes per layer or per head, with topic splits and direction geometry)
and `veracity ccs` (Contrast-Consistent Search vs logistic, random and zero-shot baselines)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, OverwriteOpt, console, fail, parse_int_list, parse_str_list, print_table


def _open_store(path: Path):
    from ..capture import Activations

    try:
        return Activations.open(path)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


def _plot_accuracy(run, exp, name: str = "accuracy_vs_layer.png") -> None:
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
    run.save_figure(fig, name)


def _plot_geometry(run, exp, name: str = "cosine_heatmap.png") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in exp.methods if m in exp.geometry]
    if not methods:
        return
    L = len(exp.layers)
    fig, axes = plt.subplots(len(methods), L, figsize=(2.6 * L + 1, 3.0 * len(methods) + 0.5), squeeze=False)
    fig.subplots_adjust(hspace=0.7, wspace=0.5)
    for i, m in enumerate(methods):
        for j, l in enumerate(exp.layers):
            g = exp.geometry[m][str(l)]
            ax = axes[i][j]
            im = ax.imshow(g.cosine, vmin=-1, vmax=1, cmap="RdBu_r")
            ax.set_xticks(range(len(g.labels)), g.labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(g.labels)), g.labels, fontsize=6)
            ax.set_title(f"{m} L{l}: mean cos {g.mean_offdiag_cosine:.2f}\n(chance {g.chance_cosine:.2f})", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6)
    run.save_figure(fig, name)


def probe_command(
    acts: Path = typer.Option(..., "--acts", help="Capture store (from `veracity capture`)."),
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
    """Train probes per layer (or per head) and print average and max accuracy over seeds."""
    import torch

    from ..experiments.probe import run_probe_experiment
    from ..probes import SPLIT_KINDS, head_accuracy_matrix, site_matrix
    from ..runs import RunExists, RunFolder

    from ..validation import BadInput, check_layers

    if heads and site not in (None, "heads"):
        raise BadInput(f"--heads probes the heads.* sites; drop --site {site}")
    if test_acts is not None and split != "transfer":
        raise BadInput(f"--test-acts is only used by --split transfer (got --split {split})")
    site = site or "resid"
    if split not in SPLIT_KINDS:
        fail(f"--split must be one of {', '.join(SPLIT_KINDS)}")
    store = _open_store(acts)
    layer_list = parse_int_list(layers)
    check_layers(layer_list, store.n_layers)
    method_list = parse_str_list(methods)
    if store.labels is None:
        fail(f"{acts} has no labels; capture a labelled data set")
    cfg = {"acts": str(acts), "site": "heads" if heads else site, "layers": layers, "methods": method_list,
           "split": split, "seeds": seeds, "test_size": test_size, "k": k, "C": C, "heads": heads,
           "test_acts": str(test_acts) if test_acts else None, "model": store.manifest["model"]["name"],
           "dataset": store.manifest["dataset"]["name"]}
    try:
        run = RunFolder(out, "probe", cfg, overwrite=overwrite, seed=0, defer=True)  # created on first write
    except RunExists as e:
        fail(str(e))

    if heads:
        try:
            accs, probe_layers = [], None
            for seed in range(seeds):
                hp = head_accuracy_matrix(store, layers=layer_list, C=C, device=device, seed=seed, val_size=test_size)
                accs.append(hp.accuracy)
                probe_layers = hp.layers
        except KeyError as e:
            fail(str(e))
        A = torch.stack(accs)
        mean, mx = A.mean(0), A.max(0).values
        H = mean.shape[1]
        print_table(f"per-head logistic accuracy (mean over {seeds} seeds, random {test_size:.0%} held out)",
                    ["layer"] + [f"h{h}" for h in range(H)], [[l] + mean[i].tolist() for i, l in enumerate(probe_layers)])
        rows = [{"layer": l, "head": h, "accuracy_mean": float(mean[i, h]), "accuracy_std": float(A[:, i, h].std(unbiased=False)),
                 "accuracy_max": float(mx[i, h])} for i, l in enumerate(probe_layers) for h in range(H)]
        run.write_csv("head_accuracy.csv", rows)
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1 + 0.4 * H, 1 + 0.25 * len(probe_layers)))
        im = ax.imshow(mean.numpy(), aspect="auto", cmap="viridis")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_yticks(range(len(probe_layers)), [str(l) for l in probe_layers], fontsize=6)
        fig.colorbar(im, ax=ax, label="validation accuracy")
        run.save_figure(fig, "head_accuracy.png")
        best = divmod(int(mean.argmax()), H)
        run.finish({"accuracy_mean": mean, "accuracy_max": mx, "layers": probe_layers, "seeds": seeds},
                   headline={"best_head_acc": float(mean.max()), "best_head": f"L{probe_layers[best[0]]}H{best[1]}"})
        console.print(f"best head L{probe_layers[best[0]]}.H{best[1]}: {float(mean.max()):.3f}; run folder {out}")
        return

    try:
        X, absl = site_matrix(store, site, layer_list)
    except KeyError as e:
        fail(str(e))
    labels, groups, n_train = store.labels.tolist(), store.groups, None
    if split == "transfer":
        if test_acts is None:
            fail("--split transfer needs --test-acts STORE")
        other = _open_store(test_acts)
        X2, _ = site_matrix(other, site, layer_list)
        n_train = X.shape[0]
        X = torch.cat([X, X2])
        labels = labels + other.labels.tolist()
        groups = None
    console.print(f"{X.shape[0]} rows, {len(absl)} layers of {site} (d={X.shape[-1]}); split {split}, {seeds} seeds")
    try:
        exp = run_probe_experiment(X, labels, groups, absl, method_list, split, seeds, test_size=test_size, k=k,
                                   n_train=n_train, C=C, device=device, progress=run.log)
    except ValueError as e:
        fail(str(e))
    cols = ["method"] + [f"L{l}" for l in exp.layers]
    print_table(f"average accuracy ({split}; mean over {len(exp.seeds)} seeds)", cols, exp.table("mean"))
    print_table(f"maximum accuracy over {len(exp.seeds)} seeds", cols, exp.table("max"))
    for m, per_layer in exp.geometry.items():
        l, g = list(per_layer.items())[-1]
        console.print(f"geometry {m} L{l}: mean pairwise cosine {g.mean_offdiag_cosine:.3f} (chance ~{g.chance_cosine:.3f}), "
                      f"sign agreement {g.mean_offdiag_sign:.3f} (chance {g.chance_sign})")
    run.write_csv("scores.csv", exp.scores)
    run.write_csv("summary.csv", exp.cells)
    _plot_accuracy(run, exp)
    _plot_geometry(run, exp)
    best = max(exp.cells, key=lambda c: c.mean)
    run.finish({"experiment": exp}, headline={"best_acc": best.mean, "best": f"{best.method}@L{best.layer}"})
    console.print(f"done in {exp.elapsed_s:.1f}s; run folder {out}")


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
    from ..data import DataError, get_dataset
    from ..models import ModelNotAvailable, load
    from ..experiments.probe import run_ccs_experiment
    from ..probes import site_matrix
    from ..probes.zero_shot import contrast_scores
    from ..runs import RunExists, RunFolder

    try:
        ds = get_dataset(dataset, data_dir=data_dir, limit=limit, seed=seed)
    except DataError as e:
        fail(str(e))
    if not ds.meta or "x_plus" not in ds.meta[0]:
        fail(f"{dataset} has no contrast pairs (meta x_plus/x_minus); use boolq")
    x_plus = [m["x_plus"] for m in ds.meta]
    x_minus = [m["x_minus"] for m in ds.meta]
    cfg = {"model": model, "dataset": dataset, "layers": layers, "limit": limit, "test_size": test_size,
           "n_restarts": n_restarts, "epochs": epochs, "lr": lr, "acts": str(acts) if acts else None}
    try:
        run = RunFolder(out, "ccs", cfg, overwrite=overwrite, seed=seed, defer=True)
    except RunExists as e:
        fail(str(e))
    lm = None
    if acts is None or zero_shot:
        try:
            lm = load(model, device=device)
        except ModelNotAvailable as e:
            fail(str(e))
    from ..validation import check_layers

    layer_list = parse_int_list(layers)
    n = len(x_plus)
    if acts is None:
        from ..capture import capture

        check_layers(layer_list, lm.arch.n_layers)  # before capturing every layer
        run.start()

        acts = out / "acts"
        store = capture(lm, x_plus + x_minus, "resid", positions="last", batch_size=batch_size, out=acts,
                        labels=list(ds.labels) * 2, dataset_name=f"{ds.name}-contrast", overwrite=overwrite,
                        config={"contrast_layout": "x_plus rows then x_minus rows", "n_pairs": n})
    else:
        store = _open_store(acts)
        if store.n_rows != 2 * n:
            fail(f"{acts} has {store.n_rows} rows; expected {2 * n} (x+ then x- for {n} pairs of {dataset})")
        check_layers(layer_list, store.n_layers)
    X, absl = site_matrix(store, "resid", layer_list)
    scores = None
    if zero_shot and lm is not None:
        console.print("zero-shot: scoring P(Yes) vs P(No) with the model")
        scores = contrast_scores(lm, x_plus, x_minus, batch_size=batch_size)
    res = run_ccs_experiment(X[:n], X[n:], ds.labels, absl, test_size=test_size, seed=seed, n_restarts=n_restarts,
                             epochs=epochs, lr=lr, zero_shot_scores=scores, device=device)
    zs = res.zero_shot["accuracy"] if res.zero_shot else float("nan")
    rows = [[r.layer, r.ccs_accuracy, r.ccs_accuracy_either_sign, r.logistic_accuracy, r.random_accuracy, zs, r.ccs_loss]
            for r in res.layers]
    print_table(f"{dataset}: {res.n_train} train / {res.n_test} test pairs (test accuracy)",
                ["layer", "CCS (sign from train)", "CCS max(acc,1-acc)", "logistic", "random", "zero-shot", "CCS loss"], rows)
    if res.zero_shot:
        console.print(f"zero-shot: {res.zero_shot['accuracy']:.3f} (calibrated at the median: "
                      f"{res.zero_shot['accuracy_calibrated']:.3f})")
    run.write_csv("ccs_layers.csv", res.layers)
    best = max(res.layers, key=lambda r: r.ccs_accuracy)
    run.finish({"ccs": res, "store": str(acts)},
               headline={"ccs_best_acc": best.ccs_accuracy, "ccs_best_layer": best.layer, "zero_shot": zs})
    console.print(f"done; run folder {out}")


def register(app: typer.Typer) -> None:
    app.command("probe")(probe_command)
    app.command("ccs")(ccs_command)
