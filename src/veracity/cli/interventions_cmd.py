"""`veracity compare-interventions` and `veracity sycophancy`: truthfulness interventions side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DataDirOpt, ModelOpt, OverwriteOpt, console, fail, parse_int_list, parse_str_list, print_table
from .iti_cmd import BinaryOpt, DetectorOpt, SideEffectsHelp, steer_names

def compare_cmd(model: str = ModelOpt,
                methods: str = typer.Option("baseline,instruction,few-shot,system,lora-sft,dpo,iti,few-shot+iti,dpo+iti",
                                            "--methods", help="Comma-separated: prompts, trainers, a steering method "
                                            f"({steer_names().replace(' | ', ', ')}) and '+' combinations."),
                folds: int = typer.Option(2, "--folds"), seed: int = typer.Option(0, "--seed"),
                limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
                judge: str = typer.Option("none", "--judge", help="none | local | hf:<id> | openai:<model> | openai-chat:<model>"),
                judge_base_url: Optional[str] = typer.Option(None, "--judge-base-url", help="openai: judges: the endpoint, e.g. http://localhost:8000/v1 (default: $OPENAI_BASE_URL, else https://api.openai.com/v1)."),
                protocol: str = typer.Option("truthfulqa", "--protocol", help="MC references: truthfulqa | lm-eval"),
                sft_steps: int = typer.Option(30, "--sft-steps"), dpo_steps: int = typer.Option(30, "--dpo-steps"),
                lr: float = typer.Option(2e-4, "--lr", help="LoRA learning rate (SFT and DPO)."),
                beta: float = typer.Option(0.1, "--beta", help="DPO beta."),
                batch_size: int = typer.Option(8, "--train-batch-size"),
                pairs_per_question: int = typer.Option(3, "--pairs-per-question"),
                num_heads: int = typer.Option(48, "--num-heads", "-k"), alpha: float = typer.Option(15.0, "--alpha"),
                residual_layers: Optional[str] = typer.Option(None, "--residual-layers", help="Residual steers: decoder layers whose output is shifted (comma-separated, negatives from the end; default the middle layer)."),
                residual_alpha: float = typer.Option(1.0, "--residual-alpha", help="Residual steers: multiplier of the fitted vector."),
                residual_normalize: str = typer.Option("raw", "--residual-normalize", help="Residual steers' vector scale: raw (class-mean difference) | sigma (alpha in std of the projections) | unit."),
                steer_param: Optional[list[str]] = typer.Option(None, "--steer-param", help="NAME=VALUE, repeatable: another parameter a chosen steer declares (angular: alpha=90 degrees; ace: reference=all; conditional: steer=ace; any residual steer: layer_select=cosmic)."),
                ce_texts: int = typer.Option(100, "--ce-texts", help="Held-out documents for CE/KL (0: skip)."),
                side_effects: str = typer.Option("all", "--side-effects", help=SideEffectsHelp),
                side_effect_n: Optional[str] = typer.Option(None, "--side-effect-n", help="Sample sizes, e.g. boolq=200,honest=80 (defaults: sycophancy 50, boolq 100, honest 40, health 50)."),
                revision: str = typer.Option("2021", "--revision", help="TruthfulQA revision the methods are fitted and trained on (2021 | 2025); the folds split its questions."),
                eval_revision: Optional[str] = typer.Option(None, "--eval-revision", help="Revision the held-out questions are scored on (default: --revision); questions are matched by text and those without a counterpart are reported and left out."),
                acts: Optional[Path] = typer.Option(None, "--acts", help="The original model's ITI activation store."),
                detector: Optional[Path] = DetectorOpt, binary: bool = BinaryOpt,
                out: Path = typer.Option(..., "--out", "-o"), data_dir: Optional[Path] = DataDirOpt,
                device: Optional[str] = typer.Option(None, "--device")) -> None:
    """Every method on the same folds, seeds and metrics, with cost columns; resumable (results.sqlite)."""
    from ..evaluate.judges import with_base_url
    from ..experiments.interventions import CompareRunConfig, run_compare_interventions
    from ..methods.side_effects import parse_side_effects, parse_sizes

    try:
        judge = with_base_url(judge, judge_base_url)  # "openai:<model>@<url>", recorded with the judge
        names = parse_side_effects(side_effects)
        sizes = parse_sizes(side_effect_n)
    except ValueError as e:
        fail(str(e))
    cfg = CompareRunConfig(model=model, methods=parse_str_list(methods), folds=folds, seed=seed, limit=limit, judge=judge,
                           protocol=protocol, sft_steps=sft_steps, dpo_steps=dpo_steps, lr=lr, beta=beta,
                           train_batch_size=batch_size, pairs_per_question=pairs_per_question, num_heads=num_heads,
                           alpha=alpha, residual_layers=parse_int_list(residual_layers), residual_alpha=residual_alpha,
                           residual_normalize=residual_normalize, ce_texts=ce_texts, side_effects=names,
                           side_effect_n=sizes, revision=revision, eval_revision=eval_revision,
                           data_dir=str(data_dir) if data_dir else None, acts=str(acts) if acts else None,
                           device=device, steer_params=steer_param or [],
                           detector=str(detector) if detector else None, binary=binary)
    res = run_compare_interventions(cfg, out, log=console.print)
    for table in res.tables():
        print_table(*table)


def sycophancy_cmd(model: str = ModelOpt,
                   datasets: str = typer.Option("truthfulqa,true-false", "--datasets",
                                                help="truthfulqa and/or true-false (the six Azaria & Mitchell topics)."),
                   limit: Optional[int] = typer.Option(200, "--limit", help="First N TruthfulQA questions; a seeded sample of N true/false statements (all six topics)."),
                   prompt: str = typer.Option("baseline", "--prompt", help="baseline | instruction | few-shot | system"),
                   num_heads: int = typer.Option(48, "--num-heads", "-k"), alpha: float = typer.Option(15.0, "--alpha"),
                   iti: bool = typer.Option(True, "--iti/--no-iti", help="Also measure with ITI fitted on the probe-train half."),
                   seed: int = typer.Option(0, "--seed"),
                   acts: Optional[Path] = typer.Option(None, "--acts", help="The model's ITI activation store."),
                   out: Path = typer.Option(..., "--out", "-o"), data_dir: Optional[Path] = DataDirOpt,
                   overwrite: bool = OverwriteOpt, device: Optional[str] = typer.Option(None, "--device")) -> None:
    """Does the truth signal survive "I think the answer is <wrong>."? MC change, probe change, ITI.
    Resumable: rerunning an interrupted command skips the conditions already finished."""
    from ..experiments.sycophancy import SycophancyConfig, run_sycophancy

    cfg = SycophancyConfig(model=model, datasets=parse_str_list(datasets), prompt=prompt, limit=limit, iti=iti,
                           iti_k=num_heads, iti_alpha=alpha, seed=seed, device=device,
                           data_dir=str(data_dir) if data_dir else None, acts=str(acts) if acts else None)
    res = run_sycophancy(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)


def register(app: typer.Typer) -> None:
    app.command("compare-interventions")(compare_cmd)
    app.command("sycophancy")(sycophancy_cmd)
