"""Truthfulness methods: a prompt x a trainer x a steer, each from its registry, prepared per fold into one
`PreparedMethod` and evaluated with its side effects (the layer between the primitives and the studies)."""

from .prepare import (DEFAULT_METHODS, MethodSettings, MethodSpec, PreparedMethod, TrainedCache, check_revision_pair,
                      parse_method, prepare_method)
from .prompts import PROMPTS, Prompt, build_prompt, register_prompt
from .side_effects import SIDE_EFFECTS, SideEffect, register_side_effect
from .steers import STEERS, SteerFamily, register_steer
from .trainers import TRAINERS, Trainer, register_trainer

__all__ = ["DEFAULT_METHODS", "PROMPTS", "SIDE_EFFECTS", "STEERS", "TRAINERS", "MethodSettings", "MethodSpec",
           "PreparedMethod", "Prompt", "SideEffect", "SteerFamily", "TrainedCache", "Trainer", "build_prompt",
           "check_revision_pair", "parse_method", "prepare_method", "register_prompt", "register_side_effect",
           "register_steer", "register_trainer"]
