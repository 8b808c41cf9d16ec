"""A small, reusable training loop for causal LMs: LoRA (peft) or full fine-tuning on a text corpus.

The loop (`train_loop`) knows nothing about the objective: it takes batches and a `loss_fn(model, batch)`,
so language-model fine-tuning here and preference losses later (SFT, DPO) share it. The model passed in
is never modified: `finetune` trains a deep copy (with LoRA adapters where asked) and hands it back.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import torch
    from ..models.loader import LoadedModel

from .._lazy import torch_mode
from ..constraints import Boolean, Checked, Count, Interval, ListOf, Seed, Text


@dataclass
class TrainConfig(Checked):
    """The optimiser / LoRA options of one training run (finetune, and the SFT and DPO methods)."""

    _commands = ("finetune",)

    _constraints = {"lora": [Boolean()], "lora_r": [Count()], "lora_alpha": [Count()],
                    "lora_dropout": [Interval(float, 0, 1, closed="left")], "target_modules": [None, ListOf([Text()])],
                    "lr": [Interval(float, 0, None, closed="neither")], "weight_decay": [Interval(float, 0, None)],
                    "epochs": [Count()], "max_steps": [None, Count()], "batch_size": [Count()],
                    "max_length": [Count(2)], "grad_clip": [Interval(float, 0, None, closed="neither")],
                    "seed": [Seed()]}

    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: Sequence[str] | None = None  # None: every attention and MLP projection peft knows
    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    max_length: int = 128
    grad_clip: float = 1.0
    seed: int = 0


@dataclass
class TrainResult:
    """A fine-tuning run's outcome: the trained copy of the model (the original is left untouched), the loss per step
    and the steps taken."""
    model: LoadedModel  # the trained copy (a PeftModel inside when LoRA)
    losses: list[float] = field(default_factory=list)
    steps: int = 0


def load_corpus(spec: str = "boolq-passages", data_dir: str | Path | None = None, limit: int | None = None) -> list[str]:
    """Training texts: `boolq-passages` (BoolQ dev passages, offline), a `.txt` file (one text per non-empty
    line), a `.jsonl` file with a `text` field, or `hf:<dataset>[:<split>[:<column>]]` (online)."""
    if spec == "boolq-passages":
        from ..data import load_boolq

        texts = [b.passage for b in load_boolq(data_dir)]
    elif spec.startswith("hf:"):
        from datasets import load_dataset

        parts = spec[3:].split(":")
        ds = load_dataset(parts[0], split=parts[1] if len(parts) > 1 else "train")
        texts = list(ds[parts[2] if len(parts) > 2 else "text"])
    else:
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"corpus not found: {spec} (use boolq-passages, a .txt/.jsonl file or hf:NAME)")
        if path.suffix == ".jsonl":
            import json

            texts = []
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        texts.append(json.loads(line)["text"])
                    except (json.JSONDecodeError, KeyError) as e:
                        raise ValueError(f"{path}:{n}: expected a JSON object with a 'text' field ({e})") from e
        else:
            texts = [t for t in path.read_text().splitlines() if t.strip()]
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"corpus {spec!r} is empty")
    return texts[:limit] if limit else texts


def lm_batches(tokenizer, texts: Sequence[str], batch_size: int, max_length: int, epochs: int,
               seed: int) -> Iterator[dict]:
    """Shuffled (seeded, per epoch) right-padded batches with labels (-100 on padding)."""
    import torch
    from ..models.padding import pad_token_id
    rng = random.Random(seed)
    pad = pad_token_id(tokenizer)
    for _ in range(epochs):
        order = list(range(len(texts)))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            ids = [tokenizer(texts[i], truncation=True, max_length=max_length)["input_ids"] for i in order[s:s + batch_size]]
            n = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), n), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), n), dtype=torch.long)
            for i, x in enumerate(ids):
                input_ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
            labels = input_ids.masked_fill(mask == 0, -100)
            yield {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def lm_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Mean fp32 next-token cross-entropy over the labelled tokens (`labels` != -100), the head run only where a
    label is read (`models.scoring.labelled_logprobs`); the same number as the model's own `labels=` loss."""
    from ..models.scoring import labelled_logprobs
    lp, _ = labelled_logprobs(model, batch)
    return -lp.mean()


def train_loop(model: torch.nn.Module, batches: Iterable[dict], loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
               optimizer: torch.optim.Optimizer, max_steps: int | None = None, grad_clip: float | None = 1.0,
               callback: Callable[[int, float], None] | None = None) -> list[float]:
    """Generic loop: one optimizer step per batch; `callback(step, loss)` after each step (1-based)."""
    import torch
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    losses: list[float] = []
    try:
        for step, batch in enumerate(batches, 1):
            loss = loss_fn(model, batch)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            losses.append(float(loss.item()))
            if callback is not None:
                model.eval()
                callback(step, losses[-1])
                model.train()
            if max_steps is not None and step >= max_steps:
                break
    finally:
        model.eval()
    return losses


def trainable_copy(lm: LoadedModel, config: TrainConfig) -> LoadedModel:
    """A deep copy ready to train: LoRA adapters on it, or every parameter trainable."""
    from ..models.loader import LoadedModel
    model = copy.deepcopy(lm.model)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model.requires_grad_(False)
        cfg = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                         target_modules=list(config.target_modules) if config.target_modules else _targets(model),
                         task_type="CAUSAL_LM")
        model = get_peft_model(model, cfg)
    else:
        model.requires_grad_(True)
    return LoadedModel(model=model, tokenizer=lm.tokenizer, arch=lm.arch, name=f"{lm.name}-ft", source=lm.source)


def _targets(model: torch.nn.Module) -> list[str]:
    import torch
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    names |= {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Conv1D"}  # gpt2
    names.discard("lm_head")
    return sorted(names)


def finetune(lm: LoadedModel, texts: Sequence[str], config: TrainConfig,
             callback: Callable[[int, float, LoadedModel], None] | None = None) -> TrainResult:
    """Fine-tune a copy of `lm` on `texts`; `callback(step, loss, trained)` runs after every step."""
    import torch
    torch.manual_seed(config.seed)
    trained = trainable_copy(lm, config)
    params = [p for p in trained.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches = lm_batches(lm.tokenizer, texts, config.batch_size, config.max_length, config.epochs, config.seed)
    cb = (lambda s, l: callback(s, l, trained)) if callback else None
    losses = train_loop(trained.model, batches, lm_loss, opt, config.max_steps, config.grad_clip, cb)
    return TrainResult(trained, losses, len(losses))


def merged(lm: LoadedModel) -> LoadedModel:
    """A plain (merged) copy of a LoRA-trained model for inference and saving; a plain copy otherwise."""
    from ..models.arch import ArchSpec
    from ..models.loader import LoadedModel
    model = copy.deepcopy(lm.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=lm.tokenizer, arch=ArchSpec.from_model(model), name=lm.name,
                       source=lm.source)


@torch_mode()
def eval_loss(lm: LoadedModel, texts: Sequence[str], batch_size: int = 8, max_length: int = 128) -> float:
    """Token-weighted mean cross-entropy of `texts`."""
    total, count = 0.0, 0
    for b in lm_batches(lm.tokenizer, texts, batch_size, max_length, 1, 0):
        n = int((b["labels"][:, 1:] != -100).sum())
        total += lm_loss(lm.model, b).item() * n
        count += n
    return total / max(count, 1)
