"""`veracity detect` (does the model know when its own answer is wrong? probes on its own generations against
log-prob, P(True), semantic-entropy and text-only baselines) and `veracity detect-score` (a kept detector
scoring a model's new answers)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import ModelOpt, OverwriteOpt, console, parse_int_list, parse_str_list, print_table


def detect_command(
    model: str = ModelOpt,
    data: str = typer.Option("qa", "--data", help="Sources: qa, truthfulqa, triviaqa (the hub), one or two (the first is the study's own; "
                             "a second is tested by transfer)."),
    tables: Optional[str] = typer.Option(None, "--tables", help="Comma-separated QA tables (default: all)."),
    qa_file: Optional[Path] = typer.Option(None, "--qa-file", help='JSON {"questions": [{question, answer, aliases}]} instead of the tables.'),
    n_questions: Optional[int] = typer.Option(None, "--n-questions", help="A seeded draw of this many questions."),
    n_truthfulqa: Optional[int] = typer.Option(None, "--n-truthfulqa", help="A seeded draw of this many TruthfulQA questions."),
    judge: str = typer.Option("local", "--judge", help="Truth judge labelling TruthfulQA answers (local, local:<folder>, hf:..., openai:...)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data folder for TruthfulQA (default: $VERACITY_DATA)."),
    n_samples: int = typer.Option(5, "--n-samples", help="Sampled answers per question (semantic entropy, best-of-N)."),
    seed: int = typer.Option(0, "--seed"),
    temperature: float = typer.Option(1.0, "--temperature"),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens"),
    layers: Optional[str] = typer.Option(None, "--layers", help="'all' or comma-separated (negatives from the end)."),
    positions: str = typer.Option("pre,answer_first,answer_last,after_answer,answer_mean", "--positions"),
    probes: str = typer.Option("logistic,mass-mean,mlp-tiny", "--probes", help="Registered probe methods."),
    splits: str = typer.Option("0.5,0.15,0.15,0.2", "--splits", help="train,validation,control,test fractions."),
    fpr: float = typer.Option(0.01, "--fpr", help="False-positive rate the threshold is set at on control."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the intervals."),
    ensemble_layers: int = typer.Option(3, "--ensemble-layers", help="Layers stacked in the ensemble."),
    p_true: bool = typer.Option(True, "--p-true/--no-p-true", help="Score the P(True) self-evaluation baseline."),
    batch_size: int = typer.Option(16, "--batch-size", "-b"),
    device: Optional[str] = typer.Option(None, "--device"),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (its generation cache makes a rerun resume)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Probes on the model's own answers judged as deployed detectors, against every baseline."""
    from ..constraints import parse_numbers
    from ..experiments.detect import DetectConfig, run_detect

    cfg = DetectConfig(model=model, data=parse_str_list(data), n_truthfulqa=n_truthfulqa, judge=judge,
                       data_dir=str(data_dir) if data_dir else None, tables=parse_str_list(tables) if tables is not None else None,
                       qa_file=str(qa_file) if qa_file else None, n_questions=n_questions, n_samples=n_samples,
                       seed=seed, temperature=temperature, max_new_tokens=max_new_tokens, layers=parse_int_list(layers),
                       positions=parse_str_list(positions), probes=parse_str_list(probes),
                       splits=parse_numbers(splits, float, "--splits"), fpr=fpr, n_boot=n_boot,
                       ensemble_layers=ensemble_layers, p_true=p_true, batch_size=batch_size, device=device)
    res = run_detect(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    for line in res.lines():
        console.print(line)
    console.print(f"done; run folder {out}")


def detect_score_command(
    detector: Path = typer.Option(..., "--detector", help="PATH of PATH.json + PATH.safetensors, or a detect run folder."),
    model: str = ModelOpt,
    tables: Optional[str] = typer.Option(None, "--tables", help="Comma-separated QA tables (default: all)."),
    n_questions: Optional[int] = typer.Option(None, "--n-questions", help="A seeded draw of this many questions."),
    seed: int = typer.Option(0, "--seed"),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens"),
    device: Optional[str] = typer.Option(None, "--device"),
) -> None:
    """Answer questions and print the kept detector's score, P(correct) and flag for every answer."""
    from ..experiments.detect import DetectScoreConfig, score_with_detector

    rows = score_with_detector(DetectScoreConfig(detector=str(detector), model=model,
                                                 tables=parse_str_list(tables) if tables is not None else None,
                                                 n_questions=n_questions, seed=seed, max_new_tokens=max_new_tokens,
                                                 device=device))
    print_table("detector scores (flagged = judged wrong)", ["question", "answer", "correct", "score", "P(correct)",
                                                             "flagged"],
                [[r.question, r.answer, r.correct, r.score, r.p_correct, r.flagged] for r in rows])


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_command)
    app.command("detect-score")(detect_score_command)
