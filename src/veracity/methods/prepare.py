"""Truthfulness interventions as composable methods, each prepared on one fold's training questions.

A method name is one to three components joined by "+", each read from its registry:
- a prompt (at most one; default ``baseline``; `methods.prompts`): ``baseline`` (``Q: {q}\\nA:``),
  ``instruction`` (the TruthfulQA instruction, then the plain prompt), ``few-shot`` (the six-pair QA primer,
  then the plain prompt), ``system`` (a truthfulness system prompt through the model's chat template);
- a trainer (at most one; `methods.trainers`): ``lora-sft`` (LoRA SFT on the training questions' best
  answers) or ``dpo`` (LoRA DPO on (best, incorrect) answer pairs, the original model as reference);
- a steer (at most one; `methods.steers`): ``iti`` (ITI fitted on the training questions *of the model it
  steers*: for ``dpo+iti`` the activations are captured from the DPO model), ``caa`` / ``lat``
  (residual-stream steering, `veracity.steer.residual_tqa`, fitted on the same training questions' rows),
  applied through hooks (the `veracity.steer.Steer` protocol).
So ``few-shot+iti``, ``dpo+iti`` and ``instruction+lora-sft`` all parse. Trainers use the method's own
prompt for their training texts, so a model is trained on the prompt it is evaluated with. Every
method leaves the original model untouched (trainers work on copies; steers are hooks).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..constraints import Checked, Instance
from ..finetune.dpo import DPOConfig
from ..finetune.train import TrainConfig
from ..models.loader import LoadedModel
from ..validation import BadInput
from . import options as o
from .prompts import PROMPTS, build_prompt
from .steers import STEERS, setting_params
from .trainers import TRAINERS, train_for_fold

DEFAULT_METHODS = ("baseline", "instruction", "few-shot", "system", "lora-sft", "dpo", "iti", "few-shot+iti", "dpo+iti")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name: which prompt, which trainer and which steering family (or none)."""

    name: str
    prompt: str = "baseline"
    trainer: str | None = None
    steer: str | None = None


def parse_method(name: str) -> MethodSpec:
    """"few-shot+iti" -> MethodSpec(prompt="few-shot", steer="iti"), read from the prompt, trainer and steer
    registries; raises ValueError on unknown parts."""
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    if not parts:
        raise ValueError("empty method name")
    prompts = [p for p in parts if p in PROMPTS]
    trainers = [p for p in parts if p in TRAINERS]
    steers = [p for p in parts if p in STEERS]
    unknown = [p for p in parts if p not in PROMPTS and p not in TRAINERS and p not in STEERS]
    if unknown:
        raise ValueError(f"unknown method component {unknown[0]!r}; prompts: {', '.join(PROMPTS)}; "
                         f"trainers: {', '.join(TRAINERS)}; steering: {', '.join(STEERS)}")
    if len(prompts) > 1 or len(trainers) > 1 or len(steers) > 1 or len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r}: at most one prompt, one trainer and one steering method "
                         f"({', '.join(STEERS)})")
    return MethodSpec("+".join(parts), prompts[0] if prompts else "baseline", trainers[0] if trainers else None,
                      steers[0] if steers else None)


_STEER = setting_params()  # the registered steers' parameters, by the settings field that carries them


@dataclass
class MethodSettings(Checked):
    """Hyper-parameters shared by every fold (small defaults sized for a CPU). The steer fields carry the
    registered steers' parameters (`methods.steers.SteerParam`: their defaults and constraints are declared
    there, once; `SteerFamily.settings` sets them by parameter name); they stay fields here so that the
    settings a comparison recorded read back, and resume, as they were."""

    _constraints = {"sft": [Instance(TrainConfig)], "dpo": [Instance(DPOConfig)], "pairs_per_question": o.COUNT,
                    "generate_positions": o.GEN_POSITIONS, "seed": o.SEED,
                    **{name: list(p.constraints) for name, p in _STEER.items()}}
    _options = {"iti_k": "--num-heads", "iti_alpha": "--alpha", "iti_direction": "--direction",
                "generate_positions": "--gen-positions"}

    sft: TrainConfig = field(default_factory=lambda: TrainConfig(lora=True, lr=2e-4, epochs=1, max_steps=30,
                                                                 batch_size=8, max_length=384))
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(beta=0.1, train=TrainConfig(
        lora=True, lr=2e-4, epochs=1, max_steps=30, batch_size=4, max_length=384)))
    pairs_per_question: int = 3  # DPO: (best, incorrect) pairs per training question (seeded choice)
    iti_k: int = _STEER["iti_k"].default
    iti_alpha: float = _STEER["iti_alpha"].default
    iti_direction: str = _STEER["iti_direction"].default
    residual_layers: tuple[int, ...] | None = _STEER["residual_layers"].default  # None = the middle decoder layer
    residual_alpha: float = _STEER["residual_alpha"].default  # "raw" scaling: 1 adds the class-mean difference
    residual_normalize: str = _STEER["residual_normalize"].default  # raw | sigma | unit (veracity.steer.residual)
    ace_reference: str = _STEER["ace_reference"].default  # ace: false (the other class's mean) | all
    angular_angle: float = _STEER["angular_angle"].default  # angular(-adaptive): theta in degrees from the direction
    cast_steer: str = _STEER["cast_steer"].default  # conditional: the steer applied where the probe fires
    cast_probe: str = _STEER["cast_probe"].default  # conditional: the condition probe (veracity.probes)
    cast_threshold: float = _STEER["cast_threshold"].default  # conditional: fire where P(false) > this
    generate_positions: str = "last"
    seed: int = 0


@dataclass
class PreparedMethod:
    """A method ready to evaluate on one fold: the model to score (the original or a trained merged copy),
    the prompt, the intervention (if any), and what preparing it cost."""

    spec: MethodSpec
    lm: LoadedModel
    intervention: object | None = None  # a veracity.steer.Steer (Intervention, ResidualSteer), or None
    train_seconds: float = 0.0
    iti_seconds: float = 0.0
    train_losses: list[float] = field(default_factory=list)
    generate_positions: str = "last"

    @property
    def trained(self) -> bool:
        """Whether the method trains the model (SFT, DPO): then `lm` is a trained copy and its training cost is
        recorded."""
        return self.spec.trainer is not None

    def prompt(self, question: str) -> tuple[str, str]:
        """(context, answer separator) of `question` under the method's prompt style, in the model's chat template
        where the style uses one."""
        return build_prompt(self.spec.prompt, question, self.lm.tokenizer)

    def factory(self) -> Callable[[str], contextlib.AbstractContextManager] | None:
        """The evaluation driver's phase -> context-manager factory (None without a steer)."""
        if self.intervention is None:
            return None
        return self.intervention.factory(self.lm, self.generate_positions)


@dataclass
class TrainedCache:
    """Trained models of the current run, keyed by (trainer, prompt, fold), so `dpo` and `dpo+iti` on
    one fold share one training run (and its cost is charged to both)."""

    models: dict = field(default_factory=dict)


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
            model, secs, losses = train_for_fold(spec.trainer, spec.prompt, lm, train_items, settings)
            if cache is not None:
                cache.models[key] = (model, secs, losses)
    iv, fit_secs = None, 0.0
    if spec.steer is not None:
        family = STEERS[spec.steer]
        t0 = time.time()
        iv = family.fit(model, [it.index for it in train_items], list(test_questions), settings, data_dir=data_dir,
                        limit=limit, acts=family.store_path(acts, workdir, spec.trainer, spec.prompt, fold),
                        fold=fold, revision=revision)
        fit_secs = time.time() - t0
    return PreparedMethod(spec, model, iv, secs, fit_secs, losses, settings.generate_positions)


def check_revision_pair(revision: str, eval_revision: str | None) -> str:
    """The revision scored on (`eval_revision`, default `revision`), both checked: every study that fits on
    one TruthfulQA revision and may score the other (validate, sweeps, comparisons)."""
    eval_revision = eval_revision or revision
    for flag, rev in (("--revision", revision), ("--eval-revision", eval_revision)):
        if rev not in ("2021", "2025"):
            raise BadInput(f"{flag} must be 2021 or 2025, got {rev!r}")
    return eval_revision
