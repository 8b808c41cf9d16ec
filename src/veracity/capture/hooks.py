"""Plain PyTorch hooks on the unmodified model, always removed on exit (even after an exception)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn

from ..models.arch import ArchSpec
from .sites import Site

Reducer = Callable[[torch.Tensor], torch.Tensor]  # [B, T, ...] -> [B, ...]


class StopForward(Exception):
    """Raised after the deepest needed layer so the rest of the forward pass is skipped."""


def _first(output):
    return output[0] if isinstance(output, (tuple, list)) else output


@contextlib.contextmanager
def hook_sites(model: nn.Module, arch: ArchSpec, sites: list[Site], sink: Callable[[Site, torch.Tensor], None],
               reduce: Reducer, stop_after: int | None = None) -> Iterator[None]:
    """Register one hook per site; each hook reduces its activation over positions and hands it to `sink`.

    Reducing inside the hook keeps memory to one [B, ...] tensor per site rather than [B, T, ...].
    `stop_after=L` raises StopForward at the end of layer L (the caller catches it).
    """
    handles = []
    try:
        for s in sites:
            if s.layer == -1:  # input of layer 0
                def pre(mod, args, kwargs, s=s):
                    h = args[0] if args else kwargs["hidden_states"]
                    sink(s, reduce(h))
                handles.append(arch.layer(model, 0).register_forward_pre_hook(pre, with_kwargs=True))
            elif s.kind == "resid":
                handles.append(arch.layer(model, s.layer).register_forward_hook(
                    lambda m, a, o, s=s: sink(s, reduce(_first(o)))))
            elif s.kind == "mlp":
                handles.append(arch.mlp(model, s.layer).register_forward_hook(
                    lambda m, a, o, s=s: sink(s, reduce(_first(o)))))
            elif s.kind == "heads":
                def pre_o(mod, args, kwargs, s=s):
                    x = args[0] if args else next(iter(kwargs.values()))
                    r = reduce(x)
                    sink(s, r.reshape(*r.shape[:-1], arch.n_heads, arch.head_dim))
                handles.append(arch.attn_out(model, s.layer).register_forward_pre_hook(pre_o, with_kwargs=True))
        if stop_after is not None and stop_after < arch.n_layers - 1:
            def stop(m, a, o):
                raise StopForward
            handles.append(arch.layer(model, stop_after).register_forward_hook(stop))
        yield
    finally:
        for h in handles:
            h.remove()
