"""Steering: Inference-Time Intervention (ITI) and residual-stream steering (CAA, LAT) -- fit, apply through
hooks, bake, validate, sweep."""

from .apply import POSITIONS, apply, intervention_factory
from .base import NotBakeable, Steer
from .bake import bake, baked_state_dict, verify_baked
from .intervention import Intervention
from .residual import (ResidualSteer, apply_residual, bake_residual, fit_contrast_pairs, fit_diff_means,
                       fit_lat, verify_residual_baked)

__all__ = ["Intervention", "POSITIONS", "apply", "bake", "baked_state_dict", "intervention_factory", "verify_baked",
           "NotBakeable", "Steer", "ResidualSteer", "apply_residual", "bake_residual", "fit_contrast_pairs", "fit_diff_means",
           "fit_lat", "verify_residual_baked"]
