"""`veracity spec` (acceptance-by-group study) and `veracity finetune` (fine-tuning with milestones)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import DataDirOpt, OverwriteOpt, console, data_dir_path, print_table


def spec(main: str = typer.Option("smollm2", "--main", help="Main (verifying) model."),
         assistant: str = typer.Option("int8", "--assistant",
                                       help="Assistant: 'int8' (int8 dynamically quantised copy of the main model), "
                                            "'int8:MODEL', or any model sharing the tokenizer."),
         prompts: str = typer.Option("honest-binary", "--prompts",
                                     help="honest-binary, honest-queer, or a CSV/TSV/JSONL with prompt and group columns."),
         gamma: int = typer.Option(5, "--gamma", help="Draft tokens per step."),
         batch_size: int = typer.Option(16, "--batch-size"),
         max_new_tokens: int = typer.Option(32, "--max-new-tokens"),
         sample: bool = typer.Option(False, "--sample", help="Speculative sampling instead of greedy."),
         temperature: float = typer.Option(1.0, "--temperature"),
         schedule: str = typer.Option("constant", "--schedule", help="constant or heuristic (reset per prompt)."),
         limit: Optional[int] = typer.Option(None, "--limit", help="Group-balanced seeded subsample of N prompts."),
         seed: int = typer.Option(0, "--seed"),
         threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
         out: Path = typer.Option(Path("runs/spec1"), "--out"),
         data_dir: Optional[Path] = DataDirOpt,
         overwrite: bool = OverwriteOpt) -> None:
    """Speculative decoding per demographic group: acceptance, KL, rejected tokens, toxicity."""
    from ..experiments.spec import SpecConfig, run_spec
    from ..models.loader import LoadConfig

    lc = LoadConfig(threads=threads)
    cfg = SpecConfig(main=main, assistant=assistant, prompts=prompts, gamma=gamma, batch_size=batch_size,
                     max_new_tokens=max_new_tokens, sample=sample, temperature=temperature, schedule=schedule,
                     limit=limit, seed=seed, data_dir=data_dir_path(data_dir))
    lc.set_threads()
    res = run_spec(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    console.print(f"results in {out}")


def finetune_cmd(model: str = typer.Option("smollm2", "--model", "-m", help="Model to fine-tune (a copy)."),
                 data: str = typer.Option("boolq-passages", "--data", help="boolq-passages, a .txt/.jsonl file, hf:NAME."),
                 lora: bool = typer.Option(True, "--lora/--full", help="LoRA adapters (peft) or full fine-tuning."),
                 epochs: int = typer.Option(1, "--epochs"),
                 max_steps: Optional[int] = typer.Option(None, "--max-steps"),
                 lr: float = typer.Option(2e-4, "--lr"),
                 batch_size: int = typer.Option(8, "--batch-size"),
                 max_length: int = typer.Option(128, "--max-length"),
                 lora_r: int = typer.Option(8, "--lora-r"),
                 corpus_limit: Optional[int] = typer.Option(None, "--corpus-limit", help="Use the first N texts."),
                 eval_every: int = typer.Option(50, "--eval-every"),
                 track: List[str] = typer.Option([], "--track", help="kl:OTHER and/or spec:OTHER (repeatable)."),
                 role: str = typer.Option("assistant", "--role", help="Role of the fine-tuned model: assistant or main."),
                 int8: bool = typer.Option(False, "--int8", help="Evaluate the fine-tuned model int8-quantised "
                                                                  "(the default pair's assistant)."),
                 prompts: str = typer.Option("honest-binary", "--prompts"),
                 limit: Optional[int] = typer.Option(None, "--limit", help="Prompts for the milestones (balanced)."),
                 gamma: int = typer.Option(5, "--gamma"),
                 max_new_tokens: int = typer.Option(16, "--max-new-tokens"),
                 seed: int = typer.Option(0, "--seed"),
                 threads: Optional[int] = typer.Option(None, "--threads"),
                 out: Path = typer.Option(Path("runs/ft1"), "--out"),
                 data_dir: Optional[Path] = DataDirOpt,
                 overwrite: bool = OverwriteOpt) -> None:
    """Fine-tune a copy of a model; track KL / acceptance / toxicity against another model at milestones."""
    from ..experiments.finetune_milestones import FinetuneConfig, run_finetune
    from ..finetune import TrainConfig
    from ..models.loader import LoadConfig

    lc = LoadConfig(model=model, threads=threads)
    cfg = FinetuneConfig(model=model, data=data, corpus_limit=corpus_limit, eval_every=eval_every, track=list(track),
                         role=role, int8=int8, prompts=prompts, limit=limit, gamma=gamma,
                         max_new_tokens=max_new_tokens, data_dir=data_dir_path(data_dir),
                         train=TrainConfig(lora=lora, lora_r=lora_r, lr=lr, epochs=epochs, max_steps=max_steps,
                                           batch_size=batch_size, max_length=max_length, seed=seed))
    lc.set_threads()
    res = run_finetune(cfg, out, overwrite=overwrite, log=console.print)
    for table in res.tables():
        print_table(*table)
    console.print(f"results in {out}; merged model in {res.final_checkpoint}")


def register(app: typer.Typer) -> None:
    app.command("spec")(spec)
    app.command("finetune")(finetune_cmd)
