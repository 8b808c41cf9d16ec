"""Models: load any causal LM or alias, and describe where its parts live (`ArchSpec`)."""

from .arch import ArchSpec, UnsupportedArchitecture
from .loader import (ALIASES, DEFAULT_MODEL, LoadedModel, ModelNotAvailable, cache_dir, converted_gguf_dir,
                     list_aliases, load, weights_fingerprint)
from .tiny import TINY_ALIASES, build_tiny, byte_tokenizer

__all__ = ["ALIASES", "ArchSpec", "DEFAULT_MODEL", "LoadedModel", "ModelNotAvailable", "TINY_ALIASES",
           "UnsupportedArchitecture", "build_tiny", "byte_tokenizer", "cache_dir", "converted_gguf_dir",
           "list_aliases", "load", "weights_fingerprint"]
