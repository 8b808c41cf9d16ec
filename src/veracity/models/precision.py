"""Tolerances for comparing a half-precision run with the float32 one (derivation in docs/precision.md).

A number stored in a format with a p-bit significand is rounded with relative error at most
u = 2^-p (bfloat16: p = 8, u = 3.9e-3; float16: p = 11, u = 4.9e-4; float32: p = 24). Every decoder
layer adds rounding errors of relative size ~u to the residual stream; independent errors add like a
random walk, so after L layers the error relative to a tensor's scale is about c * u * sqrt(L + 1).
Measured c (max |a - b| / max |b| over every resid/heads site): 2-3.3 on the four tiny architectures
(4 layers) and on smollm2 (30 layers), bf16 and fp16. `relative_tolerance` takes c = 6: about twice the
largest measured constant, so a real regression (a wrong dtype cast, an fp16 overflow, a hook adding in
the wrong place) fails while rounding does not.
"""

from __future__ import annotations

import math

import torch

SIGNIFICAND_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24, torch.float64: 53}
C_DEPTH = 6.0


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = 2^-p for a p-bit significand (implicit bit included)."""
    return 2.0 ** -SIGNIFICAND_BITS[dtype]


def relative_tolerance(dtype: torch.dtype, n_layers: int, c: float = C_DEPTH) -> float:
    """Allowed max|a - b| / max|b| between a `dtype` run and the float32 run after `n_layers` layers."""
    return c * unit_roundoff(dtype) * math.sqrt(n_layers + 1)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b| in float64 (b is the reference)."""
    a64, b64 = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    scale = float(b64.abs().max())
    return float((a64 - b64).abs().max()) / (scale if scale > 0 else 1.0)
