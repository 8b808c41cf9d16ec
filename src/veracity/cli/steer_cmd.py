"""`veracity steer sweep`: one sweep command for every registered steering method (the residual ones: layer x alpha;
ITI: K x alpha with `veracity iti sweep`'s options); `veracity steer compare`: those sweeps side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, console, fail, parse_int_list, print_table
from .iti_cmd import (ActsOpt, BinaryOpt, ContigOpt, DataOpt, DetectorOpt, DirectionOpt, EvalRevisionOpt, GenPosOpt, JudgeBaseUrlOpt, JudgeOpt, LimitOpt,
                      MCShiftOpt, MetricHelp, SweepOverwriteOpt, ProtocolOpt, ReproduceOpt, RevisionOpt, SideEffectNOpt, SideEffectsHelp, SigmaOpt, steer_names,
                      _judge_spec, _side_effects)

steer_app = typer.Typer(help="Steering methods on TruthfulQA's folds: sweeps with side effects.", no_args_is_help=True)


@steer_app.command("sweep")
def sweep_cmd(model: str = ModelOpt,
              method: str = typer.Option("caa", "--method", help=f"{steer_names('layers')} (residual stream: layer x "
                                         f"alpha) | {steer_names('heads')} (attention heads: K x alpha, as "
                                         "`veracity iti sweep`)."),
              alphas: str = typer.Option("0,1,2,4", "--alphas", help="The residual steers' strength (a multiple of the fitted vector; raw "
                                         "scale = the class-mean difference) or ITI's alpha; 0 = the plain model."),
              layers: Optional[str] = typer.Option(None, "--layers", help="Residual steers: decoder layers, one per "
                                                   "configuration (negatives from the end; default every third "
                                                   "layer of the middle half)."),
              normalize: str = typer.Option("raw", "--normalize", help="Residual steers that declare it: raw | sigma | unit."),
              steer_param: Optional[list[str]] = typer.Option(None, "--steer-param", help="NAME=VALUE, repeatable: "
                                                              "another parameter the chosen steer declares (ace: "
                                                              "reference=all; conditional: steer=ace, threshold=0.7; loreft: rank=8)."),
              cosmic: bool = typer.Option(False, "--cosmic", help="Residual steers: also report COSMIC's "
                                          "generation-free layer choice on each training fold beside the sweep's best "
                                          "layer (and that layer's rank)."),
              plain_from: Optional[Path] = typer.Option(None, "--plain-from", help="Residual steers: another "
                                                        "steer sweep's folder with the same settings but the "
                                                        "steer's own (method, normalize, steer params): its "
                                                        "plain-model rows are reused, not scored again."),
              num_heads: Optional[str] = typer.Option(None, "--num-heads", "-k",
                                                      help="iti: K values (default 8,16,32,48)."),
              folds: int = typer.Option(2, "--folds"), seed: Optional[int] = typer.Option(None, "--seed"),
              judge: str = JudgeOpt, judge_base_url: Optional[str] = JudgeBaseUrlOpt, protocol: str = ProtocolOpt,
              metric: str = typer.Option("mc2", "--metric", help=MetricHelp),
              side_effects: str = typer.Option("all", "--side-effects", help=SideEffectsHelp),
              side_effect_n: Optional[str] = SideEffectNOpt,
              detector: Optional[Path] = DetectorOpt, binary: bool = BinaryOpt,
              ce_texts: int = typer.Option(100, "--ce-texts", help="Held-out documents for CE/KL (0: skip)."),
              limit: Optional[int] = LimitOpt, acts: Optional[Path] = ActsOpt, revision: str = RevisionOpt,
              eval_revision: Optional[str] = EvalRevisionOpt,
              direction: str = DirectionOpt, sigma_from: Optional[str] = SigmaOpt, data: Optional[str] = DataOpt,
              mc_shift_from: Optional[str] = MCShiftOpt, reproduce: Optional[str] = ReproduceOpt,
              contiguous_folds: bool = ContigOpt, gen_positions: str = GenPosOpt,
              out: Path = typer.Option(..., "--out", "-o"), data_dir: Optional[Path] = DataDirOpt,
              device: Optional[str] = typer.Option(None, "--device"),
              overwrite: bool = SweepOverwriteOpt) -> None:
    """Sweep a steering method over its grid with k folds; MC, CE/KL, judges and side effects per cell; resumable."""
    from ..constraints import parse_numbers
    from ..experiments.steer_sweep import SteerSweepConfig, run_steer_sweep

    a_list = tuple(parse_numbers(alphas, float, "--alphas"))
    judge = _judge_spec(judge, judge_base_url)
    se = _side_effects(side_effects, side_effect_n)
    dd = str(data_dir) if data_dir else None
    det = str(detector) if detector else None
    k_list = tuple(parse_numbers(num_heads, int, "--num-heads") or ())
    from ..methods.steers import STEERS, parse_steer_params

    if method in STEERS:  # an unknown --method is refused by the Config below, naming the registered ones
        try:
            params = parse_steer_params(steer_param or [], [method])
        except ValueError as e:
            fail(str(e))
    else:
        params = {}
    # every method's options are checked here: an option of a parameter the chosen steer does not declare
    # (--layers with iti, --num-heads / --direction / --sigma-from with caa) is refused, never ignored
    scfg = SteerSweepConfig(model=model, method=method, layers=tuple(parse_numbers(layers, int, "--layers") or ()),
                            alphas=a_list, normalize=normalize, folds=folds, seed=0 if seed is None else seed,
                            protocol=protocol, judge=judge, metric=metric, ce_texts=ce_texts, limit=limit,
                            revision=revision, eval_revision=eval_revision, data_dir=dd,
                            acts=str(acts) if acts else None, device=device, num_heads=k_list, direction=direction,
                            sigma_from=sigma_from, data=data, mc_shift_from=mc_shift_from, reproduce=reproduce,
                            contiguous_folds=contiguous_folds, gen_positions=gen_positions,
                            steer_params=params, cosmic=cosmic, detector=det, binary=binary,
                            plain_from=str(plain_from) if plain_from else None, **se)

    if STEERS[method].sweep == "heads":  # the registry entry names the engine that varies its parameters
        from ..experiments.iti_sweep import SweepConfig, run_iti_sweep

        cfg = SweepConfig(model=model, alphas=a_list, num_heads=k_list or (8, 16, 32, 48), folds=folds,
                          direction=direction, judge=judge, protocol=protocol, metric=metric, sigma_from=sigma_from,
                          contiguous_folds=contiguous_folds, seed=seed, data=data, mc_shift_from=mc_shift_from,
                          reproduce=reproduce, limit=limit, acts=str(acts) if acts else None, ce_texts=ce_texts,
                          gen_positions=gen_positions, revision=revision, eval_revision=eval_revision, data_dir=dd,
                          device=device, detector=det, binary=binary, **se)
        res = run_iti_sweep(cfg, out, overwrite=overwrite, log=console.print)
        for table in res.tables():
            print_table(*table)
        return
    res = run_steer_sweep(scfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)


@steer_app.command("compare")
def compare_cmd(runs: list[Path] = typer.Argument(..., help="Finished `steer sweep` / `iti sweep` run folders "
                                                  "on the same folds (model, folds, seed, --limit, revision)."),
                reference: Optional[Path] = typer.Option(None, "--reference", help="A finished "
                                                         "`compare-interventions` run on the same folds: its "
                                                         "prompting methods and the plain model as reference "
                                                         "points."),
                metric: str = typer.Option("mc2", "--metric", help=MetricHelp),
                out: Path = typer.Option(..., "--out", "-o"),
                overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier comparison at --out.")
                ) -> None:
    """Every method's sweep on the same folds: its best cell, one gain-against-cost chart with the Pareto front,
    and whether the steerability predictors foretold the outcome."""
    from ..experiments.steer_compare import SteerCompareConfig, run_steer_compare
    from ..report.plots import gain_cost

    cfg = SteerCompareConfig(runs=[str(r) for r in runs], reference=str(reference) if reference else None,
                             metric=metric)
    res = run_steer_compare(cfg, out, overwrite=overwrite, log=console.print, chart=gain_cost)
    for table in res.tables():
        print_table(*table)


@steer_app.command("fit")
def fit_cmd(acts: Path = typer.Option(..., "--acts", help="A labelled capture store with resid sites at the last "
                                      "token (`veracity capture --sites resid`): true/false statements, Geometry of "
                                      "Truth, TruthfulQA answers, sycophancy pairs."),
            method: str = typer.Option("caa", "--method", help="caa (class-mean difference) | lat (first principal "
                                       "component of paired true - false differences)."),
            layers: Optional[str] = typer.Option(None, "--layers", help="Decoder layers (default: every captured one)."),
            normalize: str = typer.Option("raw", "--normalize", help="raw | sigma | unit."),
            alpha: float = typer.Option(1.0, "--alpha", help="Multiple of the fitted vector stored with it."),
            seed: int = typer.Option(0, "--seed", help="lat: pairing and sign draws."),
            out: Path = typer.Option(..., "--out", "-o", help="PATH: writes PATH.json and PATH.safetensors."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier steer at --out.")) -> None:
    """Fit a residual-stream steering vector per layer from a labelled capture store."""
    from ..outputs import claim_output
    from ..steer.options import ResidualFitConfig
    from ..steer.residual import fit_residual_from_store

    ResidualFitConfig(method=method, layers=parse_int_list(layers), normalize=normalize, alpha=alpha, seed=seed)
    claim_output(out, "steer", overwrite=overwrite)  # before any work; checked again when written
    try:
        steer = fit_residual_from_store(str(acts), method, parse_int_list(layers), normalize, seed, alpha)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    path = steer.save(out, overwrite=overwrite)
    print_table(f"{method} steer -> {path}", ["layer", "vector norm"],
                [[l, f"{float(v.norm()):.4f}"] for l, v in zip(steer.layers, steer.vectors)])


@steer_app.command("bake")
def bake_cmd(model: str = ModelOpt,
             steer: Path = typer.Option(..., "--steer", help="A residual steer (`veracity steer fit`, or a caa/lat "
                                        "fit saved by a comparison)."),
             alpha: Optional[float] = typer.Option(None, "--alpha", help="Override the stored alpha."),
             layers: Optional[str] = typer.Option(None, "--layers", help="Bake only these of its layers."),
             out: Path = typer.Option(..., "--out", "-o", help="The Hugging Face folder to write."),
             device: Optional[str] = typer.Option(None, "--device"),
             overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier baked model at --out.")) -> None:
    """Write the steered model as a plain Hugging Face folder (an exact down_proj bias where the architecture
    has one; refused clearly where it has not) and check its logits against the hooks."""
    import json

    from ..models import load
    from ..models.loader import LoadConfig
    from ..outputs import claim_output
    from ..steer.options import ResidualBakeConfig
    from ..steer.residual import ResidualSteer

    LoadConfig(model=model, device=device)
    ResidualBakeConfig(alpha=alpha, layers=parse_int_list(layers))
    claim_output(out, "baked-model", overwrite=overwrite)  # before any work; checked again when written
    try:
        s = ResidualSteer.load(steer)
        if layers:
            s = s.select(parse_int_list(layers))
        if alpha is not None:
            s = s.with_alpha(alpha)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    lm = load(model, device=device)
    try:
        s.check_model(lm.arch, lm.fingerprint)
        folder = s.bake(lm, out, overwrite=overwrite, verify=True)  # the Steer protocol
    except ValueError as e:  # NotBakeable, another model
        fail(str(e))
    worst = json.loads((folder / "veracity_bake.json").read_text())["max_abs_logit_diff_vs_hooks"]
    console.print(f"baked {s.method} (layers {s.layers}, alpha {s.alpha:g}) into {folder}; "
                  f"max |logit difference| against the hooks {worst:.2e}")


def register(app: typer.Typer) -> None:
    app.add_typer(steer_app, name="steer")
