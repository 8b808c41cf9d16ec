"""`with apply(model, intervention, positions=...)`: ITI through forward pre-hooks on the unmodified model.

The shift is added to the *input* of each intervened layer's attention output projection (o_proj /
GPT-2 c_proj), i.e. to the selected heads' slices of the concatenated head outputs, which is exactly
where ITI defines it. Only layers with a selected head get a hook, and the shift vector is built once
per (device, dtype) on entry, so the per-token cost is one add per intervened layer.

Positions (every *forward call* is treated the same way, so the semantics hold with and without a KV cache):
- ``"all"``: every position of every forward call. Scoring (MC answer tokens run over a cached prompt,
  CE/KL texts) shifts every scored token; in generation this shifts every prompt token and then each
  new token. This is what a baked model does (``"prompt"`` is an alias, named for the generation case).
- ``"last"``: only the last real token of each row in every forward call (the last prompt token, then
  each new token), as the original ITI generation code does. Right padding is handled by reading the
  call's ``attention_mask``, so left and right padding give the same result.

Hooks are removed on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from ..models.arch import ArchSpec
from .intervention import Intervention

POSITIONS = ("all", "last", "prompt")


def _unpack(target) -> tuple[nn.Module, ArchSpec]:
    if hasattr(target, "model") and hasattr(target, "arch"):  # LoadedModel
        return target.model, target.arch
    if isinstance(target, nn.Module):
        return target, ArchSpec.from_model(target)
    raise TypeError(f"apply() needs a LoadedModel or a torch module, got {type(target).__name__}")


@contextlib.contextmanager
def apply(target, intervention: Intervention, positions: str = "all",
          alpha: float | None = None) -> Iterator[Intervention]:
    """Add alpha * sigma * direction to each selected head's o_proj input while the block runs.

    target: a `LoadedModel` or a Hugging Face causal LM. alpha: overrides the intervention's alpha.
    Yields the intervention actually applied.
    """
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    model, arch = _unpack(target)
    iv = intervention if alpha is None else intervention.with_alpha(alpha)
    iv.check_model(arch)
    shifts = iv.layer_shifts()
    last_only = positions == "last"
    state: dict[str, torch.Tensor | None] = {"mask": None}
    cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def vec(layer: int, x: torch.Tensor) -> torch.Tensor:
        key = (layer, x.device, x.dtype)
        v = cache.get(key)
        if v is None:
            v = cache[key] = shifts[layer].to(device=x.device, dtype=x.dtype)
        return v

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0]
            v = vec(layer, x)
            if not last_only or x.dim() < 3 or x.shape[-2] == 1:
                return (x + v, *args[1:])
            T = x.shape[-2]
            mask = state["mask"]
            x = x.clone()
            if mask is not None and mask.dim() == 2 and mask.shape[0] == x.shape[0] and mask.shape[1] >= T:
                cur = mask[:, -T:].to(x.device).bool()
                pos = torch.arange(T, device=x.device).expand_as(cur)
                idx = torch.where(cur, pos, torch.full_like(pos, -1)).amax(1)
                rows = (idx >= 0).nonzero().squeeze(1)
                x[rows, idx[rows]] += v
            else:
                x[..., -1, :] += v
            return (x, *args[1:])
        return hook

    def record_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")

    handles = []
    try:
        if last_only:
            handles.append(model.register_forward_pre_hook(record_mask, with_kwargs=True))
        for layer in sorted(shifts):
            handles.append(arch.attn_out(model, layer).register_forward_pre_hook(make_hook(layer)))
        yield iv
    finally:
        for h in handles:
            h.remove()
        state["mask"] = None


def intervention_factory(target, intervention: Intervention, generate_positions: str = "last"):
    """A factory for the evaluation driver: phase -> context manager. Scoring phases ("mc", "lm") shift
    every token of each forward call; "generate" uses `generate_positions` ("last" as ITI, or "all")."""
    def factory(phase: str):
        return apply(target, intervention, positions=generate_positions if phase == "generate" else "all")
    return factory
