"""`veracity eval truthfulqa`, `veracity judge train`, `veracity judge eval`: thin wrappers over
`veracity.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import (DataDirOpt, DeviceMapOpt, ModelDtypeOpt, ModelOpt, OverwriteOpt, console, fail, parse_str_list,
                     print_table)

eval_app = typer.Typer(help="Evaluate models (TruthfulQA MC, CE/KL, generation + judges).", no_args_is_help=True)
judge_app = typer.Typer(help="Train and check the local truth/info judges.", no_args_is_help=True)
JudgeBaseUrlOpt = typer.Option(None, "--judge-base-url", help="openai: judges: an OpenAI-compatible endpoint, e.g. "
                               "http://localhost:8000/v1 for vLLM (default: $OPENAI_BASE_URL, else "
                               "https://api.openai.com/v1; key from $OPENAI_API_KEY).")


@eval_app.command("truthfulqa")
def eval_truthfulqa(
    model: str = ModelOpt,
    protocol: str = typer.Option("truthfulqa", "--protocol", help="MC protocol: truthfulqa (original repo, ITI), "
                                 "lm-eval (lm-evaluation-harness) or binary (best vs best incorrect answer: "
                                 "log-likelihood in both contexts, and an A/B question in both orders)."),
    revision: str = typer.Option("2021", "--revision", help="TruthfulQA revision: 2021 (817 questions, "
                                 "mc_task_v0.json targets) or 2025 (790 questions, Best Incorrect Answer)."),
    metrics: str = typer.Option("mc,ce,kl,judge", "--metrics", help="Comma-separated: mc, ce, kl, judge."),
    judge: str = typer.Option("local", "--judge", help="none | local | local:<folder> | hf:<model id> | "
                              "openai:<model> (completions endpoint) | openai-chat:<model> (chat endpoint); {kind} in a "
                              "model name becomes truth / info."),
    judge_dir: Optional[Path] = typer.Option(None, "--judge-dir", help="Folder of `veracity judge train` "
                                             "(default: the veracity cache)."),
    judge_base_url: Optional[str] = JudgeBaseUrlOpt,
    folds: int = typer.Option(2, "--folds"),
    seed: int = typer.Option(0, "--seed"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N questions."),
    instruction: str = typer.Option("default", "--instruction", help="default | informative | none."),
    gen_style: str = typer.Option("original", "--gen-style", help="original (instruction + primer) | chat."),
    max_new_tokens: int = typer.Option(50, "--max-new-tokens"),
    lm_source: str = typer.Option("boolq", "--lm-text", help="CE/KL text: boolq | a text file | hf:<dataset>."),
    n_docs: int = typer.Option(100, "--lm-docs"),
    max_tokens: int = typer.Option(128, "--lm-tokens"),
    batch_size: str = typer.Option("16", "--batch-size", "-b", help="Answers per forward (MC) / prompts per "
                                   "generate(), or 'auto' (128 on CUDA, 16 on CPU); either way halved on "
                                   "out-of-memory and the size that worked kept."),
    device: Optional[str] = typer.Option(None, "--device"),
    model_dtype: str = ModelDtypeOpt,
    device_map: Optional[str] = DeviceMapOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    data_dir: Optional[Path] = DataDirOpt,
    overwrite: bool = OverwriteOpt,
) -> None:
    """TruthfulQA: MC1/MC2, CE loss, KL wrt the original model, generation + truth/info judges, per fold."""
    from ..evaluate.judges import with_base_url
    from ..experiments.truthfulqa import EvalConfig, run_eval, summary_line
    from ..models.loader import LoadConfig

    LoadConfig(model=model, model_dtype=model_dtype, device=device, device_map=device_map)
    try:
        judge = with_base_url(judge, judge_base_url)  # recorded in config.json with the judge
    except ValueError as e:
        fail(str(e))
    cfg = EvalConfig(model=model, protocol=protocol, metrics=parse_str_list(metrics), judge=judge, folds=folds,
                     seed=seed, limit=limit, instruction=instruction, gen_style=gen_style,
                     max_new_tokens=max_new_tokens, lm_source=lm_source, n_docs=n_docs, max_tokens=max_tokens,
                     batch_size=batch_size, revision=revision, model_dtype=model_dtype)
    res = run_eval(cfg, out, overwrite=overwrite, judge_dir=judge_dir, data_dir=data_dir, device=device,
                   device_map=device_map, log=lambda m: console.print(f"[dim]{m}[/dim]"))
    for table in res.tables():
        print_table(*table)
    console.print(summary_line(res.summary))
    console.print(f"results: {out}/results.json")


@judge_app.command("train")
def judge_train(
    kind: str = typer.Option(..., "--kind", help="truth | info"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Judges folder (default: the veracity cache); "
                                       "the judge goes to OUT/<kind>."),
    heldout_frac: float = typer.Option(0.2, "--heldout", help="Fraction of QUESTIONS held out."),
    seed: int = typer.Option(0, "--seed"),
    max_train: Optional[int] = typer.Option(None, "--max-train", help="Subsample training rows (seeded)."),
    data_dir: Optional[Path] = DataDirOpt,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier judge of this kind."),
) -> None:
    """Train a local judge on finetune_{truth,info}.jsonl, split disjoint by question."""
    from ..evaluate import default_judge_dir, train_local_judge
    from ..evaluate.judge_options import JudgeTrainConfig
    from ..outputs import claim_output

    cfg = JudgeTrainConfig(kind=kind, heldout_frac=heldout_frac, seed=seed, max_train=max_train)
    root = Path(out) if out is not None else default_judge_dir()
    claim_output(root, "judges", overwrite=True)  # a folder of judges (never replaced itself), or new, or empty
    claim_output(root / kind, "judge", overwrite=overwrite)  # before training; checked again when written
    j = train_local_judge(cfg.kind, data_dir, heldout_frac=cfg.heldout_frac, seed=cfg.seed, max_train=cfg.max_train)
    folder = j.save(root / kind, overwrite=overwrite)
    r = j.report
    print_table(f"local {kind} judge -> {folder}", ["key", "value"], [
        ["held-out accuracy", f"{100 * r.heldout_accuracy:.2f}%"],
        ["majority baseline", f"{100 * r.heldout_majority_baseline:.2f}%"],
        ["train rows / questions", f"{r.n_train} / {r.n_train_questions}"],
        ["held-out rows / questions", f"{r.n_heldout} / {r.n_heldout_questions}"],
        ["C (validation)", f"{r.C} {r.validation_accuracy}"], ["seconds", f"{r.train_seconds:.1f}"]]
        + ([["held-out accuracy without the degeneration cap", f"{100 * r.heldout_accuracy_without_cap:.2f}%"]]
           if r.heldout_accuracy_without_cap is not None else [])
        + ([["synthetic degenerate answers rated negative",
             f"{100 * r.degenerate['rated_negative']:.2f}% of {r.degenerate['n']} "
             + " ".join(f"{k} {100 * v:.1f}%" for k, v in r.degenerate.get("per_kind", {}).items())]]
           if r.degenerate and r.degenerate.get("n") else []))


@judge_app.command("eval")
def judge_eval(
    kind: str = typer.Option(..., "--kind", help="truth | info"),
    judge: str = typer.Option("local", "--judge", help="local | local:<folder> | hf:<model id> | openai:<model> | "
                              "openai-chat:<model>."),
    judge_dir: Optional[Path] = typer.Option(None, "--judge-dir"),
    judge_base_url: Optional[str] = JudgeBaseUrlOpt,
    data_dir: Optional[Path] = DataDirOpt,
) -> None:
    """Accuracy of a judge against the human labels (a local judge: on its held-out questions)."""
    from ..evaluate import evaluate_judge, get_judge
    from ..evaluate.judge_options import JudgeEvalConfig
    from ..evaluate.judges import JudgeError

    JudgeEvalConfig(kind=kind, judge=judge)
    try:
        j = get_judge(judge, kind, judge_dir, base_url=judge_base_url)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    rows = []
    stored = getattr(j, "report", None)
    if stored is not None:
        rows.append(["stored held-out accuracy", f"{100 * stored.heldout_accuracy:.2f}%"])
    try:
        r = evaluate_judge(j, data_dir)
    except JudgeError as e:
        fail(str(e))
    rows += [["recomputed accuracy", f"{100 * r['accuracy']:.2f}% on {r['n']} answers"],
             ["true positive rate", f"{100 * (r['true_positive_rate'] or 0):.2f}%"],
             ["true negative rate", f"{100 * (r['true_negative_rate'] or 0):.2f}%"]]
    d = r.get("degenerate")
    if d and d.get("n"):
        rows.append(["synthetic degenerate answers rated negative",
                     f"{100 * d['rated_negative']:.2f}% of {d['n']} "
                     + " ".join(f"{k} {100 * v:.1f}%" for k, v in d["per_kind"].items())])
    print_table(f"{kind} judge {j.describe().get('path') or j.name}", ["key", "value"], rows)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.add_typer(judge_app, name="judge")
