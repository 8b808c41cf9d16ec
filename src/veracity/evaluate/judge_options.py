"""The options of `veracity judge train` and `veracity judge eval`, declared as checked Configs
(`veracity.constraints`): a bad kind, fraction or seed stops before any data is read."""

from __future__ import annotations

from dataclasses import dataclass

from ..constraints import Checked, Count, Interval, Parses, Seed, choices_in

_KIND = [choices_in("veracity.evaluate.judges.base", "KINDS", "judge kind")]  # read when checked: no judge import


def _spec(spec) -> None:
    from .judges.registry import JUDGES

    prefix, colon, rest = str(spec).partition(":")
    if spec == "local" or (prefix in JUDGES and colon and rest.strip()):
        return
    raise ValueError(f"use local, local:<folder>, hf:<model id>, openai:<model> or openai-chat:<model>; "
                     f"registered kinds: {', '.join(sorted(JUDGES))}")


@dataclass
class JudgeTrainConfig(Checked):
    """The checked options of `veracity judge train`: which judge (truth or info), the held-out share and the seed."""
    _constraints = {"kind": _KIND, "heldout_frac": [Interval(float, 0, 1, closed="neither")],
                    "seed": [Seed()], "max_train": [None, Count()]}
    _options = {"heldout_frac": "--heldout"}
    _commands = ("judge train",)

    kind: str = "truth"
    heldout_frac: float = 0.2
    seed: int = 0
    max_train: int | None = None


@dataclass
class JudgeEvalConfig(Checked):
    """The checked options of `veracity judge eval`: which judge kind and which judge spec to score with."""
    _constraints = {"kind": _KIND,
                    "judge": [Parses(_spec, "a judge spec", bad=["none", "nosuch", "hf:", ""], example="local")]}
    _commands = ("judge eval",)

    kind: str = "truth"
    judge: str = "local"
