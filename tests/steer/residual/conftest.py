"""Helpers of the residual-steering tests, as fixtures: a seeded random steer, every decoder layer's output."""

from __future__ import annotations

import pytest
import torch

from veracity.steer.residual.vectors import ResidualSteer


def _steer(lm, layers=(1,), alpha=3.0, seed=0) -> ResidualSteer:
    g = torch.Generator().manual_seed(seed)
    return ResidualSteer(list(layers), torch.randn(len(layers), lm.arch.hidden_size, generator=g), alpha=alpha)


def _layer_outputs(lm, ids, **kw):
    """Output of every decoder layer captured with forward hooks (hidden_states[-1] is after the final norm)."""
    outs, hs = {}, []
    for i in range(lm.arch.n_layers):
        hs.append(lm.arch.layer(lm.model, i).register_forward_hook(
            lambda m, a, o, i=i: outs.__setitem__(i, (o[0] if isinstance(o, tuple) else o).detach().clone())))
    try:
        with torch.no_grad():
            lm.model(input_ids=ids, output_hidden_states=True, **kw)
    finally:
        for h in hs:
            h.remove()
    return outs


@pytest.fixture
def random_steer():
    """`random_steer(lm, layers=(1,), alpha=3.0, seed=0)`: a ResidualSteer of seeded random vectors for `lm`."""
    return _steer


@pytest.fixture
def layer_outputs():
    """`layer_outputs(lm, ids, **forward_kwargs) -> {layer: output}`, read with hooks of its own."""
    return _layer_outputs
