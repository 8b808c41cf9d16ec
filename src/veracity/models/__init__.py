"""Models: load any causal LM or alias, and describe where its parts live (`ArchSpec`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "ALIASES": "loader", "DEFAULT_MODEL": "loader", "LoadedModel": "loader", "ModelNotAvailable": "loader",
    "cache_dir": "loader", "converted_gguf_dir": "loader", "list_aliases": "loader", "load": "loader", "load_checked": "loader",
    "weights_fingerprint": "loader",
    "ArchSpec": "arch", "UnsupportedArchitecture": "arch",
    "TINY_ALIASES": "tiny", "build_tiny": "tiny", "byte_tokenizer": "tiny",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
