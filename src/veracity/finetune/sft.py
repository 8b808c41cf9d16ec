"""Supervised fine-tuning (LoRA or full) on (prompt, answer) pairs, loss on the answer tokens only.

Used by the intervention comparison as the ITI paper's "SFT" baseline: the training fold's TruthfulQA
questions with their best answers. The prompt tokens are masked (-100) so the model learns to answer,
not to reproduce the primer; the answer boundary is found from the tokenisation (the longest common
prefix of enc(prompt) and enc(prompt + answer)), never a hard-coded count. Reuses `train_loop` and
`trainable_copy`, so the original model is never modified.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from .._lazy import torch_mode
from ..models.loader import LoadedModel
from .train import TrainConfig, TrainResult, lm_loss, train_loop, trainable_copy
from ..models.padding import pad_token_id


@dataclass
class SFTExample:
    """One supervised example: the model sees `prompt + answer` and is trained on the answer."""

    prompt: str
    answer: str


def encode_pair(tokenizer, prompt: str, answer: str, max_length: int) -> tuple[list[int], int]:
    """(ids of prompt + answer, index of the first answer token). Over `max_length` tokens the *left*
    is cut, so the answer survives a long few-shot prompt."""
    p = list(tokenizer(prompt)["input_ids"])
    full = list(tokenizer(prompt + answer)["input_ids"])
    start = 0
    while start < min(len(p), len(full)) and p[start] == full[start]:
        start += 1
    if start >= len(full):
        raise ValueError(f"the answer adds no tokens after its prompt: {answer!r}")
    cut = max(0, len(full) - max_length)
    return full[cut:], max(1, start - cut)  # at least one context token before the first scored one


def pair_batch(tokenizer, prompts: Sequence[str], answers: Sequence[str], max_length: int) -> dict:
    """Right-padded batch with labels = input ids on answer tokens, -100 elsewhere (prompt, padding)."""
    import torch
    pad = pad_token_id(tokenizer)
    enc = [encode_pair(tokenizer, p, a, max_length) for p, a in zip(prompts, answers)]
    n = max(len(ids) for ids, _ in enc)
    input_ids = torch.full((len(enc), n), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), n), dtype=torch.long)
    labels = torch.full((len(enc), n), -100, dtype=torch.long)
    for i, (ids, start) in enumerate(enc):
        t = torch.tensor(ids)
        input_ids[i, :len(ids)] = t
        mask[i, :len(ids)] = 1
        labels[i, start:len(ids)] = t[start:]
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def sft_batches(tokenizer, examples: Sequence[SFTExample], batch_size: int, max_length: int, epochs: int,
                seed: int) -> Iterator[dict]:
    """Seeded shuffle per epoch, `batch_size` examples per batch."""
    rng = random.Random(seed)
    for _ in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for s in range(0, len(order), batch_size):
            chunk = [examples[i] for i in order[s:s + batch_size]]
            yield pair_batch(tokenizer, [e.prompt for e in chunk], [e.answer for e in chunk], max_length)


@torch_mode()
def sft_eval_loss(lm: LoadedModel, examples: Sequence[SFTExample], batch_size: int = 8, max_length: int = 256) -> float:
    """Answer-token-weighted mean cross-entropy (what SFT minimises)."""
    total, count = 0.0, 0
    for b in sft_batches(lm.tokenizer, examples, batch_size, max_length, 1, 0):
        n = int((b["labels"][:, 1:] != -100).sum())
        total += lm_loss(lm.model, b).item() * n
        count += n
    return total / max(count, 1)


def train_sft(lm: LoadedModel, examples: Sequence[SFTExample], config: TrainConfig,
              callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Fine-tune a copy of `lm` on the answers of `examples` (LoRA when `config.lora`)."""
    import torch
    if not examples:
        raise ValueError("SFT needs at least one example")
    torch.manual_seed(config.seed)
    trained = trainable_copy(lm, config)
    params = [p for p in trained.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches = sft_batches(lm.tokenizer, examples, config.batch_size, config.max_length, config.epochs, config.seed)
    losses = train_loop(trained.model, batches, lm_loss, opt, config.max_steps, config.grad_clip, callback)
    return TrainResult(trained, losses, len(losses))
