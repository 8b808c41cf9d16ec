"""Baking a residual steer: a plain Hugging Face folder where the constant is a bias of the layer's last MLP
projection -- exact where the MLP output is added to the residual with nothing after it (Llama-style layers:
down_proj; GPT-2: c_proj), refused (`NotBakeable`) elsewhere -- and its check against the hooks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...models.arch import ArchSpec
from ..base import NotBakeable
from ..apply import _unpack
from ..bake import _as_llama_layer, bake_folder, verify_against_hooks, with_new_biases
from .apply import _fingerprint_of, apply_residual

if TYPE_CHECKING:
    from .vectors import ResidualSteer


_LLAMA_LAYER_TYPES = ("llama", "mistral", "qwen2")


def bake_plan(model: torch.nn.Module, arch: ArchSpec) -> tuple[str, str]:
    """(how, module path template of the bias that carries the constant, "{i}" = layer), or NotBakeable.

    Exact only when decoder layer i computes h + mlp(...) with nothing applied after the MLP's last
    projection (no norm, no scale): then a bias b on that projection adds b to the layer's output."""
    mt = arch.model_type
    layer0 = arch.layer(model, 0)
    if mt in ("gemma3", "gemma3_text", "gemma2"):
        raise NotBakeable(f"cannot bake residual steering into {mt!r}: a post-feedforward RMSNorm follows the MLP, "
                          "so no bias adds a constant to the layer output; use apply_residual (hooks) instead")
    if mt in _LLAMA_LAYER_TYPES:
        for attr in ("post_feedforward_layernorm", "post_mlp_layernorm"):
            if hasattr(layer0, attr):
                raise NotBakeable(f"cannot bake into {mt!r}: its layers have {attr} after the MLP")
        if not hasattr(layer0, "mlp") or not hasattr(layer0.mlp, "down_proj"):
            raise NotBakeable(f"cannot bake into {mt!r}: no mlp.down_proj in its decoder layers")
        how = "mlp_bias" if mt == "llama" else f"{mt}->llama mlp_bias"
        return how, arch.layers_path + ".{i}.mlp.down_proj"
    if mt == "gpt2":
        if type(layer0).__name__ != "GPT2Block" or getattr(layer0.mlp.c_proj, "bias", None) is None:
            raise NotBakeable("cannot bake into this GPT-2 variant: no c_proj bias in the block's MLP")
        return "existing c_proj bias", arch.layers_path + ".{i}.mlp.c_proj"
    raise NotBakeable(f"cannot bake residual steering into {mt!r}: veracity only knows where the residual "
                      "constant goes in Llama-style layers (llama, mistral, qwen2) and GPT-2; "
                      "use apply_residual (hooks) instead")


def _baked_config(cfg, model_type: str):
    cfg = copy.deepcopy(cfg)
    if model_type == "gpt2":
        return cfg
    if model_type == "llama":
        cfg.mlp_bias = True  # also creates gate/up biases: written as zeros
        return cfg
    from transformers import LlamaConfig

    new = _as_llama_layer(cfg, LlamaConfig, "LlamaForCausalLM", attention_bias=(model_type == "qwen2"))
    new.mlp_bias = True
    return new


@torch.no_grad()
def baked_residual_state_dict(target, steer: ResidualSteer) -> tuple[dict[str, torch.Tensor], object, str]:
    """(state dict of the baked model, its config, how). Unchanged tensors are shared with the original
    (no copy); new biases are zeros except the steered layers' MLP output bias, which gains alpha * v_l."""
    model, arch = _unpack(target)
    steer.check_model(arch, _fingerprint_of(target, steer))
    how, template = bake_plan(model, arch)
    cfg = _baked_config(model.config, arch.model_type)
    p0 = next(model.parameters())
    new_sd = with_new_biases(dict(model.state_dict()), cfg, p0.dtype, p0.device, NotBakeable)
    for layer, s in steer.shifts().items():
        key = template.format(i=layer) + ".bias"
        if key not in new_sd:
            raise NotBakeable(f"bake: no {key} in the baked model")
        b = new_sd[key]
        new_sd[key] = (b.double() + s.to(b.device, torch.float64)).to(b.dtype)
    return new_sd, cfg, how


def bake_residual(target, steer: ResidualSteer, out: str | Path, tokenizer=None, *, overwrite: bool = False,
                  verify: bool = False) -> Path:
    """Write a Hugging Face folder that `AutoModelForCausalLM.from_pretrained(out)` loads as the steered
    model, at every position (a bias is constant: it equals `apply_residual(..., positions="all")`), plus
    `veracity_steer.{json,safetensors}` and `veracity_bake.json`. Raises `NotBakeable` before writing
    anything when the architecture has no exact place for the constant. Through the writer guard, as
    `veracity.steer.bake.bake` (staged, renamed into place only when complete and, with `verify`, checked)."""
    return bake_folder(
        target, out, tokenizer, lambda: baked_residual_state_dict(target, steer),
        lambda folder: steer.write(folder / "veracity_steer"),
        lambda how: {"kind": "residual", "how": how, "method": steer.method, "layers": steer.layers,
                     "alpha": steer.alpha, "semantics": "every position (a bias), prompt included"},
        (lambda folder: verify_residual_baked(target, steer, folder)) if verify else None,  # exact: 1e-4
        overwrite=overwrite)


@torch.no_grad()
def verify_residual_baked(target, steer: ResidualSteer, folder: str | Path, texts: list[str] | None = None,
                          atol: float = 1e-4) -> float:
    """Max |logit difference| between the folder loaded with plain `from_pretrained` (fp32) and the hooks
    at every position; `BakeFailed` above `atol` or on any non-finite logit."""
    model, arch = _unpack(target)
    return verify_against_hooks(target, folder, lambda: apply_residual((model, arch), steer, positions="all"),
                                texts, atol, "the hooks")
