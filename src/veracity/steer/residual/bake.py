"""Baking a residual steer: a plain Hugging Face folder where the constant is a bias of the layer's last MLP
projection -- exact where the MLP output is added to the residual with nothing after it (Llama-style layers:
down_proj; GPT-2: c_proj), refused (`NotBakeable`) elsewhere -- and its check against the hooks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ...models.arch import ArchSpec
from ...runs import write_json_atomic
from ..base import NotBakeable
from .apply import _fingerprint_of, _unpack, apply_residual

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

    from ..bake import _as_llama_layer

    new = _as_llama_layer(cfg, LlamaConfig, "LlamaForCausalLM", attention_bias=(model_type == "qwen2"))
    new.mlp_bias = True
    return new


@torch.no_grad()
def baked_residual_state_dict(target, steer: ResidualSteer) -> tuple[dict[str, torch.Tensor], object, str]:
    """(state dict of the baked model, its config, how). Unchanged tensors are shared with the original
    (no copy); new biases are zeros except the steered layers' MLP output bias, which gains alpha * v_l."""
    from transformers import AutoModelForCausalLM

    model, arch = _unpack(target)
    steer.check_model(arch, _fingerprint_of(target, steer))
    how, template = bake_plan(model, arch)
    cfg = _baked_config(model.config, arch.model_type)
    sd = dict(model.state_dict())
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(cfg)
    wdt = next(model.parameters()).dtype
    dev = next(model.parameters()).device
    new_sd: dict[str, torch.Tensor] = {}
    for k, t in skeleton.state_dict().items():
        shape = tuple(t.shape)
        if k in sd:
            if tuple(sd[k].shape) != shape:
                raise NotBakeable(f"bake: {k} has shape {tuple(sd[k].shape)}, the baked config wants {shape}")
            new_sd[k] = sd[k]
        elif k.endswith(".bias"):
            new_sd[k] = torch.zeros(shape, dtype=wdt, device=dev)
        else:
            raise NotBakeable(f"bake: the baked config adds a non-bias parameter {k}")
    lost = [k for k in sd if k not in new_sd and not k.endswith("inv_freq")]
    if lost:
        raise NotBakeable(f"bake: the baked config lost parameters {lost[:3]}")
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
    from ...outputs import Output
    from ..bake import BakeFailed, write_model_folder

    dest = Output(out, "baked-model", overwrite=overwrite)
    model, arch = _unpack(target)
    tok = tokenizer if tokenizer is not None else getattr(target, "tokenizer", None)
    sd, cfg, how = baked_residual_state_dict(target, steer)
    with dest.writing() as folder:
        write_model_folder(model, tok, sd, cfg, folder)
        steer.write(folder / "veracity_steer")
        meta = {"kind": "residual", "how": how, "method": steer.method, "layers": steer.layers,
                "alpha": steer.alpha, "semantics": "every position (a bias), prompt included"}
        if verify:
            try:
                meta["max_abs_logit_diff_vs_hooks"] = verify_residual_baked(target, steer, folder)  # exact: 1e-4
            except BakeFailed as e:
                raise BakeFailed(f"{e}: the bake is refused, nothing was written to {dest.path}") from None
        write_json_atomic(folder / "veracity_bake.json", meta)
    return dest.path


@torch.no_grad()
def verify_residual_baked(target, steer: ResidualSteer, folder: str | Path, texts: list[str] | None = None,
                          atol: float = 1e-4) -> float:
    """Max |logit difference| between the folder loaded with plain `from_pretrained` (fp32) and the hooks
    at every position; `BakeFailed` above `atol` or on any non-finite logit."""
    from transformers import AutoModelForCausalLM

    from ..bake import check_tolerance, compare_logits

    model, arch = _unpack(target)
    tok = getattr(target, "tokenizer", None)
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    texts = texts or ["Q: What happens if you crack your knuckles a lot? A: Nothing in particular happens."]
    dev = next(model.parameters()).device
    baked.to(dev)
    worst = 0.0
    for t in texts:
        ids = tok(t, return_tensors="pt")["input_ids"].to(dev) if tok is not None else torch.tensor([[1, 2, 3]], device=dev)
        with apply_residual((model, arch), steer, positions="all"):
            a = model(input_ids=ids).logits.float()
        b = baked(input_ids=ids).logits.float()
        worst = max(worst, compare_logits(a, b, folder, "the hooks"))
    return check_tolerance(worst, atol, folder, "the hooks")
