"""Fine-tuning milestones: how KL, acceptance and toxicity against the other model move during training.

`finetune_with_milestones` fine-tunes a copy of one model (the assistant by default) and, before training,
every `eval_every` steps and at the end, evaluates the trained copy (merged; int8-quantised again when the
pair's assistant is a quantised copy) against the fixed other model on the study prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..finetune import TrainConfig
if TYPE_CHECKING:
    from ..finetune.train import TrainResult
    from ..models.loader import LoadedModel
from ..constraints import Checked, Instance, ListOf, Options, Pattern
from ..methods import options as o
from ..data.prompts import GroupedPrompt, load_prompts


@dataclass
class Milestone:
    """The fine-tuned model measured at one training step against its starting point: loss, KL and total variation,
    per group."""
    step: int
    train_loss: float | None
    kl: float | None = None  # mean over prompts of KL(main || assistant) at the last prompt position
    kl_reverse: float | None = None
    one_minus_tv: float | None = None
    kl_per_group: dict[str, float] = field(default_factory=dict)
    mean_accepted: float | None = None
    acceptance_rate: float | None = None
    mean_accepted_per_group: dict[str, float] = field(default_factory=dict)
    group_difference: float | None = None
    group_p_value: float | None = None
    honest: float | None = None
    honest_per_group: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None


def evaluate_pair(candidate: LoadedModel, other: LoadedModel, prompts: Sequence[GroupedPrompt], track: Sequence[str],
                  role: str = "assistant", gamma: int = 5, batch_size: int = 16, max_new_tokens: int = 16,
                  seed: int = 0, data_dir=None) -> dict:
    """KL ("kl") and speculative acceptance + toxicity ("spec") with `candidate` in `role`."""
    from ..compare.distances import prompt_distances
    from ..compare.acceptance import run_study
    main, asst = (other, candidate) if role == "assistant" else (candidate, other)
    out: dict = {}
    groups = [p.group for p in prompts]
    if "kl" in track:
        d = prompt_distances(main, asst, [p.text for p in prompts], batch_size=batch_size).distances
        kl = d.kl_main_assistant.numpy()
        out.update(kl=float(kl.mean()), kl_reverse=float(d.kl_assistant_main.mean()),
                   one_minus_tv=float(d.one_minus_tv.mean()),
                   kl_per_group={g: float(kl[[x == g for x in groups]].mean()) for g in sorted(set(groups))})
    if "spec" in track:
        res = run_study(main, asst, prompts, gamma=gamma, batch_size=batch_size, max_new_tokens=max_new_tokens,
                        seed=seed, n_boot=500, n_perm=500, data_dir=data_dir)
        s = res.summary
        comp = next((c for c in s["comparisons"] if c["metric"] == "mean_accepted"), None)
        out.update(mean_accepted=float(np.mean([r.mean_accepted for r in res.rows])),
                   acceptance_rate=float(np.mean([r.acceptance_rate for r in res.rows])),
                   mean_accepted_per_group={g: v["mean_accepted"] for g, v in s["per_group"].items()},
                   group_difference=comp["difference"] if comp else None,
                   group_p_value=comp["p_value"] if comp else None,
                   honest=res.toxicity.get("honest"), honest_per_group=res.toxicity.get("per_group", {}))
    return out


def finetune_with_milestones(lm: LoadedModel, other: LoadedModel | None, texts: Sequence[str], config: TrainConfig,
                             prompts: Sequence[GroupedPrompt] = (), track: Sequence[str] = ("kl", "spec"),
                             eval_every: int = 50, role: str = "assistant", int8: bool = False, gamma: int = 5,
                             batch_size: int = 16, max_new_tokens: int = 16, checkpoint_dir: str | Path | None = None,
                             data_dir=None, log=print) -> tuple[TrainResult, list[Milestone]]:
    """Fine-tune a copy of `lm`; evaluate against `other` at step 0, every `eval_every` steps and at the end.
    With `int8`, each evaluated checkpoint is int8-quantised first (the default pair's assistant)."""
    from ..finetune.train import finetune, merged
    from ..compare.quantize import quantized_copy

    milestones: list[Milestone] = []
    ckdir = Path(checkpoint_dir) if checkpoint_dir else None

    def _eval(step: int, loss: float | None, trained: LoadedModel) -> None:
        cand = merged(trained)
        if int8:
            cand = quantized_copy(cand)
        m = Milestone(step=step, train_loss=loss)
        if other is not None and prompts:
            for k, v in evaluate_pair(cand, other, prompts, track, role, gamma, batch_size, max_new_tokens,
                                      config.seed, data_dir).items():
                setattr(m, k, v)
        if ckdir is not None and step > 0:
            p = ckdir / f"step-{step}"
            trained.model.save_pretrained(p)  # LoRA: the adapter only; full: the whole model
            m.checkpoint = str(p)
        milestones.append(m)
        log(f"milestone step {step}: loss={loss} kl={m.kl} mean_accepted={m.mean_accepted} honest={m.honest}")

    _eval(0, None, lm)
    last = {"step": 0}

    def cb(step: int, loss: float, trained: LoadedModel) -> None:
        last["step"] = step
        if eval_every and step % eval_every == 0:
            _eval(step, loss, trained)

    result = finetune(lm, texts, config, callback=cb)
    if result.steps and milestones[-1].step != result.steps:
        _eval(result.steps, result.losses[-1], result.model)
    if ckdir is not None:
        final = merged(result.model)
        final.model.save_pretrained(ckdir / "final")
        lm.tokenizer.save_pretrained(ckdir / "final")
    return result, milestones


def plot_curves(milestones: Sequence[Milestone], losses: Sequence[float] = ()):
    """Training loss, KL / 1-TV, mean accepted tokens per group and HONEST score against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    if losses:
        ax[0].plot(range(1, len(losses) + 1), losses)
    ax[0].set_title("training loss")
    steps = [m.step for m in milestones]
    if any(m.kl is not None for m in milestones):
        ax[1].plot(steps, [m.kl for m in milestones], "o-", label="KL(main||assistant)")
        ax[1].plot(steps, [m.one_minus_tv for m in milestones], "s-", label="1 - TV")
        ax[1].legend()
    ax[1].set_title("distances on the prompts")
    groups = sorted({g for m in milestones for g in m.mean_accepted_per_group})
    for g in groups:
        ax[2].plot(steps, [m.mean_accepted_per_group.get(g) for m in milestones], "o-", label=g)
    if groups:
        ax[2].legend()
    ax[2].set_title("mean accepted tokens per step")
    for g in sorted({g for m in milestones for g in m.honest_per_group}):
        ax[3].plot(steps, [m.honest_per_group.get(g) for m in milestones], "o-", label=g)
    ax[3].set_title("HONEST score")
    for a in ax:
        a.set_xlabel("step")
    fig.tight_layout()
    return fig


def milestones_json(milestones: Sequence[Milestone]) -> list[dict]:
    """The milestones as plain dicts for results.json."""
    return [asdict(m) for m in milestones]


# ------------------------------------------------------------------------------------------ the study

#: results.json layout of a finetune run (docs/reference/results.md); files without the field are version 0
#: (the same layout) and still read.
SCHEMA_VERSION = 1


@dataclass
class FinetuneConfig(Checked):
    """Every option of `veracity finetune` (the optimiser's in `train`)."""

    _constraints = {"model": o.MODEL, "data": o.MODEL, "train": [Instance(TrainConfig)], "corpus_limit": o.LIMIT,
                    "eval_every": o.COUNT,
                    "track": [ListOf([Pattern(r"(kl|spec):\S.*", "kl:MODEL or spec:MODEL", bad=["kl", "nosuch:x"])],
                                  min_len=0)],
                    "role": [Options(("assistant", "main"))], "int8": o.BOOL, "prompts": o.MODEL, "limit": o.LIMIT,
                    "gamma": o.COUNT, "max_new_tokens": o.COUNT, "data_dir": o.OPTIONAL_TEXT}
    _commands = ("finetune",)

    model: str = "smollm2"
    data: str = "boolq-passages"  # boolq-passages | a .txt/.jsonl file | hf:NAME
    train: TrainConfig = field(default_factory=TrainConfig)
    corpus_limit: int | None = None
    eval_every: int = 50
    track: list[str] = field(default_factory=list)  # kl:OTHER and/or spec:OTHER
    role: str = "assistant"
    int8: bool = False
    prompts: str = "honest-binary"
    limit: int | None = None
    gamma: int = 5
    max_new_tokens: int = 16
    data_dir: str | None = None

    def tracked(self) -> tuple[list[str], str | None]:
        """(sorted kinds, the other model) from --track; raises BadInput on a malformed one."""
        from ..validation import BadInput

        kinds, others = set(), set()
        for t in self.track:
            kind, _, other = t.partition(":")
            if kind not in ("kl", "spec") or not other:
                raise BadInput(f"--track expects kl:MODEL or spec:MODEL, got {t!r}")
            kinds.add(kind)
            others.add(other)
        if len(others) > 1:
            raise BadInput(f"--track must name one other model, got {sorted(others)}")
        return sorted(kinds), (others.pop() if others else None)


@dataclass
class FinetuneRun:
    """The typed result of `veracity finetune`: results.json (milestones, losses, steps, the checkpoint)."""

    milestones: list[dict]
    losses: list[float]
    steps: int
    final_checkpoint: str
    schema_version: int = SCHEMA_VERSION

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        return {"steps": self.steps, "final_loss": self.losses[-1] if self.losses else None,
                "final_kl": self.milestones[-1].get("kl") if self.milestones else None}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows)."""
        return [("milestones", ["step", "loss", "KL", "1-TV", "accepted/step", "group diff", "p", "HONEST"],
                [[m["step"], m["train_loss"] if m["train_loss"] is not None else "-", m["kl"], m["one_minus_tv"],
                  m["mean_accepted"], m["group_difference"], m["group_p_value"], m["honest"]]
                 for m in self.milestones])]

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "milestones": self.milestones, "losses": self.losses,
                "steps": self.steps, "final_checkpoint": self.final_checkpoint}

    @classmethod
    def from_json(cls, d: dict) -> "FinetuneRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "finetune", SCHEMA_VERSION)
        return cls(milestones=d.get("milestones", []), losses=d.get("losses", []), steps=d.get("steps", 0),
                   final_checkpoint=d.get("final_checkpoint", ""), schema_version=v)

    def write(self, run) -> None:
        """losses.csv, curves.png, results.json (last)."""
        run.write_csv("losses.csv", [{"step": i + 1, "loss": l} for i, l in enumerate(self.losses)])
        run.save_figure(plot_curves([Milestone(**m) for m in self.milestones], self.losses), "curves.png")
        run.finish(self.to_json(), headline=self.headline())


def run_finetune(cfg: FinetuneConfig, out, *, overwrite: bool = False, log=print) -> FinetuneRun:
    """`veracity finetune`: check every input and the run folder before loading anything, fine-tune a copy
    with milestones, write the run folder (checkpoints/ holds each milestone's and the final merged model)."""
    from ..finetune import load_corpus
    from ..models import load
    from ..models.loader import check_model_spec
    from ..runs import RunFolder, check_out_folder
    from ..validation import BadInput

    kinds, other_name = cfg.tracked()
    if cfg.role not in ("assistant", "main"):
        raise BadInput("--role must be assistant or main")
    for m in [cfg.model] + ([other_name] if other_name else []):
        check_model_spec(m)
    check_out_folder(out, "finetune", overwrite=overwrite)  # before loading anything
    try:
        texts = load_corpus(cfg.data, cfg.data_dir, limit=cfg.corpus_limit)
        rows = load_prompts(cfg.prompts, cfg.data_dir, limit=cfg.limit, seed=cfg.train.seed) if kinds else []
        lm = load(cfg.model, device="cpu" if cfg.int8 else None)
        other = load(other_name, device=lm.device.type) if kinds else None
    except (FileNotFoundError, ValueError) as e:
        raise BadInput(str(e)) from None
    run = RunFolder(out, "finetune", {"model": lm.name, "dataset": cfg.data, "other": other.name if other else None,
                                      "track": kinds, "role": cfg.role, "int8": cfg.int8, "prompts": cfg.prompts,
                                      "limit": cfg.limit, "eval_every": cfg.eval_every, "train": cfg.train.__dict__},
                    overwrite=overwrite, seed=cfg.train.seed)
    ckdir = Path(out) / "checkpoints"
    res, ms = finetune_with_milestones(lm, other, texts, cfg.train, rows, kinds, cfg.eval_every, cfg.role, cfg.int8,
                                       cfg.gamma, max_new_tokens=cfg.max_new_tokens, checkpoint_dir=ckdir,
                                       data_dir=cfg.data_dir, log=lambda m: (run.log(m), log(m)))
    result = FinetuneRun(milestones=milestones_json(ms), losses=list(res.losses), steps=res.steps,
                         final_checkpoint=str(ckdir / "final"))
    result.write(run)
    return result
