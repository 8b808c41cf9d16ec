"""`veracity spec` (acceptance-by-group study) and `veracity finetune` (fine-tuning with milestones)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import DataDirOpt, OverwriteOpt, console, data_dir_path, fail, print_table


def _threads(n: Optional[int]) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


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
    from ..compare.quantize import resolve_assistant
    from ..experiments.spec import load_prompts, run_study, write_study
    from ..models import load
    from ..runs import RunExists, RunFolder

    from ..models.loader import check_model_spec
    from ..runs import check_out_folder

    _threads(threads)
    check_model_spec(main)
    check_out_folder(out, "spec", overwrite=overwrite)  # before loading anything
    dd = data_dir_path(data_dir)
    try:
        rows = load_prompts(prompts, dd, limit=limit, seed=seed)
        main_lm = load(main, device="cpu" if assistant.startswith("int8") or assistant.endswith("-int8") else None)
        asst = resolve_assistant(assistant, main_lm)
        cfg = {"model": main_lm.name, "main": main_lm.name, "main_fingerprint": main_lm.fingerprint,
               "assistant": asst.name, "dataset": prompts, "n_prompts": len(rows), "gamma": gamma,
               "batch_size": batch_size, "max_new_tokens": max_new_tokens, "do_sample": sample,
               "temperature": temperature, "schedule": schedule, "limit": limit}
        run = RunFolder(out, "spec", cfg, overwrite=overwrite, seed=seed)
    except (FileNotFoundError, ValueError, RunExists) as e:
        fail(str(e))
    console.print(f"{len(rows)} prompts, main {main_lm.name}, assistant {asst.name}, gamma {gamma}")
    try:
        res = run_study(main_lm, asst, rows, gamma=gamma, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        do_sample=sample, temperature=temperature, schedule=schedule, seed=seed, data_dir=dd)
    except ValueError as e:
        fail(str(e))
    write_study(res, run)
    s = res.summary
    print_table("per group", ["group", "prompts", "accepted/step", "acceptance", "tokens/call", "KL", "1-TV",
                              "rejected ln(q/p)", "HONEST"],
                [[g, v["n_prompts"], v["mean_accepted"], v["acceptance_rate"], v["tokens_per_call"], v["kl_last"],
                  v["one_minus_tv_last"], v["rejected_log_ratio_q_over_p"],
                  res.toxicity.get("per_group", {}).get(g, float("nan"))] for g, v in s["per_group"].items()])
    print_table("group difference (a - b), bootstrap 95% CI, permutation p",
                ["metric", "a", "b", "diff", "CI low", "CI high", "p"],
                [[c["metric"], c["group_a"], c["group_b"], c["difference"], c["ci95"][0], c["ci95"][1],
                  c["p_value"]] for c in s["comparisons"]])
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
    from ..experiments.finetune_milestones import finetune_with_milestones, milestones_json, plot_curves
    from ..experiments.spec import load_prompts
    from ..finetune import TrainConfig, load_corpus
    from ..models import load
    from ..runs import RunExists, RunFolder

    _threads(threads)
    dd = data_dir_path(data_dir)
    kinds, others = set(), set()
    for t in track:
        kind, _, other = t.partition(":")
        if kind not in ("kl", "spec") or not other:
            fail(f"--track expects kl:MODEL or spec:MODEL, got {t!r}")
        kinds.add(kind)
        others.add(other)
    if len(others) > 1:
        fail(f"--track must name one other model, got {sorted(others)}")
    if role not in ("assistant", "main"):
        fail("--role must be assistant or main")
    from ..models.loader import check_model_spec
    from ..runs import check_out_folder

    for m in [model, *others]:
        check_model_spec(m)
    check_out_folder(out, "finetune", overwrite=overwrite)  # before loading anything
    try:
        texts = load_corpus(data, dd, limit=corpus_limit)
        rows = load_prompts(prompts, dd, limit=limit, seed=seed) if kinds else []
        lm = load(model, device="cpu" if int8 else None)
        other = load(others.pop(), device=lm.device.type) if kinds else None
        config = TrainConfig(lora=lora, lora_r=lora_r, lr=lr, epochs=epochs, max_steps=max_steps,
                             batch_size=batch_size, max_length=max_length, seed=seed)
        run = RunFolder(out, "finetune", {"model": lm.name, "dataset": data, "other": other.name if other else None,
                                          "track": sorted(kinds), "role": role, "int8": int8, "prompts": prompts,
                                          "limit": limit, "eval_every": eval_every, "train": config.__dict__},
                        overwrite=overwrite, seed=seed)
    except (FileNotFoundError, ValueError, RunExists) as e:
        fail(str(e))
    res, ms = finetune_with_milestones(lm, other, texts, config, rows, sorted(kinds), eval_every, role, int8, gamma,
                                       max_new_tokens=max_new_tokens, checkpoint_dir=out / "checkpoints",
                                       data_dir=dd, log=lambda m: (run.log(m), console.print(m)))
    run.write_csv("losses.csv", [{"step": i + 1, "loss": l} for i, l in enumerate(res.losses)])
    run.save_figure(plot_curves(ms, res.losses), "curves.png")
    run.finish({"milestones": milestones_json(ms), "losses": res.losses, "steps": res.steps,
                "final_checkpoint": str(out / "checkpoints" / "final")},
               headline={"steps": res.steps, "final_loss": res.losses[-1] if res.losses else None,
                         "final_kl": ms[-1].kl})
    print_table("milestones", ["step", "loss", "KL", "1-TV", "accepted/step", "group diff", "p", "HONEST"],
                [[m.step, m.train_loss if m.train_loss is not None else "-", m.kl, m.one_minus_tv, m.mean_accepted,
                  m.group_difference, m.group_p_value, m.honest] for m in ms])
    console.print(f"results in {out}; merged model in {out / 'checkpoints' / 'final'}")


def register(app: typer.Typer) -> None:
    app.command("spec")(spec)
    app.command("finetune")(finetune_cmd)
