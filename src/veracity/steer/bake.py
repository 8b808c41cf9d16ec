"""Bake an intervention into a standard Hugging Face model folder (no veracity needed to load it).

Adding a constant s to the o_proj input adds W_o @ s to its output, so the baked o_proj bias is
b + W_o @ s (b the existing bias, zero when there is none) -- *not* the raw head-space shift s, the
defect of the reference code. A bias is constant, so the baked model shifts every position, prompt
included: it equals `apply(..., positions="all")`, not the "last token" generation semantics.

Architectures without an o_proj bias need the bias parameter to exist on load:
- llama, mistral and qwen2 (a Llama decoder layer; in transformers `attention_bias` switches the q/k/v
  and o_proj biases together): written as `model_type="llama"` with `attention_bias=True`, the q/k/v
  biases zero (qwen2 keeps its own). `o_proj_only=True` writes `model_type="seed_oss"` instead, whose
  Llama-identical layer has a separate `attention_out_bias`, so only o_proj carries a bias. On smollm2 it
  is no faster: the zero q/k/v biases cost ~0.3% of a token, below bench_iti's noise, and the llama form
  runs at the plain model's speed (ratio_baked 0.99-1.01), so the widely loadable llama form is the
  default. Sliding-window attention (mistral, qwen2) is dropped, exact for sequences inside the window.
- gemma/2/3, qwen3, ... (a `config.attention_bias` flag): the flag is set and the q/k/v biases it also
  creates are written as zeros, so the module tree matches what `from_pretrained` builds;
- GPT-2 style (c_proj, a Conv1D with weight [in, out] and a bias already): the bias absorbs s @ W.
The original model is never touched: the new state dict shares its unchanged tensors (no copy) and
adds new bias tensors; `verify_baked` reloads the folder and compares logits with the hook version.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..models.arch import UnsupportedArchitecture
from ..validation import BadInput
from ..models.loader import state_items
from ..runs import write_json_atomic
from typing import TYPE_CHECKING, Callable, ContextManager

from .apply import _unpack

if TYPE_CHECKING:  # annotations only: intervention.py calls this module for its Steer methods
    from .intervention import Intervention

#: what `verify_baked` and `verify_residual_baked` run when given no texts
VERIFY_TEXTS = ["Q: What happens if you crack your knuckles a lot? A: Nothing in particular happens."]


class BakeFailed(BadInput):
    """The baked folder does not reproduce the hooked model (a non-finite logit, or a difference above the
    tolerance). `bake` and `bake_residual` verify before the folder is put in place, so then nothing is
    written and nothing can be mistaken for a good model."""


_TO_LLAMA = ("qwen2", "mistral")
_LLAMA_DROP = ("use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "model_type",
               "architectures", "auto_map", "_name_or_path", "transformers_version", "dtype", "torch_dtype")


def _fingerprint(target) -> str:
    """The target's weights fingerprint (a `LoadedModel` caches it; a bare model is hashed here)."""
    if hasattr(target, "fingerprint") and hasattr(target, "arch"):
        return target.fingerprint
    from ..models.loader import weights_fingerprint

    return weights_fingerprint(target)


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise KeyError("module not found in model")


def _seed_oss_config():
    try:
        from transformers import SeedOssConfig
    except ImportError:  # older transformers: fall back to llama + attention_bias
        return None
    return SeedOssConfig


def _as_llama_layer(cfg, config_cls, arch_name: str, **overrides):
    """`cfg` rewritten for another class with the Llama decoder layer (model-specific keys dropped)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in _LLAMA_DROP}
    d.update(mlp_bias=False, **overrides)
    if not d.get("head_dim"):
        d["head_dim"] = cfg.hidden_size // cfg.num_attention_heads
    new = config_cls(**d)
    new.architectures = [arch_name]
    return new


def _baked_config(cfg, needs_bias: bool, o_proj_only: bool = False):
    """(new config, how) for a model whose o_proj must carry a bias."""
    cfg = copy.deepcopy(cfg)
    if not needs_bias:
        return cfg, "existing-bias"
    mt = getattr(cfg, "model_type", "")
    SeedOss = _seed_oss_config() if o_proj_only else None
    if (mt in _TO_LLAMA or mt == "llama") and SeedOss is not None:
        new = _as_llama_layer(cfg, SeedOss, "SeedOssForCausalLM", attention_bias=(mt == "qwen2"),
                              attention_out_bias=True, attention_dropout=0.0, residual_dropout=0.0)
        return new, f"{mt}->seed_oss (o_proj bias only)"
    if hasattr(cfg, "attention_bias") and mt not in _TO_LLAMA:
        cfg.attention_bias = True
        return cfg, "attention_bias"
    if mt in _TO_LLAMA:
        from transformers import LlamaConfig

        return _as_llama_layer(cfg, LlamaConfig, "LlamaForCausalLM", attention_bias=True), f"{mt}->llama"
    raise UnsupportedArchitecture(
        f"cannot bake into {mt!r}: its attention output projection has no bias and its config has no "
        "attention_bias flag; use the hook version (`veracity.steer.apply`) instead")


@torch.no_grad()
def baked_state_dict(target, intervention: Intervention,
                     o_proj_only: bool = False) -> tuple[dict[str, torch.Tensor], object, str]:
    """(state dict of the baked model, its config, how the bias was made to exist). Shares unchanged
    tensors with the original model; bias tensors are new."""
    model, arch = _unpack(target)
    # same shape is not enough: the fingerprint tells a tiny-llama fit from a same-shaped tiny-qwen2
    intervention.check_model(arch, _fingerprint(target) if intervention.fingerprint else None)
    shifts = intervention.layer_shifts()
    first = arch.attn_out(model, 0)
    needs_bias = getattr(first, "bias", None) is None
    cfg, how = _baked_config(model.config, needs_bias, o_proj_only)
    sd = dict(state_items(model))  # weights offloaded by a device_map (cpu/disk) are read from their store
    w_first = sd[_module_name(model, first) + ".weight"]
    new_sd = with_new_biases(sd, cfg, w_first.dtype, w_first.device, UnsupportedArchitecture)
    for i in range(arch.n_layers):
        o = arch.attn_out(model, i)
        key = _module_name(model, o) + ".bias"
        if key not in new_sd:
            raise UnsupportedArchitecture(f"bake: no {key} in the baked model")
        if i not in shifts:
            continue
        W0 = sd[_module_name(model, o) + ".weight"]  # not o.weight: a meta placeholder when offloaded
        W = W0.detach().double()
        s = shifts[i].to(W.device, torch.float64)
        delta = s @ W if type(o).__name__ == "Conv1D" else W @ s  # Conv1D weight is [in, out]
        new_sd[key] = (new_sd[key].double() + delta.to(new_sd[key].device)).to(W0.dtype)
    return new_sd, cfg, how


def with_new_biases(sd: dict[str, torch.Tensor], cfg, dtype: torch.dtype, device, error: type[Exception]
                    ) -> dict[str, torch.Tensor]:
    """The state dict of `cfg`'s model built from the source's `sd` (its tensors shared, no copy): a parameter
    the baked config adds must be a bias (zeros of `dtype` on `device`, for the caller to fill), and no parameter
    may change shape or be lost (`error` otherwise). The config's skeleton is built on the meta device (no
    memory). Shared by every bake."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(cfg)
    new_sd: dict[str, torch.Tensor] = {}
    for k, t in skeleton.state_dict().items():
        shape = tuple(t.shape)
        if k in sd:
            if tuple(sd[k].shape) != shape:
                raise error(f"bake: {k} has shape {tuple(sd[k].shape)}, the baked config wants {shape}")
            new_sd[k] = sd[k]
        elif k.endswith(".bias"):
            new_sd[k] = torch.zeros(shape, dtype=dtype, device=device)
        else:
            raise error(f"bake: the baked config adds a non-bias parameter {k}")
    lost = [k for k in sd if k not in new_sd and not k.endswith("inv_freq")]
    if lost:
        raise error(f"bake: the baked config lost parameters {lost[:3]}")
    return new_sd


def write_model_folder(model, tokenizer, sd: dict, cfg, out: str | Path) -> Path:
    """Save `sd` under `cfg` as a plain Hugging Face folder (weights assigned on the meta device, no second
    copy in memory), with the source model's generation config and the tokenizer. Shared by every bake."""
    from transformers import AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        new = AutoModelForCausalLM.from_config(cfg)
    new.load_state_dict(sd, assign=True, strict=False)
    if getattr(model, "generation_config", None) is not None:
        new.generation_config = copy.deepcopy(model.generation_config)
    new.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def bake(target, intervention: Intervention, out: str | Path, tokenizer=None, o_proj_only: bool = False, *,
         overwrite: bool = False, verify: bool = False) -> Path:
    """Write a Hugging Face folder (config, safetensors, tokenizer, `veracity_intervention.json`) that
    `AutoModelForCausalLM.from_pretrained(out)` loads as the intervened model, at every position.

    Through the writer guard (`veracity.outputs`): `out` must be new, empty, or (with `overwrite`) an earlier
    baked model; the folder is built aside and renamed into place only when complete, so a failed bake (or a
    failed `verify`) leaves `out` as it was. `verify`: reload the staged folder and compare its logits with
    the hooks (`verify_baked`) before it is put in place; the difference is recorded in veracity_bake.json."""
    return bake_folder(
        target, out, tokenizer, lambda: baked_state_dict(target, intervention, o_proj_only),
        lambda folder: intervention.write(folder / "veracity_intervention"),
        lambda how: {"how": how, "semantics": "every position (a bias), prompt included",
                     "heads": intervention.heads, "alpha": intervention.alpha},
        (lambda folder: verify_baked(target, intervention, folder, atol=float("inf"))) if verify else None,
        overwrite=overwrite)


def bake_folder(target, out: str | Path, tokenizer, state: Callable[[], tuple[dict, object, str]],
                write_steer: Callable[[Path], object], meta: Callable[[str], dict],
                verify: Callable[[Path], float] | None, *, overwrite: bool = False) -> Path:
    """What every bake does around its state dict: claim `out` through the writer guard (before any work), build
    `state()` -> (state dict, config, how), write the model folder, the steer's own files (`write_steer(folder)`)
    and veracity_bake.json (`meta(how)`), with `verify(folder)` (when given) recorded as
    max_abs_logit_diff_vs_hooks. The folder is staged and renamed into place only when complete, so a failed
    bake or verify (`BakeFailed`) leaves `out` as it was."""
    from ..outputs import Output

    dest = Output(out, "baked-model", overwrite=overwrite)
    model, _ = _unpack(target)
    tok = tokenizer if tokenizer is not None else getattr(target, "tokenizer", None)
    sd, cfg, how = state()
    with dest.writing() as folder:
        write_model_folder(model, tok, sd, cfg, folder)
        write_steer(folder)
        fields = meta(how)
        if verify is not None:
            try:
                fields["max_abs_logit_diff_vs_hooks"] = verify(folder)
            except BakeFailed as e:
                raise BakeFailed(f"{e}: the bake is refused, nothing was written to {dest.path}") from None
        write_json_atomic(folder / "veracity_bake.json", fields)
    return dest.path


@torch.no_grad()
def verify_baked(target, intervention: Intervention, folder: str | Path, texts: list[str] | None = None,
                 atol: float = 1e-4) -> float:
    """Max |logit difference| between the folder loaded with plain `from_pretrained` (fp32) and the hook
    version with every-position semantics; `BakeFailed` above `atol` or on any non-finite logit."""
    from .apply import apply

    model, _ = _unpack(target)
    return verify_against_hooks(target, folder, lambda: apply(model, intervention, positions="all"), texts, atol,
                                "the hook version")


@torch.no_grad()
def verify_against_hooks(target, folder: str | Path, hooked: Callable[[], ContextManager],
                         texts: list[str] | None, atol: float, other: str) -> float:
    """Max |logit difference| between the folder loaded with plain `from_pretrained` (fp32) and the target's model
    inside `hooked()` (`other` names it in errors), over `texts` (default `VERIFY_TEXTS`; a tokenizer-less target
    runs ids [1, 2, 3]); `BakeFailed` above `atol` or on any non-finite logit. Shared by every verify."""
    from transformers import AutoModelForCausalLM

    model, _ = _unpack(target)
    tok = getattr(target, "tokenizer", None)
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    dev = next(model.parameters()).device
    baked.to(dev)
    worst = 0.0
    for t in texts or VERIFY_TEXTS:
        ids = tok(t, return_tensors="pt")["input_ids"].to(dev) if tok is not None else torch.tensor([[1, 2, 3]], device=dev)
        with hooked():
            a = model(input_ids=ids).logits.float()
        b = baked(input_ids=ids).logits.float()
        worst = max(worst, compare_logits(a, b, folder, other))
    return check_tolerance(worst, atol, folder, other)


def compare_logits(hooked: torch.Tensor, baked: torch.Tensor, folder: str | Path, other: str) -> float:
    """Max |difference| of two logit tensors; a NaN or inf in either is `BakeFailed`: max() over differences
    ignores NaN, so a NaN model would otherwise pass as 0.00e+00."""
    for name, t in (("the baked model", baked), (other, hooked)):
        if not bool(torch.isfinite(t).all()):
            raise BakeFailed(f"{name} outputs NaN or inf logits (check the alpha and the vectors)")
    return float((hooked - baked).abs().max())


def check_tolerance(worst: float, atol: float, folder: str | Path, other: str) -> float:
    """`worst` when the baked model matches within `atol`; else `BakeFailed` naming the difference."""
    if not worst <= atol:
        raise BakeFailed(f"the baked model differs from {other} by {worst:.2e} > {atol:.0e}")
    return worst
