"""Batched greedy answers to TruthfulQA questions (left padding), cut at the next "Q:" line.

Prompt styles: "original" = instruction + "\\n\\n" + QA primer + "\\n\\nQ: {question}\\nA:" (the ITI
setting), or "chat" = the model's chat template with the question as the user turn. Greedy decoding
with an attention mask makes the batched answers equal to one-at-a-time answers (tested).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Sequence

import torch

from ..models.padding import pad_batch, pad_token_id
from ..models.batching import AutoBatch, as_batcher
from .truthfulqa import INSTRUCTIONS, truthfulqa_prompt

InterventionFactory = Callable[[str], ContextManager]
STYLES = ("original", "chat")


@dataclass
class GeneratedAnswer:
    index: int  # question index (CSV row)
    question: str
    answer: str  # cut at the next "Q:" line, stripped
    raw: str  # the full decoded continuation
    n_tokens: int  # new tokens generated


def generation_prompt(question: str, style: str = "original", tokenizer=None, instruction: str = "default") -> str:
    if style == "original":
        return truthfulqa_prompt(question, instruction) + "\nA:"
    if style == "chat":
        from ..data.prompts import chat_prompt

        instr = INSTRUCTIONS.get(instruction, instruction)
        return chat_prompt(tokenizer, question, system=instr or None)
    raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(STYLES)}")


def cut_answer(text: str) -> str:
    """The answer up to the next line that starts a new question ("Q:"), stripped."""
    lines = text.split("\n")
    keep = []
    for i, line in enumerate(lines):
        if i > 0 and line.lstrip().startswith("Q:"):
            break
        keep.append(line)
    return "\n".join(keep).strip()


def answer_ended(text: str) -> bool:
    """True once `cut_answer(text)` can no longer change: a line after the first starts with "Q:"."""
    return any(line.lstrip().startswith("Q:") for line in text.split("\n")[1:])


class _StopWhen:
    """A per-row stopping criterion for `generate()`: row r is done once `stop(decode(new tokens of r))`."""

    def __init__(self, tok, start: int, stop: Callable[[str], bool]):
        self.tok, self.start, self.stop = tok, start, stop

    def __call__(self, input_ids, scores, **kwargs):
        rows = [self.stop(self.tok.decode(r[self.start:], skip_special_tokens=True)) for r in input_ids.tolist()]
        return torch.tensor(rows, dtype=torch.bool, device=input_ids.device)


def _encode(tokenizer, prompt: str, style: str) -> list[int]:
    # a chat template already carries its special tokens
    return list(tokenizer(prompt, add_special_tokens=style != "chat")["input_ids"])


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


def generate_answers(lm, questions: Sequence[str], indices: Sequence[int] | None = None, *, style: str = "original",
                     instruction: str = "default", max_new_tokens: int = 50, batch_size: int = 16,
                     intervention: InterventionFactory | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[GeneratedAnswer]:
    """Greedy TruthfulQA answers with the original prompt (or the chat template), batched and left-padded
    (`generate_greedy`), each cut at the next "Q:" line."""
    tok = lm.tokenizer
    indices = list(range(len(questions))) if indices is None else list(indices)
    enc = [_encode(tok, generation_prompt(q, style, tok, instruction), style) for q in questions]
    news = generate_greedy(lm, enc, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           intervention=intervention, progress=progress)
    out = []
    for i, new in enumerate(news):
        raw = tok.decode(new, skip_special_tokens=True)
        out.append(GeneratedAnswer(indices[i], questions[i], cut_answer(raw), raw, len(new)))
    return out
