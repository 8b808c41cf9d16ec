"""Batches of token lists: one pad-token rule and one padder for either side.

The pad rule: the tokenizer's pad token; else its end-of-sequence token (what `models.load` also installs
as the pad token); else id 0. Padded positions are masked out of attention and never scored, so the id
only has to be a valid embedding row: any of the three gives the same numbers for the real tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


def pad_token_id(tokenizer) -> int:
    """The pad id for `tokenizer` (module doc)."""
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    if getattr(tokenizer, "eos_token_id", None) is not None:
        return int(tokenizer.eos_token_id)
    return 0


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right", device=None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) for token lists padded on `side` ("left" | "right").
    Position ids count from 0 at each row's first real token, so left padding shifts nothing (a model that
    derives positions from the mask gives the same numbers)."""
    import torch
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        if not len(s):
            continue
        if side == "left":
            ids[i, T - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, T - len(s):] = 1
        else:
            ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            mask[i, : len(s)] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    if device is not None:
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    return ids, mask, pos


def pad_after_prefix(rows: Sequence[Sequence[int]], prefix_len: int, pad_id: int, device=None,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows that continue a cached prefix of `prefix_len` tokens (MC answers after their question, prompts
    after a shared few-shot head): (input_ids [n, L] right-padded, attention_mask [n, prefix_len + L] with
    the prefix and each row's real tokens on, position_ids [n, L] counting on from prefix_len). L >= 1, so
    empty rows (everything read at the prefix's last position) still make a valid forward."""
    import torch
    n, L = len(rows), max(1, max((len(r) for r in rows), default=0))
    ids = torch.full((n, L), pad_id, dtype=torch.long)
    mask = torch.zeros((n, prefix_len + L), dtype=torch.long)
    mask[:, :prefix_len] = 1
    for r, row in enumerate(rows):
        if len(row):
            ids[r, :len(row)] = torch.tensor(list(row), dtype=torch.long)
            mask[r, prefix_len:prefix_len + len(row)] = 1
    pos = torch.arange(prefix_len, prefix_len + L).unsqueeze(0).expand(n, L)
    if device is not None:
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    return ids, mask, pos


def expand_cache(cache, n: int):
    """A copy of a prefix's KV cache for `n` rows (the original stays reusable for the next batch)."""
    import copy

    cache = copy.deepcopy(cache)
    if n > 1:
        cache.batch_repeat_interleave(n)
    return cache
