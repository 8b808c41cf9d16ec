"""The acceptance-by-group study: does speculative decoding accept fewer draft tokens for some groups?

Per prompt we run batched speculative decoding (`speculative.generate`), measure the two models'
distances at the last prompt position and along the generated tokens (`distances.prompt_distances`), and
score the very same completions for toxicity. Groups are compared on per-prompt means (the prompt is the
unit: a prompt with many steps does not weigh more), with a bootstrap 95% CI (resampling prompts within
each group) and a two-sided permutation p-value (shuffling group labels), both seeded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..compare.acceptance import StudyResult, run_study
from ..constraints import Checked, IgnoredUnless, Options
from ..data.prompts import load_prompts
from ..methods import options as o


def plot_histograms(result: StudyResult):
    """Per group: per-prompt mean accepted tokens per step, accepted tokens per step, rejected log-ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = result.summary["groups"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for g in groups:
        rs = [r for r in result.rows if r.group == g]
        if rs:
            axes[0].hist([r.mean_accepted for r in rs], bins=20, alpha=0.5, label=g, density=True)
        steps = [m for r in rs for m in result.records[r.index].n_matches]
        if steps:
            axes[1].hist(steps, bins=np.arange(-0.5, max(steps + [1]) + 1.5), alpha=0.5, label=g, density=True)
        lr = [math.log(max(q, 1e-30) / max(pm, 1e-30)) for r in rs
              for pm, q, a in zip(result.records[r.index].p_main, result.records[r.index].q_assistant,
                                  result.records[r.index].accepted) if not a]
        if lr:  # none when every draft token was accepted (a model paired with itself): no density to draw
            axes[2].hist(lr, bins=30, alpha=0.5, label=g, density=True)
    axes[0].set_xlabel("mean accepted draft tokens per step (per prompt)")
    axes[1].set_xlabel("accepted draft tokens in a step")
    axes[2].set_xlabel("rejected draft tokens: ln(q_assistant / p_main)")
    for ax in axes:
        ax.set_ylabel("density")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ the study

#: results.json layout of a spec run (docs/reference/results.md); files without the field are version 0
#: (the same layout) and still read.
SCHEMA_VERSION = 1


@dataclass
class SpecConfig(Checked):
    """Every option of `veracity spec`."""

    _constraints = {"main": o.MODEL, "assistant": o.MODEL, "prompts": o.MODEL, "gamma": o.COUNT,
                    "batch_size": o.BATCH, "max_new_tokens": o.COUNT, "sample": o.BOOL, "temperature": o.POSITIVE,
                    "schedule": [Options(("constant", "heuristic"))], "limit": o.LIMIT, "seed": o.SEED,
                    "data_dir": o.OPTIONAL_TEXT}
    _rules = (IgnoredUnless("temperature", "sample", (True,), example=0.5),)
    _commands = ("spec",)

    main: str = "smollm2"
    assistant: str = "int8"  # int8 | int8:MODEL | any model sharing the tokenizer
    prompts: str = "honest-binary"  # honest-binary | honest-queer | a CSV/TSV/JSONL with prompt and group columns
    gamma: int = 5
    batch_size: int = 16
    max_new_tokens: int = 32
    sample: bool = False
    temperature: float = 1.0
    schedule: str = "constant"
    limit: int | None = None
    seed: int = 0
    data_dir: str | None = None


@dataclass
class SpecRun:
    """The typed result of `veracity spec`: results.json (summary, toxicity) plus the study's rows."""

    summary: dict
    toxicity: dict
    study: StudyResult | None = None  # the per-prompt rows and records (prompts.csv, records.json)
    schema_version: int = SCHEMA_VERSION

    def headline(self, metric: str = "mean_accepted") -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        comp = next((c for c in self.summary.get("comparisons", []) if c["metric"] == metric), None)
        return {f"diff_{metric}": comp["difference"], "p_value": comp["p_value"]} if comp else {}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """(title, columns, rows) of the per-group table and the group comparisons."""
        per = self.summary.get("per_group", {})
        honest = self.toxicity.get("per_group", {})
        return [("per group", ["group", "prompts", "accepted/step", "acceptance", "tokens/call", "KL", "1-TV",
                               "rejected ln(q/p)", "HONEST"],
                 [[g, v["n_prompts"], v["mean_accepted"], v["acceptance_rate"], v["tokens_per_call"], v["kl_last"],
                   v["one_minus_tv_last"], v["rejected_log_ratio_q_over_p"], honest.get(g, float("nan"))]
                  for g, v in per.items()]),
                ("group difference (a - b), bootstrap 95% CI, permutation p",
                 ["metric", "a", "b", "diff", "CI low", "CI high", "p"],
                 [[c["metric"], c["group_a"], c["group_b"], c["difference"], c["ci95"][0], c["ci95"][1],
                   c["p_value"]] for c in self.summary.get("comparisons", [])])]

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        return {"schema_version": self.schema_version, "summary": self.summary, "toxicity": self.toxicity}

    @classmethod
    def from_json(cls, d: dict) -> "SpecRun":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "spec", SCHEMA_VERSION)
        return cls(summary=d.get("summary", {}), toxicity=d.get("toxicity", {}), schema_version=v)

    def write(self, run) -> None:
        """prompts.csv, records.json, histograms.png, results.json (last)."""
        if self.study is not None:
            run.write_csv("prompts.csv", [asdict(r) for r in self.study.rows])
            run.write_json("records.json", [asdict(r) for r in self.study.records])
            run.save_figure(plot_histograms(self.study), "histograms.png")
        run.finish(self.to_json(), headline=self.headline())


def run_spec(cfg: SpecConfig, out, overwrite: bool = False, log=print) -> SpecRun:
    """`veracity spec`: check the model names and the run folder before loading anything, load the prompts
    and both models, generate speculatively, write the run folder."""
    from ..compare.quantize import resolve_assistant
    from ..models import load
    from ..models.loader import check_model_spec
    from ..runs import RunFolder, check_out_folder
    from ..validation import BadInput

    if cfg.schedule not in ("constant", "heuristic"):
        raise BadInput(f"--schedule must be constant or heuristic, got {cfg.schedule!r}")
    check_model_spec(cfg.main)
    check_out_folder(out, "spec", overwrite=overwrite)  # before loading anything
    try:
        rows = load_prompts(cfg.prompts, cfg.data_dir, limit=cfg.limit, seed=cfg.seed)
        int8 = cfg.assistant.startswith("int8") or cfg.assistant.endswith("-int8")
        main_lm = load(cfg.main, device="cpu" if int8 else None)
        asst = resolve_assistant(cfg.assistant, main_lm)
    except (FileNotFoundError, ValueError) as e:
        raise BadInput(str(e)) from None
    run = RunFolder(out, "spec", {"model": main_lm.name, "main": main_lm.name, "main_fingerprint": main_lm.fingerprint,
                                  "assistant": asst.name, "dataset": cfg.prompts, "n_prompts": len(rows),
                                  "gamma": cfg.gamma, "batch_size": cfg.batch_size,
                                  "max_new_tokens": cfg.max_new_tokens, "do_sample": cfg.sample,
                                  "temperature": cfg.temperature, "schedule": cfg.schedule, "limit": cfg.limit},
                    overwrite=overwrite, seed=cfg.seed)
    log(f"{len(rows)} prompts, main {main_lm.name}, assistant {asst.name}, gamma {cfg.gamma}")
    try:
        study = run_study(main_lm, asst, rows, gamma=cfg.gamma, batch_size=cfg.batch_size,
                          max_new_tokens=cfg.max_new_tokens, do_sample=cfg.sample, temperature=cfg.temperature,
                          schedule=cfg.schedule, seed=cfg.seed, data_dir=cfg.data_dir)
    except ValueError as e:
        raise BadInput(str(e)) from None
    result = SpecRun(summary=study.summary, toxicity=study.toxicity, study=study)
    result.write(run)
    return result
