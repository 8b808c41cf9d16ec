"""`ModelAdapter`: what every study asks of a causal LM, in one place and under one pad rule.

- `pad_id`: `models.padding.pad_token_id` (pad token, else EOS, else 0; padded positions are masked and
  never scored, so the choice changes no number);
- `pad`: a batch padded on either side, with position ids counted from each row's first real token;
- `loglik`: summed (or per-token) fp32 log-likelihoods of continuations given prefixes, prefix-cached and
  batched, with an optional intervention context (`models.scoring.score_requests`);
- `next_token_logprobs` / `position_logprobs`: fp32 log-probabilities at the next slot of left-padded
  prompts, or at chosen positions of right-padded sequences;
- `generate`: batched greedy continuations, optionally stopped per row (`models.generate.generate_greedy`).

`LoadedModel.adapter` gives one for a loaded model; the functions it calls stay importable on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .generate import generate_greedy
from .padding import pad_batch, pad_token_id
from .scoring import next_token_logprobs, position_logprobs, score_requests


@dataclass(frozen=True)
class ModelAdapter:
    """A causal LM with its tokenizer behind the few calls every study makes (encode, pad, next-token and per-position
    log-probabilities)."""
    model: Any  # an unmodified Hugging Face causal LM (hooks come and go through intervention contexts)
    tokenizer: Any

    @property
    def pad_id(self) -> int:
        """The id padded positions get (pad token, else EOS, else 0); they are masked, so the choice changes no
        number."""
        return pad_token_id(self.tokenizer)

    @property
    def device(self) -> torch.device:
        """The device of the model's first materialised parameter (CPU when every parameter is still on the meta
        device)."""
        return next((p.device for p in self.model.parameters() if p.device.type != "meta"), torch.device("cpu"))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` as a plain list."""
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def pad(self, seqs: Sequence[Sequence[int]], side: str = "right"):
        """(input_ids, attention_mask, position_ids) on the model's device."""
        return pad_batch(seqs, self.pad_id, side, self.device)

    def loglik(self, requests: Sequence[tuple[Sequence[int], Sequence[int]]], **kw) -> list:
        """`score_requests` with this model's pad id: one float (or per-token array) per (prefix, continuation)."""
        return score_requests(self.model, requests, pad_id=self.pad_id, **kw)

    def next_token_logprobs(self, seqs: Sequence[Sequence[int]], **kw) -> torch.Tensor:
        """Log-probabilities of the next token after each sequence, [N, vocab], batched and padded under the adapter's
        pad rule."""
        return next_token_logprobs(self.model, seqs, self.pad_id, **kw)

    def position_logprobs(self, seqs: Sequence[Sequence[int]], start: Sequence[int], **kw) -> list[torch.Tensor]:
        """Per sequence, the log-probabilities at every position from `start` on: what scoring an answer's tokens
        needs."""
        return position_logprobs(self.model, seqs, start, self.pad_id, **kw)

    def generate(self, enc: Sequence[Sequence[int]], **kw) -> list[list[int]]:
        """Greedy new-token ids per prompt (`generate_greedy`: max_new_tokens, batch_size, intervention, stop)."""
        return generate_greedy(self, enc, **kw)
