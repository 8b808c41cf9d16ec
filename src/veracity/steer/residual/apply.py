"""Applying a residual steer through forward hooks on decoder layers' outputs (every position, or the last
real token of each forward call), removed on exit; the model is never modified."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import torch

from ..apply import POSITIONS, _unpack, check_positions, shift_adder

if TYPE_CHECKING:
    from .vectors import ResidualSteer

__all__ = ["POSITIONS", "apply_residual", "layer_output_hooks", "residual_factory"]


def _fingerprint_of(target, steer: ResidualSteer) -> str | None:
    """The target's fingerprint, computed only when the steer records one to compare with."""
    if steer.provenance.get("model_fingerprint") and hasattr(target, "fingerprint"):
        return target.fingerprint
    return None


@contextlib.contextmanager
def apply_residual(target, steer: ResidualSteer, positions: str = "all",
                   alpha: float | None = None) -> Iterator[ResidualSteer]:
    """Add alpha * v_l to the output hidden states of each steered decoder layer while the block runs.

    target: a `LoadedModel`, a Hugging Face causal LM, or (model, ArchSpec). positions: "all" (every
    position of every forward call; what a baked model does; "prompt" is an alias) or "last" (the last
    real token of each row in every forward call, by the call's attention mask). alpha overrides the
    steer's. The model is not modified; hooks are removed on exit, also on error. Yields the steer used."""
    check_positions(positions)
    model, arch = _unpack(target)
    st = steer if alpha is None else steer.with_alpha(alpha)
    st.check_model(arch, _fingerprint_of(target, st))
    shifts = st.shifts()
    last_only = positions == "last"
    state: dict[str, torch.Tensor | None] = {"mask": None}
    _, add = shift_adder(shifts, state, last_only)

    def make_hook(layer: int):
        def hook(module, args, output):
            h = add(layer, output[0] if isinstance(output, tuple) else output)
            return (h, *output[1:]) if isinstance(output, tuple) else h
        return hook

    with layer_output_hooks(model, arch, {layer: make_hook(layer) for layer in sorted(shifts)}, state, last_only):
        yield st


@contextlib.contextmanager
def layer_output_hooks(model, arch, hooks: dict, state: dict, last_only: bool) -> Iterator[None]:
    """Forward hooks on the decoder layers' outputs (`hooks`: layer -> hook), removed on exit, also on error. With
    `last_only`, each forward call's attention mask is first recorded in `state["mask"]`, which the hooks read to
    find each row's last real token; it is cleared on exit. What every residual-stream steer hooks with."""

    def record_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")

    handles = []
    try:
        if last_only:
            handles.append(model.register_forward_pre_hook(record_mask, with_kwargs=True))
        for layer, hook in hooks.items():
            handles.append(arch.layer(model, layer).register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        state["mask"] = None


@contextlib.contextmanager
def mapped_layer_output(lm, layer: int, fn) -> Iterator[None]:
    """Decoder layer `layer`'s output h replaced by fn(h) at every position, for the block (`layer_output_hooks`;
    fn may keep h in the autograd graph: the trained steers' training hooks)."""
    def hook(module, args, out):
        h = out[0] if isinstance(out, tuple) else out
        new = fn(h)
        return (new, *out[1:]) if isinstance(out, tuple) else new

    with layer_output_hooks(lm.model, lm.arch, {layer: hook}, {}, False):
        yield


def residual_factory(target, steer: ResidualSteer, generate_positions: str = "last"):
    """A factory for the evaluation driver (phase -> context manager), as `steer.apply.intervention_factory`:
    scoring phases shift every token; "generate" uses `generate_positions`."""
    def factory(phase: str):
        return apply_residual(target, steer, positions=generate_positions if phase == "generate" else "all")
    return factory
