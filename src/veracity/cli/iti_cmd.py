"""`veracity iti fit|bake|validate|sweep`: Inference-Time Intervention."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..metrics import metric_help
from .common import (DataDirOpt, DeviceMapOpt, ModelDtypeOpt, ModelOpt, OverwriteOpt, check_model_options,
                     console, fail, print_table)

iti_app = typer.Typer(help="Inference-Time Intervention: fit, bake, validate, sweep.", no_args_is_help=True)

DirectionOpt = typer.Option("com", "--direction", help="com | probe | random | ccs")
SigmaOpt = typer.Option(None, "--sigma-from", help="train (default: the fold's training rows) | all (every question's probe rows) | original (honest_llama: the tqa_gen_end_q rows of every question, torch.std N-1)")
ContigOpt = typer.Option(False, "--contiguous-folds", help="Contiguous folds in the multiple-choice order, as the original (default: shuffled by seed).")
SeedOpt = typer.Option(None, "--seed", help="Seed of folds, splits and probes (default 0; 42 with --reproduce honest-llama).")
DataOpt = typer.Option(None, "--data", help="ITI probe rows: tqa-mc2 (default, as the original: the MC2 choices of mc_task_v0.json) | csv (the CSV's Correct/Incorrect Answers)")
MCShiftOpt = typer.Option(None, "--mc-shift-from", help="MC scoring: answer-start (default: every answer token's forward shifted) | legacy (the original's len(enc(prompt)) + 4)")
ReproduceOpt = typer.Option(None, "--reproduce", help="honest-llama: every setting as likenneth/honest_llama's validate_2fold (data, sigma, folds, split, probes, tie order, MC shift, seed 42); prints what still differs.")
ActsOpt = typer.Option(None, "--acts", help="Activation store (default: the veracity cache, one per model).")
LimitOpt = typer.Option(None, "--limit", help="Only the first N questions (fit and evaluation).")
JudgeOpt = typer.Option("none", "--judge", help="none | local | local:<folder> | hf:<id> | openai:<model> | openai-chat:<model>: the truth and info judges (local: trained by `veracity judge train`; openai: an OpenAI-compatible endpoint).")
JudgeBaseUrlOpt = typer.Option(None, "--judge-base-url", help="openai: judges: the endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else https://api.openai.com/v1).")
ProtocolOpt = typer.Option("truthfulqa", "--protocol", help="MC protocol: truthfulqa | lm-eval")

def _side_effects_named() -> tuple[str, str]:
    """(names, full sample sizes) of the registered side effects, for the help texts (read from the registry)."""
    from ..methods.side_effects import DEFAULT_N, SIDE_EFFECTS

    return ", ".join(SIDE_EFFECTS), ", ".join(f"{n} {DEFAULT_N[n]}" for n in SIDE_EFFECTS)


SideEffectsHelp = ("Side effects measured on each held-out fold: all, none, or some of "
                   f"{_side_effects_named()[0]} (veracity.methods.side_effects).")
BinaryOpt = typer.Option(False, "--binary", help="Also TruthfulQA's binary task (best vs best incorrect answer; "
                         "every variant, chance 0.5) on each held-out fold.")
SideEffectNOpt = typer.Option(None, "--side-effect-n", help="Side-effect sample sizes, e.g. boolq=200,honest=80 "
                              f"(full samples: {_side_effects_named()[1]}; by default they scale with the fold's "
                              "questions).")


def steer_names(sweep: str | None = None) -> str:
    """The registered steering methods (those a `sweep` engine varies, when given), for the help texts."""
    from ..methods.steers import STEERS

    return " | ".join(n for n, f in STEERS.items() if sweep is None or f.sweep == sweep)


def _side_effects(names: str, sizes: Optional[str]) -> dict:
    from ..methods.side_effects import parse_side_effects, parse_sizes

    try:
        return {"side_effects": parse_side_effects(names), "side_effect_n": parse_sizes(sizes)}
    except ValueError as e:
        fail(str(e))


RevisionOpt = typer.Option("2021", "--revision", help="TruthfulQA revision the intervention is fitted on (2021 | "
                           "2025; 2025 needs --sigma-from train or all).")
EvalRevisionOpt = typer.Option(None, "--eval-revision", help="Revision the held-out questions are evaluated on "
                               "(default: --revision); questions matched by text, those without a match left out "
                               "and listed in results.json (cross_revision).")
SweepOverwriteOpt = typer.Option(False, "--overwrite", help="Empty the run folder (its stored cells too) and start "
                                 "over; without it a folder of the same settings resumes.")
DetectorOpt = typer.Option(None, "--detector", help="A kept detector (`veracity detect`: PATH of PATH.json + "
                           "PATH.safetensors, or its run folder) of this model: every row also reports its mean "
                           "belief that the greedy answers are correct and the share it flags wrong (without "
                           "--judge, short answers are generated for it).")
GenPosOpt = typer.Option("last", "--gen-positions", help="Generation: last (each forward's last token, as ITI) | all")

#: `--metric` of the sweeps: the registry's rankable metrics, named once at import (no torch)
MetricHelp = metric_help()


def _load(model: str, device: Optional[str], dtype: str = "float32", device_map: Optional[str] = None):
    from ..experiments.iti_common import load_model

    lm = load_model(model, device, dtype, device_map)
    check_model_options(lm)  # --num-heads against the model's layers x heads, before any work
    return lm


@iti_app.command("fit")
def fit_cmd(model: str = ModelOpt, out: Path = typer.Option(..., "--out", "-o", help="Intervention path (writes .json + .safetensors)."),
            num_heads: int = typer.Option(48, "--num-heads", "-k"), alpha: float = typer.Option(15.0, "--alpha"),
            direction: str = DirectionOpt, sigma_from: Optional[str] = SigmaOpt, seed: Optional[int] = SeedOpt,
            data: Optional[str] = DataOpt, reproduce: Optional[str] = ReproduceOpt,
            limit: Optional[int] = LimitOpt, acts: Optional[Path] = ActsOpt, data_dir: Optional[Path] = DataDirOpt,
            device: Optional[str] = typer.Option(None, "--device"), model_dtype: str = ModelDtypeOpt,
            device_map: Optional[str] = DeviceMapOpt,
            overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier intervention at --out.")) -> None:
    """Fit an intervention on every TruthfulQA question (nothing held out; use validate to measure)."""
    from ..experiments.iti_common import ITIFitConfig
    from ..experiments.iti_fit import run_iti_fit

    cfg = ITIFitConfig(num_heads=num_heads, alpha=alpha, direction=direction, sigma_from=sigma_from, seed=seed,
                       data=data, reproduce=reproduce, limit=limit)
    iv, path = run_iti_fit(cfg, out, model=model, device=device, model_dtype=model_dtype, device_map=device_map,
                           acts=acts, data_dir=data_dir, overwrite=overwrite, log=console.print)
    print_table("top heads", ["layer", "head", "val acc", "sigma"],
                [[l, h, float(iv.head_scores[l, h]), float(s)] for (l, h), s in zip(iv.heads[:10], iv.sigmas)])
    console.print(f"intervention ({iv.k} heads, alpha={iv.alpha:g}, {direction}) -> {path}")


@iti_app.command("bake")
def bake_cmd(model: str = ModelOpt, intervention: Path = typer.Option(..., "--intervention", "-i"),
             out: Path = typer.Option(..., "--out", "-o"), alpha: Optional[float] = typer.Option(None, "--alpha"),
             verify: bool = typer.Option(True, "--verify/--no-verify", help="Reload and compare with the hooks (fp32)."),
             o_proj_only: bool = typer.Option(False, "--o-proj-only", help="Llama-family models: write model_type seed_oss (a bias on o_proj only) instead of llama with attention_bias (zero q/k/v biases)."),
             device: Optional[str] = typer.Option(None, "--device"), model_dtype: str = ModelDtypeOpt,
             device_map: Optional[str] = DeviceMapOpt,
             overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier baked model at --out.")) -> None:
    """Write a plain Hugging Face folder with the intervention as o_proj biases (shifts every position)."""
    import json

    from ..models.loader import LoadConfig
    from ..outputs import claim_output
    from ..steer import Intervention, bake
    from ..steer.options import BakeConfig

    LoadConfig(model=model, model_dtype=model_dtype, device=device, device_map=device_map)
    BakeConfig(alpha=alpha, verify=verify, o_proj_only=o_proj_only)
    claim_output(out, "baked-model", overwrite=overwrite)  # before any work; checked again when written
    iv = Intervention.load(intervention)  # missing or corrupt: one line, before loading the model
    lm = _load(model, device, model_dtype, device_map)
    if alpha is not None:
        iv = iv.with_alpha(alpha)
    try:
        folder = bake(lm, iv, out, o_proj_only=o_proj_only, overwrite=overwrite, verify=verify)
    except ValueError as e:
        fail(str(e))
    console.print(f"baked {iv.k} heads (alpha={iv.alpha:g}) into {folder}")
    if verify:
        err = json.loads((folder / "veracity_bake.json").read_text())["max_abs_logit_diff_vs_hooks"]
        console.print(f"max |logit diff| vs hooks (every position): {err:.2e}")


def _judge_spec(judge: str, base_url: Optional[str]) -> str:
    """--judge with --judge-base-url folded in ("openai:<model>@<url>"), so it reaches every worker."""
    from ..evaluate.judges import with_base_url

    try:
        return with_base_url(judge, base_url)
    except ValueError as e:
        fail(str(e))


@iti_app.command("validate")
def validate_cmd(model: str = ModelOpt, num_heads: int = typer.Option(48, "--num-heads", "-k"),
                 alpha: float = typer.Option(15.0, "--alpha"), direction: str = DirectionOpt,
                 folds: int = typer.Option(2, "--folds"), judge: str = JudgeOpt,
                 judge_base_url: Optional[str] = JudgeBaseUrlOpt, protocol: str = ProtocolOpt,
                 sigma_from: Optional[str] = SigmaOpt, contiguous_folds: bool = ContigOpt,
                 seed: Optional[int] = SeedOpt, data: Optional[str] = DataOpt,
                 mc_shift_from: Optional[str] = MCShiftOpt, reproduce: Optional[str] = ReproduceOpt,
                 baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also evaluate the plain model on each fold, so answers.csv / answers.jsonl hold every answer before and after ITI (skipped at alpha 0: the run is the baseline)."),
                 limit: Optional[int] = LimitOpt, acts: Optional[Path] = ActsOpt,
                 ce_texts: int = typer.Option(100, "--ce-texts", help="Held-out documents for CE/KL (0: skip)."),
                 side_effects: str = typer.Option("none", "--side-effects", help=SideEffectsHelp),
                 side_effect_n: Optional[str] = SideEffectNOpt,
                 binary: bool = typer.Option(False, "--binary/--no-binary", help="Also TruthfulQA's binary task (best vs best incorrect answer; every variant, chance 0.5) on each held-out fold."),
                 gen_positions: str = GenPosOpt, out: Path = typer.Option(..., "--out", "-o"),
                 revision: str = RevisionOpt, eval_revision: Optional[str] = EvalRevisionOpt,
                 data_dir: Optional[Path] = DataDirOpt, overwrite: bool = OverwriteOpt,
                 device: Optional[str] = typer.Option(None, "--device"), model_dtype: str = ModelDtypeOpt,
                 device_map: Optional[str] = DeviceMapOpt) -> None:
    """k-fold ITI: fit on the other folds, evaluate the held-out questions (alpha 0 = baseline)."""
    from ..experiments.iti_validate import ValidateConfig, run_validate

    cfg = ValidateConfig(model=model, num_heads=num_heads, alpha=alpha, direction=direction, folds=folds,
                         judge=_judge_spec(judge, judge_base_url), protocol=protocol, sigma_from=sigma_from,
                         contiguous_folds=contiguous_folds, seed=seed, data=data, mc_shift_from=mc_shift_from,
                         reproduce=reproduce, baseline=baseline, limit=limit, acts=str(acts) if acts else None,
                         ce_texts=ce_texts, binary=binary, gen_positions=gen_positions, revision=revision,
                         eval_revision=eval_revision, data_dir=str(data_dir) if data_dir else None, device=device,
                         model_dtype=model_dtype, device_map=device_map,
                         **_side_effects(side_effects, side_effect_n))
    res = run_validate(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)


@iti_app.command("sweep")
def sweep_cmd(model: str = ModelOpt, alphas: str = typer.Option("0,5,10,15,20,30", "--alphas"),
              num_heads: str = typer.Option("8,16,32,48,64,96", "--num-heads", "-k"),
              folds: int = typer.Option(2, "--folds"), direction: str = DirectionOpt, judge: str = JudgeOpt,
              judge_base_url: Optional[str] = JudgeBaseUrlOpt,
              protocol: str = ProtocolOpt, metric: str = typer.Option("true_info", "--metric",
                                                                       help=MetricHelp),
              sigma_from: Optional[str] = SigmaOpt, contiguous_folds: bool = ContigOpt,
              seed: Optional[int] = SeedOpt, data: Optional[str] = DataOpt,
              mc_shift_from: Optional[str] = MCShiftOpt, reproduce: Optional[str] = ReproduceOpt,
              limit: Optional[int] = LimitOpt, acts: Optional[Path] = ActsOpt,
              ce_texts: int = typer.Option(100, "--ce-texts"), gen_positions: str = GenPosOpt,
              side_effects: str = typer.Option("all", "--side-effects", help=SideEffectsHelp),
              side_effect_n: Optional[str] = SideEffectNOpt,
              detector: Optional[Path] = DetectorOpt, binary: bool = BinaryOpt,
              executor: str = typer.Option("local", "--executor",
                                           help="local (this process) | ray (Ray workers, one model copy each; "
                                                "needs Ray: the package's ray extra)"),
              ray_address: Optional[str] = typer.Option(None, "--ray-address",
                                                        help="Ray cluster to join: auto | HOST:6379 (default: "
                                                             "RAY_ADDRESS or a `ray start` cluster on this "
                                                             "machine, else a new local instance)."),
              ray_workers: Optional[int] = typer.Option(None, "--ray-workers",
                                                        help="Ray workers (default: as many as the cluster's "
                                                             "GPUs, or CPUs, allow)."),
              ray_gpus: Optional[float] = typer.Option(None, "--ray-gpus-per-worker",
                                                       help="GPUs per Ray worker, fractions share one (default: 1 "
                                                            "if the cluster has GPUs, else 0 = on CPU)."),
              ray_cpus: float = typer.Option(1.0, "--ray-cpus-per-worker", help="CPUs per Ray worker."),
              out: Path = typer.Option(..., "--out", "-o"), data_dir: Optional[Path] = DataDirOpt,
              revision: str = RevisionOpt, eval_revision: Optional[str] = EvalRevisionOpt,
              device: Optional[str] = typer.Option(None, "--device", help="This process's device (with "
                                                   "--executor ray the workers use their GPU, else the CPU)."),
              overwrite: bool = SweepOverwriteOpt) -> None:
    """Grid of (alpha, K) with k folds; resumable (results.sqlite in the run folder); heatmaps."""
    from ..constraints import parse_numbers
    from ..experiments.executors import ExecutorConfig
    from ..experiments.iti_sweep import SweepConfig, run_iti_sweep

    ExecutorConfig(executor=executor, ray_address=ray_address, ray_workers=ray_workers, ray_gpus_per_worker=ray_gpus,
                   ray_cpus_per_worker=ray_cpus)
    judge = _judge_spec(judge, judge_base_url)
    cfg = SweepConfig(model=model, alphas=tuple(parse_numbers(alphas, float, "--alphas")),
                      num_heads=tuple(parse_numbers(num_heads, int, "--num-heads")), folds=folds, direction=direction,
                      judge=judge, protocol=protocol, metric=metric, sigma_from=sigma_from,
                      contiguous_folds=contiguous_folds, seed=seed, data=data, mc_shift_from=mc_shift_from,
                      reproduce=reproduce, limit=limit, acts=str(acts) if acts else None, ce_texts=ce_texts,
                      gen_positions=gen_positions, revision=revision, eval_revision=eval_revision,
                      data_dir=str(data_dir) if data_dir else None, device=device,
                      detector=str(detector) if detector else None, binary=binary,
                      **_side_effects(side_effects, side_effect_n))
    runner = None  # default: the local executor
    if executor == "ray":
        from ..experiments.executors import RayExecutor

        try:  # before loading anything: a missing Ray fails at once
            runner = RayExecutor(model, workers=ray_workers, gpus_per_worker=ray_gpus, cpus_per_worker=ray_cpus,
                                 address=ray_address)
        except (RuntimeError, ValueError) as e:
            fail(str(e))  # fail() escapes markup itself
    res = run_iti_sweep(cfg, out, executor=runner, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)


def register(app: typer.Typer) -> None:
    app.add_typer(iti_app, name="iti")
