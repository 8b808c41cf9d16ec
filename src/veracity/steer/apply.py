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

``start`` (with ``"all"``): only positions >= start, counted in the whole sequence (the call's
``position_ids``, else the cache length or the attention mask's width minus the call's length, else 0).

MC scoring (`intervention_factory`, ``mc_shift_from``): the evaluation runs each answer over the cached
prompt, so by default every answer token's forward is shifted and the prompt is not (``"answer-start"``:
the first answer token's log-prob, read at the prompt's last position, is unshifted, every later one is
shifted). ``"legacy"`` is honest_llama's legacy MC rule: shift from position ``len(enc(prompt)) + 4``,
where prompt ends before ``"\\nA: "``; its comment counts ``"\\nA: "`` as 4 tokens, but with Llama and
SmolLM2 tokenizers ``"\\nA:"`` is 3, so the shift starts one token after the answer's first token and the
first two answer tokens are scored unshifted (veracity's rule leaves one).

Hooks are removed on exit, also when the body raises.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from ..models.arch import ArchSpec
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: intervention.py calls this module for its Steer methods
    from .intervention import Intervention

POSITIONS = ("all", "last", "prompt")
#: where a steer acts while the model generates (or scores a whole text): "prompt" is for MC scoring only
GENERATE_POSITIONS = ("last", "all")
MC_SHIFT_FROM = ("answer-start", "legacy")


def _unpack(target) -> tuple[nn.Module, ArchSpec]:
    """(model, arch) of a `LoadedModel`, a Hugging Face model or (model, ArchSpec): what every steer is applied to."""
    if hasattr(target, "model") and hasattr(target, "arch"):  # LoadedModel
        return target.model, target.arch
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[1], ArchSpec):
        return target[0], target[1]
    if isinstance(target, nn.Module):
        return target, ArchSpec.from_model(target)
    raise TypeError(f"expected a LoadedModel, a Hugging Face model or (model, ArchSpec), got {type(target).__name__}")


def check_positions(positions: str) -> None:
    """ValueError unless `positions` is one of `POSITIONS` (every steer's hooks take the same three)."""
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")


def last_token_mask(h: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """[B, T] bool: True at the last real token of each row of h [B, T, D]: by the forward call's attention mask
    when it covers the rows (either padding side), else position T-1. The one rule of every "last" hook."""
    B, T = h.shape[0], h.shape[-2]
    out = torch.zeros(B, T, dtype=torch.bool, device=h.device)
    m = attention_mask
    if m is not None and m.dim() == 2 and m.shape[0] == B and m.shape[1] >= T:
        cur = m[:, -T:].to(h.device).bool()
        pos = torch.arange(T, device=h.device).expand_as(cur)
        idx = torch.where(cur, pos, torch.full_like(pos, -1)).amax(1)
        rows = (idx >= 0).nonzero().squeeze(1)
        out[rows, idx[rows]] = True
    else:
        out[:, -1] = True
    return out


def add_at_last_token(x: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x [B, T, D] (a copy) with v added at the last real token of each row (`last_token_mask`)."""
    x = x.clone()
    x[last_token_mask(x, mask)] += v
    return x


def shift_adder(shifts: dict[int, torch.Tensor], state: dict, last_only: bool):
    """(vec, add), the hook factory's two halves: `vec(layer, x)` is shifts[layer] on x's device and dtype
    (converted once per (layer, device, dtype), not per token); `add(layer, x)` is x plus that vector at every
    position, or with `last_only` (in a multi-token call) at the last real token of each row, found by
    `state["mask"]` (the call's attention mask). What ITI's and residual steering's hooks add with."""
    cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def vec(layer: int, x: torch.Tensor) -> torch.Tensor:
        key = (layer, x.device, x.dtype)
        v = cache.get(key)
        if v is None:
            v = cache[key] = shifts[layer].to(device=x.device, dtype=x.dtype)
        return v

    def add(layer: int, x: torch.Tensor) -> torch.Tensor:
        v = vec(layer, x)
        if not last_only or x.dim() < 3 or x.shape[-2] == 1:
            return x + v
        return add_at_last_token(x, v, state["mask"])

    return vec, add


@contextlib.contextmanager
def apply(target, intervention: Intervention, positions: str = "all",
          alpha: float | None = None, start: int | None = None) -> Iterator[Intervention]:
    """Add alpha * sigma * direction to each selected head's o_proj input while the block runs.

    target: a `LoadedModel`, a Hugging Face causal LM or (model, ArchSpec). alpha: overrides the intervention's alpha.
    start (positions "all" only): shift only sequence positions >= start (see the module docstring).
    Yields the intervention actually applied.
    """
    check_positions(positions)
    if start is not None and positions == "last":
        raise ValueError("start applies to positions='all' only")
    model, arch = _unpack(target)
    iv = intervention if alpha is None else intervention.with_alpha(alpha)
    iv.check_model(arch)
    shifts = iv.layer_shifts()
    last_only = positions == "last"
    state: dict = {"mask": None, "pos": None, "past": 0}
    vec, add = shift_adder(shifts, state, last_only)

    def make_hook(layer: int):
        def hook(module, args):
            x = args[0]
            if start is not None and x.dim() >= 3:
                v = vec(layer, x)
                T = x.shape[-2]
                pos = state["pos"]
                if pos is not None and pos.shape[-1] >= T:
                    p = pos[..., -T:].to(x.device)
                else:
                    mask = state["mask"]
                    past = (mask.shape[1] - T if mask is not None and mask.dim() == 2 and mask.shape[1] >= T
                            else state["past"])
                    p = torch.arange(past, past + T, device=x.device)[None]
                keep = (p >= start).to(x.dtype)[..., None]  # [B or 1, T, 1]
                return (x + keep * v, *args[1:])
            return (add(layer, x), *args[1:])
        return hook

    def record_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")
        state["pos"] = kwargs.get("position_ids")
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        state["past"] = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0

    handles = []
    try:
        if last_only or start is not None:
            handles.append(model.register_forward_pre_hook(record_mask, with_kwargs=True))
        for layer in sorted(shifts):
            handles.append(arch.attn_out(model, layer).register_forward_pre_hook(make_hook(layer)))
        yield iv
    finally:
        for h in handles:
            h.remove()
        state.update(mask=None, pos=None, past=0)


def legacy_mc_start(tokenizer, context: str) -> int:
    """honest_llama's legacy MC shift start for a prompt `context` ending in "\\nA:": ``len(enc(prompt)) + 4``
    with prompt = the context before "\\nA:" (special tokens as the tokenizer adds them)."""
    if not context.endswith("\nA:"):
        raise ValueError("the legacy MC shift needs a context ending in '\\nA:'")
    return len(tokenizer(context[:-len("\nA:")])["input_ids"]) + 4


class PhaseFactory:
    """The evaluation driver's intervention factory: phase -> context manager. Scoring phases ("mc", "lm")
    shift every token of each forward call; "generate" uses `generate_positions` ("last" as ITI, or "all").
    With ``mc_shift_from="legacy"``, `for_mc_context` gives each MC question the original's start."""

    def __init__(self, target, intervention: Intervention, generate_positions: str = "last",
                 mc_shift_from: str = "answer-start"):
        if mc_shift_from not in MC_SHIFT_FROM:
            raise ValueError(f"mc_shift_from must be one of {', '.join(MC_SHIFT_FROM)}, got {mc_shift_from!r}")
        self.target, self.intervention = target, intervention
        self.generate_positions, self.mc_shift_from = generate_positions, mc_shift_from

    def __call__(self, phase: str, start: int | None = None):
        if phase == "generate":
            return apply(self.target, self.intervention, positions=self.generate_positions)
        return apply(self.target, self.intervention, positions="all", start=start if phase == "mc" else None)

    def for_mc_context(self, tokenizer, context: str, prompt_tokens: int | None = None):
        """The factory for one MC question (called by `evaluate.truthfulqa.score_mc`). `prompt_tokens`: the
        length of the prompt the answers are scored after; the legacy start must not fall inside it."""
        if self.mc_shift_from == "answer-start":
            return self
        start = legacy_mc_start(tokenizer, context)
        if prompt_tokens is not None and start < prompt_tokens:
            raise ValueError(f"legacy MC shift starts at token {start}, inside the {prompt_tokens}-token prompt "
                             "(this tokenizer encodes '\\nA:' in more than 4 tokens)")
        return lambda phase: self(phase, start=start)


def intervention_factory(target, intervention: Intervention, generate_positions: str = "last",
                         mc_shift_from: str = "answer-start") -> PhaseFactory:
    """A factory for the evaluation driver (see `PhaseFactory`)."""
    return PhaseFactory(target, intervention, generate_positions, mc_shift_from)
