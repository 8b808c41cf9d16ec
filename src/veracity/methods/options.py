"""The constraints the studies' Configs share (`veracity.constraints`), declared once: a model name, a judge
spec, the MC protocols, TruthfulQA revisions, side effects and their sample sizes, metrics, data folders.
Registry-backed ones read their registry when checked, so a registered plugin is accepted everywhere."""

from __future__ import annotations

from ..constraints import (AnyOf, Boolean, Constraint, Count, Device, Interval, ListOf, MappingOf, Parses,
                           Registered, Seed, Text, choices_in)
from ..steer import options as steer_options


def _metric_names():
    """What a sweep can rank by: the registered metrics with a direction that a fold evaluation measures
    (`metrics.rankable_metrics`, `metrics.FOLD_GROUPS`)."""
    from ..metrics import FOLD_GROUPS, rankable_metrics

    return rankable_metrics(FOLD_GROUPS)


def _side_effect_names():
    from .side_effects import SIDE_EFFECTS

    return SIDE_EFFECTS


def _prompt_names():
    from .prompts import PROMPTS

    return PROMPTS


def _steer_names():
    from .steers import STEERS

    return STEERS


def _revisions():
    from ..data.truthfulqa import REVISIONS

    return REVISIONS


def _parse_judge(spec) -> None:
    """none | local | <registered kind>:<name>[@url] (what `evaluate.judges.get_judge` accepts; the URL and
    the judge itself are checked when it is built)."""
    from ..evaluate.judges.registry import JUDGES

    if not isinstance(spec, str):
        raise ValueError("not a text")
    prefix, colon, rest = spec.partition(":")
    if spec in ("none", "local") or (prefix in JUDGES and colon and rest.strip()):
        return
    raise ValueError(f"use none, local, local:<folder>, hf:<model id>, openai:<model> or openai-chat:<model>"
                     f"; registered kinds: {', '.join(sorted(JUDGES))}")


class JudgeObject(Constraint):
    """A judge given as an object (library use): a `Judge` or a callable(questions, answers) -> scores."""

    def ok(self, value) -> bool:
        from ..evaluate.judges import Judge

        return isinstance(value, Judge) or (callable(value) and not isinstance(value, type))

    def describe(self) -> str:
        return "be a Judge or a callable"

    def bad_values(self) -> list:
        return [3]

    def example(self):
        return None


def _protocols():
    from ..evaluate.truthfulqa import PROTOCOLS

    return PROTOCOLS


MODEL = [Text()]
OPTIONAL_TEXT = [None, Text()]  # a folder or file read later (data, acts), or a name with a default
DEVICE = [None, Device()]
DEVICE_MAP = [None, choices_in("veracity.models.loader", "DEVICE_MAPS", "device map")]
MODEL_DTYPE = [choices_in("veracity.models.loader", "DTYPES", "dtype")]
SEED = [Seed()]
OPTIONAL_SEED = [None, Seed()]
LIMIT = [None, Count(msg="be a positive number of items (leave it out for all)")]
FOLDS = [Count(2)]
NUM_HEADS = [Count()]
ALPHA = [Interval(float, None, None, msg="be a finite number")]
ALPHAS = [ListOf(ALPHA)]
POSITIVE = [Interval(float, 0, None, closed="neither")]
FRACTION = [Interval(float, 0, 1, closed="neither")]
COUNT = [Count()]
COUNT0 = [Count(0)]  # 0 = skip (--ce-texts 0)
BOOL = [Boolean()]
JUDGE = [AnyOf(Parses(_parse_judge, "a judge spec", bad=["nosuch", "hf:", "openai:", ""], example="none"),
               JudgeObject())]
PROTOCOL = [Registered(_protocols, "protocol")]
NORMALIZE = steer_options.NORMALIZE  # a residual steer's scale
MC_SHIFT_FROM = [choices_in("veracity.steer.apply", "MC_SHIFT_FROM")]  # where an MC steer starts shifting
GEN_STYLE = [choices_in("veracity.evaluate.generation", "STYLES", "generation style")]
REVISION = [Registered(_revisions, "TruthfulQA revision")]
OPTIONAL_REVISION = [None, Registered(_revisions, "TruthfulQA revision")]
METRIC = [Registered(_metric_names, "metric", "a metric with a better direction")]
SIDE_EFFECTS = [ListOf([Registered(_side_effect_names, "side effect")], min_len=0, unique=True)]
SIDE_EFFECT_N = [MappingOf([Registered(_side_effect_names, "side effect")], [Count()])]
PROMPT = [Registered(_prompt_names, "prompt")]
STEER = [Registered(_steer_names, "steering method")]
GEN_POSITIONS = [choices_in("veracity.steer.apply", "GENERATE_POSITIONS", "positions choice")]
LAYERS = [None, ListOf([Interval(int, None, None)])]  # indices checked against the model once it is loaded
BATCH = [Count()]
