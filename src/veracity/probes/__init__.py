"""Probes: where and how does a model represent truth?

Batched torch estimators with the scikit-learn contract (one fit trains a probe per layer or per
(layer, head)), split builders, the geometry of learned directions, and experiment drivers.
ITI and other steering code call `head_accuracy_matrix` for per-head probes.
"""

from .base import BatchedProbe, accuracy_per_group
from .ccs import CCSProbe, ccs_loss
from .experiment import (DETERMINISTIC, METHODS, CCSExperiment, CCSLayerResult, HeadProbes, ProbeCell,
                         ProbeExperiment, ProbeScore, head_accuracy_matrix, make_probe, run_ccs_experiment,
                         run_probe_experiment, site_matrix)
from .geometry import (GeometryResult, chance_levels, compare_directions, cosine_matrix, probe_direction,
                       sign_agreement_matrix)
from .logistic import LogisticProbe
from .mass_mean import MassMeanProbe
from .mlp import MLP_SIZES, MLPProbe
from .random import RandomProbe
from .sanity import DistractorResult, PolarityScore, add_distractor, ccs_distractor_test, polarity_split
from .ttpd import TTPDProbe
from .splits import (SPLIT_KINDS, SeedStats, Split, aggregate, kfold_splits, leave_one_group_out, make_splits,
                     stratified_split, transfer_split)

__all__ = ["BatchedProbe", "CCSExperiment", "CCSLayerResult", "CCSProbe", "DETERMINISTIC", "GeometryResult",
           "HeadProbes", "LogisticProbe", "METHODS", "MLPProbe", "MLP_SIZES", "MassMeanProbe", "ProbeCell",
           "ProbeExperiment", "ProbeScore", "RandomProbe", "SPLIT_KINDS", "SeedStats", "Split", "accuracy_per_group",
           "aggregate", "ccs_loss", "chance_levels", "compare_directions", "cosine_matrix", "head_accuracy_matrix",
           "kfold_splits", "leave_one_group_out", "make_probe", "make_splits", "probe_direction", "run_ccs_experiment",
           "run_probe_experiment", "sign_agreement_matrix", "site_matrix", "stratified_split", "transfer_split", "TTPDProbe",
           "DistractorResult", "PolarityScore", "add_distractor", "ccs_distractor_test", "polarity_split"]
