"""Capture: batched, padding-correct activations at residual, per-head and MLP sites, to a resumable store."""

from .engine import answer_spans, capture, capture_dataset, pad_batch, tokenize
from .generation import POSITIONS, CapturedAnswer, answer_questions, generate_with_capture
from .hooks import hook_sites
from .sites import KINDS, Site, parse_sites, resolve_site_name
from .store import Activations, StoreDamaged, StoreError, StoreMismatch, mmap_safetensors, open_store, verify_store

__all__ = ["Activations", "CapturedAnswer", "KINDS", "POSITIONS", "answer_questions", "generate_with_capture",
           "Site", "StoreDamaged", "StoreError", "StoreMismatch", "answer_spans", "capture", "capture_dataset",
           "hook_sites", "mmap_safetensors", "open_store", "pad_batch", "parse_sites", "resolve_site_name",
           "tokenize", "verify_store"]
