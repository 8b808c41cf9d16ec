"""Helpers of the residual-steering tests, as fixtures: a seeded random steer (the layer reads are in
../conftest.py, shared with every steer's tests)."""

from __future__ import annotations

import pytest
import torch

from veracity.steer.residual.vectors import ResidualSteer


def _steer(lm, layers=(1,), alpha=3.0, seed=0) -> ResidualSteer:
    g = torch.Generator().manual_seed(seed)
    return ResidualSteer(list(layers), torch.randn(len(layers), lm.arch.hidden_size, generator=g), alpha=alpha)


@pytest.fixture
def random_steer():
    """`random_steer(lm, layers=(1,), alpha=3.0, seed=0)`: a ResidualSteer of seeded random vectors for `lm`."""
    return _steer
