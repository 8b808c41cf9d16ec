"""`veracity compare-interventions` and `veracity sycophancy`: truthfulness interventions side by side."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from .common import (DataDirOpt, ModelOpt, OverwriteOpt, check_model_options, check_question_count, console, fail,
                     parse_int_list, parse_str_list, print_table)

_COLS = [("MC1", "mc1"), ("MC2", "mc2"), ("True", "true"), ("Info", "info"), ("True*Info", "true_info"),
         ("CE Loss", "ce_loss"), ("KL wrt Orig", "kl"), ("train s", "train_s"), ("ITI fit s", "iti_fit_s"),
         ("infer s", "infer_s"), ("extra infer s", "extra_infer_s"), ("prompt tok", "prompt_tokens")]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (f"{v:.1f}" if isinstance(v, float) else str(v))


def _load(model: str, device: Optional[str]):
    from ..models import ModelNotAvailable, load

    try:
        lm = load(model, device=device)
    except ModelNotAvailable as e:
        fail(str(e))
    check_model_options(lm)  # --num-heads against the model's heads, before any work
    return lm


def _items(data_dir, limit):
    from ..data import DataError, load_truthfulqa

    try:
        items = load_truthfulqa(data_dir)
    except DataError as e:
        fail(str(e))
    items = items[:limit] if limit else items
    check_question_count(len(items))  # --folds (where the command has it)
    return items


def compare_cmd(model: str = ModelOpt,
                methods: str = typer.Option("baseline,instruction,few-shot,system,lora-sft,dpo,iti,few-shot+iti,dpo+iti",
                                            "--methods", help="Comma-separated: prompts, trainers, a steering method (iti, caa, lat) and '+' combinations."),
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
                residual_layers: Optional[str] = typer.Option(None, "--residual-layers", help="caa/lat: decoder layers whose output is shifted (comma-separated, negatives from the end; default the middle layer)."),
                residual_alpha: float = typer.Option(1.0, "--residual-alpha", help="caa/lat: multiplier of the fitted vector."),
                residual_normalize: str = typer.Option("raw", "--residual-normalize", help="caa/lat vector scale: raw (class-mean difference) | sigma (alpha in std of the projections) | unit."),
                ce_texts: int = typer.Option(100, "--ce-texts", help="Held-out documents for CE/KL (0: skip)."),
                acts: Optional[Path] = typer.Option(None, "--acts", help="The original model's ITI activation store."),
                out: Path = typer.Option(..., "--out", "-o"), data_dir: Optional[Path] = DataDirOpt,
                device: Optional[str] = typer.Option(None, "--device")) -> None:
    """Every method on the same folds, seeds and metrics, with cost columns; resumable (results.sqlite)."""
    from ..experiments.interventions import (CompareConfig, per_question_rows, plot_comparison,
                                                  run_comparison)
    from ..evaluate.judges import with_base_url
    from ..finetune import TrainConfig
    from ..finetune.dpo import DPOConfig
    from ..runs import RunFolder
    from ..experiments.intervention_methods import MethodSettings, parse_method

    names = parse_str_list(methods)
    from ..steer.residual import NORMALIZE

    if residual_normalize not in NORMALIZE:
        fail(f"--residual-normalize must be one of {', '.join(NORMALIZE)}")
    res_layers = parse_int_list(residual_layers)
    try:
        names = [parse_method(m).name for m in names]
        judge = with_base_url(judge, judge_base_url)  # "openai:<model>@<url>", recorded with the judge
    except ValueError as e:
        fail(str(e))
    settings = MethodSettings(
        sft=TrainConfig(lora=True, lr=lr, max_steps=sft_steps, batch_size=batch_size, max_length=384, seed=seed),
        dpo=DPOConfig(beta=beta, train=TrainConfig(lora=True, lr=lr, max_steps=dpo_steps,
                                                   batch_size=max(1, batch_size // 2), max_length=384, seed=seed)),
        pairs_per_question=pairs_per_question, iti_k=num_heads, iti_alpha=alpha, seed=seed,
        residual_layers=tuple(res_layers) if res_layers else None, residual_alpha=residual_alpha,
        residual_normalize=residual_normalize)
    cfg = CompareConfig(methods=names, n_folds=folds, seed=seed, protocol=protocol, judge=judge, ce_texts=ce_texts,
                        limit=limit, settings=settings)
    run = RunFolder(out, "compare-interventions", {"model": model, "data": "truthfulqa", "methods": names,
                                                   "folds": folds, "limit": limit, "judge": judge,
                                                   "protocol": protocol, "settings": settings}, resume=True, seed=seed,
                    defer=True)  # checked now, created once the inputs are
    lm = _load(model, device)
    items = _items(data_dir, limit)

    def log(msg: str) -> None:
        console.print(msg)
        run.log(msg)

    run.start()
    try:
        res = run_comparison(lm, items, cfg, run.path, data_dir=data_dir, log=log, acts=acts)
    except (RuntimeError, ValueError) as e:
        fail(str(e))
    cols = [(c, k) for c, k in _COLS if any(r.get(k) is not None for r in res.rows)]
    print_table(f"interventions on {model} ({folds} folds, {len(items)} questions, fold means)",
                ["method"] + [c for c, _ in cols], [[r["method"]] + [_fmt(r.get(k)) for _, k in cols] for r in res.rows])
    run.write_csv("comparison.csv", res.rows)
    run.write_csv("folds.csv", res.folds)
    run.write_csv("per_question.csv", per_question_rows(run.path, names, folds))
    png = plot_comparison(res, run.path / "comparison.png")
    best = max(res.rows, key=lambda r: r.get("mc2", -1)) if res.rows else None
    run.finish({"config": cfg, "methods": res.rows, "folds": res.folds,
                "summary": {r["method"]: {k: r.get(k) for k in ("mc1", "mc2", "ce_loss", "kl", "true", "info",
                                                                  "true_info") if k in r} for r in res.rows},
                "plots": [png.name] if png else []},
               headline={"best_by_mc2": best["method"], "mc2": best["mc2"]} if best else {})


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
    from ..runs import RunExists, RunFolder
    from ..experiments.sycophancy import SycophancyConfig, run_sycophancy

    sets = parse_str_list(datasets)
    bad = [d for d in sets if d not in ("truthfulqa", "true-false")]
    if bad:
        fail(f"unknown data set {bad[0]!r}; use truthfulqa and/or true-false")
    cfg = SycophancyConfig(prompt=prompt, limit=limit, iti=iti, iti_k=num_heads, iti_alpha=alpha, seed=seed)
    try:
        run = RunFolder(out, "sycophancy", {"model": model, "data": sets, "config": cfg}, overwrite=overwrite, seed=seed,
                        defer=True)
    except RunExists as e:
        fail(str(e))
    lm = _load(model, device)
    try:
        res = run_sycophancy(lm, sets, cfg, data_dir=data_dir, acts=acts, log=lambda m: (console.print(m), run.log(m)),
                             checkpoint=run.file("progress.json"))
    except (RuntimeError, ValueError) as e:
        fail(str(e))
    keys = [k for k in res.columns if any(k in r for r in res.rows)]
    print_table(f"sycophancy on {model} (opinion = an incorrect answer)", keys,
                [[_fmt(r.get(k)) if not isinstance(r.get(k), str) else r[k] for k in keys] for r in res.rows])
    run.write_csv("sycophancy.csv", res.rows)
    run.write_csv("per_item.csv", res.per_item)
    run.finish({"config": cfg, "rows": res.rows, "best_layers": res.best_layers},
               headline={f"{r['dataset']}:{r['condition']}:mc_acc": r.get("mc_acc") for r in res.rows})


def register(app: typer.Typer) -> None:
    app.command("compare-interventions")(compare_cmd)
    app.command("sycophancy")(sycophancy_cmd)
