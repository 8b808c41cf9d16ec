"""Batches that fit the device: run work over chunks, halve the chunk on out-of-memory, remember what worked.

One `AutoBatch` is shared by all the calls of one job (capture, MC scoring, generation), so the size
found on the first out-of-memory error is kept for every later chunk and call instead of being found
again. Results do not depend on the chunking: every caller's work is exact per row (capture, MC scores
and greedy generation are tested batch-independent), so a halved run gives the same output.

`batch_size` arguments across veracity accept an int (the largest size tried), "auto" (start at
`AUTO_START` on CUDA, `AUTO_START_CPU` elsewhere, where out-of-memory is not an exception but the OS
killing the process) or an `AutoBatch` (to share the remembered size between calls).
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
AUTO_START = 128
AUTO_START_CPU = 16


def is_oom(e: BaseException) -> bool:
    """An out-of-memory error from torch (CUDA, MPS, XPU) or a RuntimeError saying so."""
    import torch
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
    if oom_types and isinstance(e, oom_types):
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def _free_cached() -> None:
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class AutoBatch:
    """The current batch size of one job: starts at `size`, halves on out-of-memory, never grows back.

    `history` lists every size that failed, so a run can record what happened.
    """

    def __init__(self, size: int | str = "auto", device: str | torch.device | None = None):
        import torch
        if size == "auto":
            dev = torch.device(device) if device is not None else None
            size = AUTO_START if (dev is None and torch.cuda.is_available()) or (dev is not None and dev.type == "cuda") \
                else AUTO_START_CPU
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"batch size must be a positive integer or 'auto', got {size!r}")
        self.size = size
        self.history: list[int] = []

    def __repr__(self) -> str:
        return f"AutoBatch(size={self.size}, failed={self.history})"

    def map(self, items: Sequence[T], fn: Callable[[list[T]], None]) -> None:
        """Call `fn(chunk)` over consecutive chunks of `items` (order kept); a chunk that runs out of
        memory is retried in halves (down to one item, then the error is raised)."""
        i = 0
        n = len(items)
        while i < n:
            chunk = list(items[i:i + self.size])
            failed = False
            try:
                fn(chunk)
            except Exception as e:  # noqa: BLE001 - re-raised unless it is out-of-memory
                if not is_oom(e) or len(chunk) == 1:
                    raise
                failed = True
            if failed:  # outside the except block: the traceback (and its tensors) is gone
                self.history.append(len(chunk))
                self.size = max(1, len(chunk) // 2)
                _free_cached()
                continue
            i += len(chunk)


def as_batcher(batch_size: "int | str | AutoBatch", device: str | torch.device | None = None) -> AutoBatch:
    """An `AutoBatch` for a `batch_size` argument (an existing one is returned as is, keeping its size)."""
    if isinstance(batch_size, AutoBatch):
        return batch_size
    return AutoBatch(batch_size, device)


def parse_batch_size(text: "str | int") -> "int | str":
    """CLI value: a positive integer or "auto"; ValueError otherwise."""
    if isinstance(text, int):
        if text < 1:
            raise ValueError(f"--batch-size must be a positive integer or 'auto', got {text}")
        return text
    t = str(text).strip().lower()
    if t == "auto":
        return "auto"
    try:
        v = int(t)
    except ValueError:
        raise ValueError(f"--batch-size must be a positive integer or 'auto', got {text!r}") from None
    if v < 1:
        raise ValueError(f"--batch-size must be a positive integer or 'auto', got {text!r}")
    return v
