"""Steering: Inference-Time Intervention (ITI) -- fit, apply through hooks, bake, validate, sweep."""

from .apply import POSITIONS, apply, intervention_factory
from .bake import bake, baked_state_dict, verify_baked
from .intervention import Intervention

__all__ = ["Intervention", "POSITIONS", "apply", "bake", "baked_state_dict", "intervention_factory", "verify_baked"]
