"""Probes: where and how does a model represent truth?

Batched torch estimators with the scikit-learn contract (one fit trains a probe per layer or per
(layer, head)), split builders, the registry of probe methods and the geometry of learned directions (the probe
experiments live in `veracity.experiments.probe` and `veracity.experiments.ccs`).
ITI and other steering code call `head_accuracy_matrix` for per-head probes.
"""

from .base import BatchedProbe, accuracy_per_group
from .ccs import CCSProbe, ccs_loss
from .heads import HeadProbes, head_accuracy_matrix
from .geometry import (GeometryResult, chance_levels, compare_directions, cosine_matrix, probe_direction,
                       sign_agreement_matrix)
from .logistic import LogisticProbe
from .mass_mean import MassMeanProbe
from .mlp import MLP_SIZES, MLPProbe
from .random import RandomProbe
from .registry import (DETERMINISTIC, METHODS, POLARITY_METHODS, PROBES, ProbeSpec, make_probe, register_probe,
                       site_matrix)
from .sanity import DistractorResult, PolarityScore, add_distractor, ccs_distractor_test, polarity_split
from .ttpd import TTPDProbe
from .splits import (SPLIT_KINDS, SeedStats, Split, aggregate, kfold_splits, leave_one_group_out, make_splits,
                     stratified_split, transfer_split)

__all__ = ["BatchedProbe", "CCSProbe", "DETERMINISTIC", "GeometryResult",
           "HeadProbes", "LogisticProbe", "METHODS", "MLPProbe", "MLP_SIZES", "MassMeanProbe", 
           "RandomProbe", "SPLIT_KINDS", "SeedStats", "Split", "accuracy_per_group",
           "aggregate", "ccs_loss", "chance_levels", "compare_directions", "cosine_matrix", "head_accuracy_matrix",
           "kfold_splits", "leave_one_group_out", "make_probe", "make_splits", "probe_direction", 
           "sign_agreement_matrix", "site_matrix", "stratified_split", "transfer_split", "TTPDProbe",
           "POLARITY_METHODS", "PROBES", "ProbeSpec", "register_probe", "DistractorResult", "PolarityScore", "add_distractor", "ccs_distractor_test", "polarity_split"]
