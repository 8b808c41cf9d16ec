"""Where things live inside a Hugging Face causal LM: layers, attention output projection, MLP.

One `ArchSpec` describes an architecture from its config and its module tree, so hooks never
hard-code attribute paths. Every other part of veracity goes through it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: describing an architecture (a capture store's sites) needs no torch
    import torch.nn as nn

# Paths to the ModuleList of decoder layers, tried in order.
_LAYER_PATHS = (
    "model.layers",  # llama, mistral, qwen2/3, gemma/2/3 (text), phi3
    "model.language_model.layers",  # gemma3 multimodal wrapper
    "transformer.h",  # gpt2, gpt-j
    "gpt_neox.layers",  # gpt-neox / pythia
    "model.decoder.layers",  # opt
)
# Attention output projection inside one decoder layer: its *input* is the concatenated heads.
_ATTN_OUT_PATHS = ("self_attn.o_proj", "attn.c_proj", "attention.dense", "self_attn.out_proj", "attn.out_proj")
_MLP_PATHS = ("mlp", "feed_forward")
_EMBED_PATHS = ("model.embed_tokens", "model.language_model.embed_tokens", "transformer.wte", "gpt_neox.embed_in", "model.decoder.embed_tokens")

SUPPORTED_MODEL_TYPES = (
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "gpt2", "gpt_neox",
)


class UnsupportedArchitecture(ValueError):
    """The module tree lacks something veracity needs; the message names what."""


def get_submodule(root: nn.Module, path: str) -> nn.Module | None:
    """The submodule at dotted `path` under `root`, or None when any part is missing (probing an architecture's layout
    never raises)."""
    obj = root
    for part in path.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ArchSpec:
    """Architecture facts needed for hooking. Paths are relative to the CausalLM module."""

    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    layers_path: str
    attn_out_name: str  # relative to one decoder layer
    mlp_name: str  # relative to one decoder layer
    embed_path: str

    @property
    def attn_width(self) -> int:
        """Width of the o_proj input (heads * head_dim); differs from hidden_size on Gemma."""
        return self.n_heads * self.head_dim

    def layers(self, model: nn.Module) -> nn.ModuleList:
        """The model's decoder layers (the ModuleList at `layers_path`)."""
        return get_submodule(model, self.layers_path)  # type: ignore[return-value]

    def layer(self, model: nn.Module, i: int) -> nn.Module:
        """Decoder layer `i`."""
        return self.layers(model)[i]

    def attn_out(self, model: nn.Module, i: int) -> nn.Module:
        """The attention output projection of layer `i`: where ITI's per-head shift is applied and baked."""
        return get_submodule(self.layer(model, i), self.attn_out_name)  # type: ignore[return-value]

    def mlp(self, model: nn.Module, i: int) -> nn.Module:
        """The MLP block of layer `i`."""
        return get_submodule(self.layer(model, i), self.mlp_name)  # type: ignore[return-value]

    def resolve_layer(self, i: int) -> int:
        """Absolute layer index; negative counts from the end (-1 = last)."""
        j = i + self.n_layers if i < 0 else i
        if not 0 <= j < self.n_layers:
            raise IndexError(f"layer {i} out of range for a {self.n_layers}-layer model")
        return j

    def to_dict(self) -> dict:
        """The spec as a plain dict, for config.json and the capture manifest."""
        return asdict(self)

    @classmethod
    def from_model(cls, model: nn.Module) -> "ArchSpec":
        """Find layers, heads, KV heads, head size and the attention-output and MLP modules of a loaded model; an
        unknown layout raises `UnsupportedArchitecture` naming what is missing."""
        cfg = model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        model_type = getattr(cfg, "model_type", type(model).__name__)
        missing = []
        import torch.nn as nn

        layers_path = next((p for p in _LAYER_PATHS if isinstance(get_submodule(model, p), nn.ModuleList)), None)
        if layers_path is None:
            missing.append(f"decoder layers (tried {', '.join(_LAYER_PATHS)})")
            raise UnsupportedArchitecture(_msg(model_type, missing))
        layer0 = get_submodule(model, layers_path)[0]
        attn_out = next((p for p in _ATTN_OUT_PATHS if get_submodule(layer0, p) is not None), None)
        mlp = next((p for p in _MLP_PATHS if get_submodule(layer0, p) is not None), None)
        embed = next((p for p in _EMBED_PATHS if get_submodule(model, p) is not None), None)
        if attn_out is None:
            missing.append(f"attention output projection in a decoder layer (tried {', '.join(_ATTN_OUT_PATHS)})")
        if mlp is None:
            missing.append(f"MLP in a decoder layer (tried {', '.join(_MLP_PATHS)})")
        if embed is None:
            missing.append(f"token embedding (tried {', '.join(_EMBED_PATHS)})")
        n_heads = _first_attr(cfg, "num_attention_heads", "n_head")
        n_layers = _first_attr(cfg, "num_hidden_layers", "n_layer")
        hidden = _first_attr(cfg, "hidden_size", "n_embd")
        if n_heads is None:
            missing.append("config.num_attention_heads")
        if n_layers is None:
            missing.append("config.num_hidden_layers")
        if hidden is None:
            missing.append("config.hidden_size")
        if missing:
            raise UnsupportedArchitecture(_msg(model_type, missing))
        n_kv = _first_attr(cfg, "num_key_value_heads") or n_heads
        # Use config.head_dim where present: Gemma's differs from hidden/heads.
        head_dim = getattr(cfg, "head_dim", None) or hidden // n_heads
        return cls(
            model_type=model_type,
            n_layers=int(n_layers),
            n_heads=int(n_heads),
            n_kv_heads=int(n_kv),
            head_dim=int(head_dim),
            hidden_size=int(hidden),
            vocab_size=int(_first_attr(cfg, "vocab_size") or 0),
            layers_path=layers_path,
            attn_out_name=attn_out,  # type: ignore[arg-type]
            mlp_name=mlp,  # type: ignore[arg-type]
            embed_path=embed,  # type: ignore[arg-type]
        )


def _first_attr(obj, *names):
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _msg(model_type: str, missing: list[str]) -> str:
    return (
        f"unsupported architecture {model_type!r}: could not find " + "; ".join(missing)
        + f". Supported: {', '.join(SUPPORTED_MODEL_TYPES)}."
    )
