"""Capture: batched, padding-correct activations at residual, per-head and MLP sites, to a resumable store."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Activations": "store", "StoreDamaged": "store", "StoreError": "store", "StoreMismatch": "store",
    "mmap_safetensors": "store", "open_store": "store", "verify_store": "store",
    "CapturedAnswer": "generation", "POSITIONS": "generation", "answer_questions": "generation",
    "generate_with_capture": "generation",
    "KINDS": "sites", "Site": "sites", "parse_sites": "sites", "resolve_site_name": "sites",
    "answer_spans": "engine", "capture": "engine", "capture_dataset": "engine", "pad_batch": "engine",
    "tokenize": "engine",
    "hook_sites": "hooks",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
