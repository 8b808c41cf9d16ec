"""The trainer half of a method: how a copy of the model is trained on a fold's training questions
(`register_trainer` adds one). A trainer uses the method's own prompt for its training texts, so a model is
trained on the prompt it is evaluated with; it never modifies the original model."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..evaluate.truthfulqa import close_answer
from ..finetune.dpo import PreferencePair, train_dpo
from ..finetune.sft import SFTExample, train_sft
from ..finetune.train import merged
from ..models.loader import LoadedModel
from .prompts import build_prompt


@dataclass(frozen=True)
class Trainer:
    """name: the method component ("dpo"). train(lm, train_items, prompt style, settings) -> a result with
    `.model` (a trained copy, merged by `train_for_fold`) and `.losses`; `settings` is the run's
    `MethodSettings`."""

    name: str
    train: Callable[..., object]


TRAINERS: dict[str, Trainer] = {}


def register_trainer(trainer: Trainer) -> Trainer:
    """Add a trainer to the registry: `parse_method` accepts its name (and its combinations) from then on."""
    TRAINERS[trainer.name] = trainer
    return trainer


def sft_examples(items: Sequence, style: str, tokenizer=None) -> list[SFTExample]:
    """Each training question's best answer (closed with a period, as the MC references)."""
    out = []
    for it in items:
        ctx, sep = build_prompt(style, it.question, tokenizer)
        out.append(SFTExample(ctx, sep + close_answer(it.best_answer)))
    return out


def preference_pairs(items: Sequence, style: str, tokenizer=None, per_question: int = 3,
                     seed: int = 0) -> list[PreferencePair]:
    """(best answer, incorrect answer) pairs: up to `per_question` incorrect answers per question,
    sampled with a seeded RNG so every method and rerun sees the same pairs."""
    rng = random.Random(seed)
    out = []
    for it in items:
        ctx, sep = build_prompt(style, it.question, tokenizer)
        wrong = [close_answer(a) for a in it.incorrect_answers]
        if per_question and len(wrong) > per_question:
            wrong = rng.sample(wrong, per_question)
        out += [PreferencePair(ctx, sep + close_answer(it.best_answer), sep + w) for w in wrong]
    return out


register_trainer(Trainer("lora-sft", lambda lm, items, style, s: train_sft(
    lm, sft_examples(items, style, lm.tokenizer), s.sft)))
register_trainer(Trainer("dpo", lambda lm, items, style, s: train_dpo(
    lm, preference_pairs(items, style, lm.tokenizer, s.pairs_per_question, s.seed), s.dpo)))


def train_for_fold(trainer: str, style: str, lm: LoadedModel, train_items: Sequence, settings
                   ) -> tuple[LoadedModel, float, list[float]]:
    """(merged trained copy, seconds, losses) of a registered trainer on these training items."""
    if trainer not in TRAINERS:
        raise ValueError(f"unknown trainer {trainer!r}")
    t0 = time.time()
    res = TRAINERS[trainer].train(lm, train_items, style, settings)
    out = merged(res.model)
    out.name = f"{lm.name}+{trainer}"
    return out, time.time() - t0, list(res.losses)
