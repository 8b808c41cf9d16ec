"""Truthfulness methods: a prompt x a trainer x a steer, each from its registry, prepared per fold into one
`PreparedMethod` and evaluated with its side effects (the layer between the primitives and the studies)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_METHODS": "prepare", "MethodSettings": "prepare", "MethodSpec": "prepare", "PreparedMethod":
    "prepare", "TrainedCache": "prepare", "check_revision_pair": "prepare", "parse_method": "prepare",
    "prepare_method": "prepare",
    "PROMPTS": "prompts", "Prompt": "prompts", "build_prompt": "prompts", "register_prompt": "prompts",
    "SIDE_EFFECTS": "side_effects", "SideEffect": "side_effects", "register_side_effect": "side_effects",
    "STEERS": "steers", "SteerFamily": "steers", "register_steer": "steers",
    "TRAINERS": "trainers", "Trainer": "trainers", "register_trainer": "trainers",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
