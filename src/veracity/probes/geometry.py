"""Geometry of learned truth directions: do probes trained on different splits find the same vector?

Two random unit vectors in d dimensions have |cosine| about 1/sqrt(d) and agree in sign on half of
the coordinates, so both matrices are printed next to those chance levels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class GeometryResult:
    """Pairwise comparison of unit directions (one per split); `labels` name the rows/columns."""

    labels: list[str]
    cosine: list[list[float]]
    sign_agreement: list[list[float]]
    chance_cosine: float
    chance_sign: float
    mean_offdiag_cosine: float
    mean_offdiag_sign: float


def probe_direction(probe) -> torch.Tensor:
    """A fitted probe's unit direction: logistic weight, mass-mean difference, CCS weight, or the mean
    input gradient of an MLP (all exposed as `direction_`)."""
    if not hasattr(probe, "direction_"):
        raise ValueError(f"{type(probe).__name__} is not fitted or has no direction")
    return F.normalize(probe.direction_.double(), dim=-1)


def cosine_matrix(dirs: torch.Tensor) -> torch.Tensor:
    """dirs [S, D] -> [S, S] cosine similarities."""
    u = F.normalize(dirs.double(), dim=-1)
    return u @ u.T


def sign_agreement_matrix(dirs: torch.Tensor) -> torch.Tensor:
    """dirs [S, D] -> [S, S] fraction of coordinates with equal sign."""
    s = torch.sign(dirs.double())
    return (s[:, None, :] == s[None, :, :]).double().mean(-1)


def chance_levels(d: int) -> tuple[float, float]:
    """(typical |cosine| of random unit vectors, sign agreement by chance)."""
    return 1.0 / math.sqrt(d), 0.5


def compare_directions(dirs: torch.Tensor, labels: list[str]) -> GeometryResult:
    """Pairwise cosines and sign agreements of S directions with their chance levels and off-diagonal means: do probes
    find the same direction?"""
    cos, sgn = cosine_matrix(dirs), sign_agreement_matrix(dirs)
    S = cos.shape[0]
    off = ~torch.eye(S, dtype=torch.bool)
    c_ch, s_ch = chance_levels(dirs.shape[-1])
    return GeometryResult(list(labels), cos.tolist(), sgn.tolist(), c_ch, s_ch,
                          float(cos[off].mean()) if S > 1 else math.nan,
                          float(sgn[off].mean()) if S > 1 else math.nan)
