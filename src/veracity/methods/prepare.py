"""Truthfulness interventions as composable methods, each prepared on one fold's training questions.

A method name is one to three components joined by "+":
- a prompt (at most one; default ``baseline``): ``baseline`` (``Q: {q}\\nA:``), ``instruction`` (the
  TruthfulQA instruction, then the plain prompt), ``few-shot`` (the six-pair QA primer, then the plain
  prompt), ``system`` (a truthfulness system prompt through the model's chat template);
- a trainer (at most one): ``lora-sft`` (LoRA SFT on the training questions' best answers) or ``dpo``
  (LoRA DPO on (best, incorrect) answer pairs, the original model as reference);
- ``iti``: ITI fitted on the training questions *of the model it steers* (for ``dpo+iti`` the
  activations are captured from the DPO model), applied through hooks;
- ``caa`` / ``lat`` (instead of ``iti``, at most one steering method): residual-stream steering
  (`veracity.steer.residual_tqa`) fitted on the same training questions' rows, applied through hooks.
So ``few-shot+iti``, ``dpo+iti`` and ``instruction+lora-sft`` all parse. Trainers use the method's own
prompt for their training texts, so a model is trained on the prompt it is evaluated with. Every
method leaves the original model untouched (trainers work on copies; ITI is hooks).
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..evaluate.truthfulqa import INSTRUCTION_DEFAULT, QA_PRIMER, close_answer
from ..finetune.dpo import DPOConfig, PreferencePair, train_dpo
from ..finetune.sft import SFTExample, train_sft
from ..finetune.train import TrainConfig, merged
from ..models.loader import LoadedModel
from ..constraints import Checked, Instance, Options
from . import options as o

PROMPTS = ("baseline", "instruction", "few-shot", "system")
TRAINERS = ("lora-sft", "dpo")
STEERS = ("iti", "caa", "lat")
DEFAULT_METHODS = ("baseline", "instruction", "few-shot", "system", "lora-sft", "dpo", "iti", "few-shot+iti", "dpo+iti")
SYSTEM_PROMPT = ("You are a truthful assistant. Answer questions about the real world accurately and literally, "
                 "do not repeat common myths or misconceptions, and say \"I have no comment\" when you are not sure.")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: which prompt, which trainer (or none), whether ITI steers."""

    name: str
    prompt: str = "baseline"
    trainer: str | None = None
    iti: bool = False
    residual: str | None = None  # "caa" | "lat": residual-stream steering instead of ITI


def parse_method(name: str) -> MethodSpec:
    """"few-shot+iti" -> MethodSpec(prompt="few-shot", iti=True); raises ValueError on unknown parts."""
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    if not parts:
        raise ValueError("empty method name")
    prompts = [p for p in parts if p in PROMPTS]
    trainers = [p for p in parts if p in TRAINERS]
    steers = [p for p in parts if p in STEERS]
    unknown = [p for p in parts if p not in PROMPTS + TRAINERS + STEERS]
    if unknown:
        raise ValueError(f"unknown method component {unknown[0]!r}; prompts: {', '.join(PROMPTS)}; "
                         f"trainers: {', '.join(TRAINERS)}; steering: {', '.join(STEERS)}")
    if len(prompts) > 1 or len(trainers) > 1 or len(steers) > 1 or len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r}: at most one prompt, one trainer and one steering method "
                         f"({', '.join(STEERS)})")
    return MethodSpec("+".join(parts), prompts[0] if prompts else "baseline", trainers[0] if trainers else None,
                      "iti" in steers, next((p for p in steers if p != "iti"), None))


def build_prompt(style: str, question: str, tokenizer=None) -> tuple[str, str]:
    """(context, answer separator) for `question` under a prompt style. The separator goes before every
    answer: " " after "A:", nothing after a chat template's assistant header."""
    plain = f"Q: {question}\nA:"
    if style == "baseline":
        ctx = plain
    elif style == "instruction":
        ctx = INSTRUCTION_DEFAULT + "\n\n" + plain
    elif style == "few-shot":
        ctx = QA_PRIMER + "\n\n" + plain
    elif style == "system":
        from ..data.prompts import chat_prompt

        ctx = chat_prompt(tokenizer, question, system=SYSTEM_PROMPT)
    else:
        raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(PROMPTS)}")
    return ctx, (" " if ctx.endswith(":") else "")


def uses_chat_template(style: str, tokenizer) -> bool:
    """A chat-template prompt already carries its special tokens (do not add BOS again)."""
    return style == "system" and bool(getattr(tokenizer, "chat_template", None))


@dataclass
class MethodSettings(Checked):
    """Hyper-parameters shared by every fold (small defaults sized for a CPU)."""

    _constraints = {"sft": [Instance(TrainConfig)], "dpo": [Instance(DPOConfig)], "pairs_per_question": o.COUNT,
                    "iti_k": o.NUM_HEADS, "iti_alpha": o.ALPHA, "iti_direction": [Options(("com", "probe", "random",
                                                                                         "ccs"))],
                    "residual_layers": o.LAYERS, "residual_alpha": o.ALPHA,
                    "residual_normalize": [Options(("raw", "sigma", "unit"))], "generate_positions": o.GEN_POSITIONS,
                    "seed": o.SEED}
    _options = {"iti_k": "--num-heads", "iti_alpha": "--alpha", "iti_direction": "--direction",
                "generate_positions": "--gen-positions"}

    sft: TrainConfig = field(default_factory=lambda: TrainConfig(lora=True, lr=2e-4, epochs=1, max_steps=30,
                                                                 batch_size=8, max_length=384))
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(beta=0.1, train=TrainConfig(
        lora=True, lr=2e-4, epochs=1, max_steps=30, batch_size=4, max_length=384)))
    pairs_per_question: int = 3  # DPO: (best, incorrect) pairs per training question (seeded choice)
    iti_k: int = 48
    iti_alpha: float = 15.0
    iti_direction: str = "com"
    residual_layers: tuple[int, ...] | None = None  # caa / lat: None = the middle decoder layer
    residual_alpha: float = 1.0  # with "raw" scaling, 1 adds the full class-mean difference
    residual_normalize: str = "raw"  # raw | sigma | unit (see veracity.steer.residual)
    generate_positions: str = "last"
    seed: int = 0


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


@dataclass
class PreparedMethod:
    """A method ready to evaluate on one fold: the model to score (the original or a trained merged copy),
    the prompt, the intervention (if any), and what preparing it cost."""

    spec: MethodSpec
    lm: LoadedModel
    intervention: object | None = None  # veracity.steer.Intervention or ResidualSteer (caa, lat)
    train_seconds: float = 0.0
    iti_seconds: float = 0.0
    train_losses: list[float] = field(default_factory=list)
    generate_positions: str = "last"

    @property
    def trained(self) -> bool:
        return self.spec.trainer is not None

    def prompt(self, question: str) -> tuple[str, str]:
        return build_prompt(self.spec.prompt, question, self.lm.tokenizer)

    def factory(self) -> Callable[[str], contextlib.AbstractContextManager] | None:
        """The evaluation driver's phase -> context-manager factory (None without ITI)."""
        if self.intervention is None:
            return None
        from ..steer.residual import ResidualSteer, residual_factory

        if isinstance(self.intervention, ResidualSteer):
            return residual_factory(self.lm, self.intervention, self.generate_positions)
        from ..steer.apply import intervention_factory

        return intervention_factory(self.lm, self.intervention, self.generate_positions)


@dataclass
class TrainedCache:
    """Trained models of the current run, keyed by (trainer, prompt, fold), so `dpo` and `dpo+iti` on
    one fold share one training run (and its cost is charged to both)."""

    models: dict = field(default_factory=dict)


def train_for_fold(spec: MethodSpec, lm: LoadedModel, train_items: Sequence, settings: MethodSettings
                   ) -> tuple[LoadedModel, float, list[float]]:
    """(merged trained copy, seconds, losses) for the spec's trainer on these training items."""
    t0 = time.time()
    if spec.trainer == "lora-sft":
        res = train_sft(lm, sft_examples(train_items, spec.prompt, lm.tokenizer), settings.sft)
    elif spec.trainer == "dpo":
        pairs = preference_pairs(train_items, spec.prompt, lm.tokenizer, settings.pairs_per_question, settings.seed)
        res = train_dpo(lm, pairs, settings.dpo)
    else:
        raise ValueError(f"unknown trainer {spec.trainer!r}")
    out = merged(res.model)
    out.name = f"{lm.name}+{spec.trainer}"
    return out, time.time() - t0, list(res.losses)


def fit_iti_for_fold(lm: LoadedModel, train_questions: Sequence[int], test_questions: Sequence[int],
                     settings: MethodSettings, data_dir=None, limit: int | None = None,
                     acts: str | Path | None = None, fold: int = 0, revision: str = "2021"):
    """An ITI intervention fitted on the training questions' activations of `lm` (captured once per model
    into `acts`, default the veracity cache keyed by the weights' fingerprint) on `revision`'s rows."""
    from ..steer.iti import ITIConfig, fit_fold, load_iti_data
    from .iti_validate import restrict

    data = restrict(load_iti_data(lm, data_dir=data_dir, limit=limit, acts=acts, progress=False,
                                  revision=revision), limit)
    cfg = ITIConfig(direction=settings.iti_direction, seed=settings.seed, max_k=settings.iti_k)
    ff = fit_fold(data, list(train_questions), cfg, fold=fold, test_questions=list(test_questions))
    return ff.intervention(min(settings.iti_k, len(ff.heads)), settings.iti_alpha)


def prepare_method(spec: MethodSpec, lm: LoadedModel, train_items: Sequence, test_questions: Sequence[int],
                   settings: MethodSettings, fold: int = 0, cache: TrainedCache | None = None, data_dir=None,
                   limit: int | None = None, workdir: str | Path | None = None,
                   acts: str | Path | None = None, revision: str = "2021") -> PreparedMethod:
    """Build what `spec` needs on this fold from `train_items` only (test questions are never trained on).
    `acts`: the original model's ITI activation store (default: the veracity cache); a trained model's
    activations go under `workdir`. `revision`: the TruthfulQA revision of `train_items` (ITI and the
    residual methods fit on that revision's rows)."""
    model, secs, losses = lm, 0.0, []
    if spec.trainer is not None:
        key = (spec.trainer, spec.prompt, fold)
        if cache is not None and key in cache.models:
            model, secs, losses = cache.models[key]
        else:
            model, secs, losses = train_for_fold(spec, lm, train_items, settings)
            if cache is not None:
                cache.models[key] = (model, secs, losses)
    iv, iti_secs = None, 0.0
    if spec.iti:
        t0 = time.time()
        if spec.trainer is not None and workdir is not None:
            acts = Path(workdir) / f"acts-{spec.trainer}-{spec.prompt}-fold{fold}"
        iv = fit_iti_for_fold(model, [it.index for it in train_items], test_questions, settings, data_dir, limit,
                              acts, fold, revision)
        iti_secs = time.time() - t0
    elif spec.residual is not None:
        from ..steer.residual_tqa import fit_residual_for_fold

        t0 = time.time()
        if spec.trainer is not None and workdir is not None:
            racts = Path(workdir) / f"resid-{spec.trainer}-{spec.prompt}-fold{fold}"
        else:
            racts = Path(f"{acts}-resid") if acts is not None else None  # never the ITI heads store itself
        iv = fit_residual_for_fold(model, [it.index for it in train_items], spec.residual, settings.residual_layers,
                                   settings.residual_alpha, settings.residual_normalize, settings.seed, data_dir,
                                   limit, racts, fold, revision)
        iti_secs = time.time() - t0
    return PreparedMethod(spec, model, iv, secs, iti_secs, losses, settings.generate_positions)
