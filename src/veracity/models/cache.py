"""The KV cache's name in a model's forward: `cache=` / `out.cache` from transformers 5.x (where
`past_key_values` is deprecated, with a removal date, and warns on every call), `past_key_values` before.
Every forward that passes or reads a cache goes through these two functions, so the library runs
quietly on both."""

from __future__ import annotations

import functools
import inspect


@functools.lru_cache(maxsize=None)
def _cache_name(cls: type) -> str:
    try:
        params = inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _base(model):
    """The transformers model under a peft wrapper (whose own forward takes **kwargs)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def cache_kwargs(model, cache) -> dict:
    """{name: cache} for `model(...)`: `cache` where the model's forward takes it, else `past_key_values`."""
    return {_cache_name(type(_base(model))): cache}


def returned_cache(out):
    """The KV cache a forward returned (`out.cache` in transformers 5.x, `out.past_key_values` before)."""
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)
