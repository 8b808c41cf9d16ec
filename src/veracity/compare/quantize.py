"""An int8 dynamically quantised copy of a model: the embedded default assistant (no second download).

`torch.ao.quantization.quantize_dynamic` swaps every `nn.Linear` for an int8-weight Linear whose
activations are quantised on the fly. The copy shares the tokenizer, so it pairs with its original for
speculative decoding and distances; its next-token distributions differ enough (mean 1 - TV of order
0.4-0.9 depending on the prompt) to make acceptance statistics non-trivial. The original is untouched.
"""

from __future__ import annotations

import copy
import warnings

import torch

from ..models.arch import ArchSpec
from ..models.loader import LoadedModel


def quantized_copy(lm: LoadedModel, dtype: torch.dtype = torch.qint8) -> LoadedModel:
    """A new LoadedModel whose Linear layers are int8 dynamically quantised (CPU only)."""
    if lm.device.type != "cpu":
        raise ValueError("dynamic int8 quantisation runs on CPU only; load the model with device='cpu'")
    model = copy.deepcopy(lm.model).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notice
        qmodel = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=dtype, inplace=True)
    qmodel.eval()
    return LoadedModel(model=qmodel, tokenizer=lm.tokenizer, arch=ArchSpec.from_model(qmodel),
                       name=f"{lm.name}-int8", source=f"quantize_dynamic({lm.source or lm.name})")


def resolve_assistant(name: str, main: LoadedModel, device: str | None = None, dtype: str = "float32") -> LoadedModel:
    """An assistant by name: `int8` (or `<alias>-int8`, or `int8:<model>`) is a dynamically quantised copy;
    anything else goes through `veracity.models.load`."""
    from ..models import load

    if name in ("int8", f"{main.name}-int8"):
        return quantized_copy(main)
    if name.startswith("int8:"):
        return quantized_copy(load(name[5:], dtype=dtype, device="cpu"))
    if name.endswith("-int8"):
        return quantized_copy(load(name[:-5], dtype=dtype, device="cpu"))
    return load(name, dtype=dtype, device=device)
