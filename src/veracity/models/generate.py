"""Batched greedy generation from a causal LM: left-padded, sorted by length, batch-independent."""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch

from .batching import AutoBatch, as_batcher
from .padding import pad_batch, pad_token_id
from .scoring import InterventionFactory


class _StopWhen:
    """A per-row stopping criterion for `generate()`: row r is done once `stop(decode(new tokens of r))`."""

    def __init__(self, tok, start: int, stop: Callable[[str], bool]):
        self.tok, self.start, self.stop = tok, start, stop

    def __call__(self, input_ids, scores, **kwargs):
        rows = [self.stop(self.tok.decode(r[self.start:], skip_special_tokens=True)) for r in input_ids.tolist()]
        return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate_greedy(lm, enc: Sequence[Sequence[int]], *, max_new_tokens: int = 50,
                    batch_size: "int | str | AutoBatch" = 16,
                    intervention: InterventionFactory | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    stop: Callable[[str], bool] | None = None) -> list[list[int]]:
    """Greedy continuations (new token ids, cut at EOS) of tokenised prompts, `batch_size` at a time,
    left-padded; prompts are sorted by length to waste little padding, output is in input order.
    `stop(decoded continuation)`: a row stops growing once it is true (the batch stops when every row has),
    so callers that cut the text by the same rule get the same text sooner (tokens after the stop point
    are pad or missing).
    `intervention("generate")` is entered around each batch's generate(). `batch_size`: an int, "auto" or
    a shared `AutoBatch` (halved on out-of-memory; greedy answers do not depend on the batch)."""
    model, tok = lm.model, lm.tokenizer
    pad = pad_token_id(tok)
    eos = tok.eos_token_id
    dev = next(model.parameters()).device
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    out: list[list[int]] = [[] for _ in enc]
    done = 0

    def run_chunk(chunk: list[int]) -> None:  # halved and retried by the batcher on out-of-memory
        nonlocal done
        ids, mask, _ = pad_batch([list(enc[i]) for i in chunk], pad, "left", dev)
        L = ids.shape[1]
        ctx = intervention("generate") if intervention is not None else contextlib.nullcontext()
        extra = {}
        if stop is not None:
            from transformers import StoppingCriteriaList

            extra["stopping_criteria"] = StoppingCriteriaList([_StopWhen(tok, L, stop)])
        with ctx:
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                                 num_beams=1, temperature=None, top_p=None, top_k=None, **extra)
        for r, i in enumerate(chunk):
            new = gen[r, L:].tolist()
            if eos is not None and eos in new:
                new = new[:new.index(eos)]
            out[i] = new
        done += len(chunk)
        if progress:
            progress(done, len(enc))

    as_batcher(batch_size, dev).map(order, run_chunk)
    return out
