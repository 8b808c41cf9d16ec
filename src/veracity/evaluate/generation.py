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

from ..capture import pad_batch
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


def _encode(tokenizer, prompt: str, style: str) -> list[int]:
    # a chat template already carries its special tokens
    return list(tokenizer(prompt, add_special_tokens=style != "chat")["input_ids"])


@torch.no_grad()
def generate_answers(lm, questions: Sequence[str], indices: Sequence[int] | None = None, *, style: str = "original",
                     instruction: str = "default", max_new_tokens: int = 50, batch_size: int = 16,
                     intervention: InterventionFactory | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[GeneratedAnswer]:
    """Greedy answers, `batch_size` prompts at a time, left-padded (prompts sorted by length to waste little
    padding; output in input order). `intervention("generate")` is entered around each batch's generate()."""
    model, tok = lm.model, lm.tokenizer
    indices = list(range(len(questions))) if indices is None else list(indices)
    prompts = [generation_prompt(q, style, tok, instruction) for q in questions]
    enc = [_encode(tok, p, style) for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    eos = tok.eos_token_id
    dev = next(model.parameters()).device
    order = sorted(range(len(enc)), key=lambda i: -len(enc[i]))
    out: list[GeneratedAnswer | None] = [None] * len(enc)
    done = 0
    for s in range(0, len(order), batch_size):
        chunk = order[s:s + batch_size]
        ids, mask, _ = pad_batch([enc[i] for i in chunk], pad, "left", dev)
        L = ids.shape[1]
        ctx = intervention("generate") if intervention is not None else contextlib.nullcontext()
        with ctx:
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                                 num_beams=1, temperature=None, top_p=None, top_k=None)
        for r, i in enumerate(chunk):
            new = gen[r, L:].tolist()
            if eos is not None and eos in new:
                new = new[:new.index(eos)]
            raw = tok.decode(new, skip_special_tokens=True)
            out[i] = GeneratedAnswer(indices[i], questions[i], cut_answer(raw), raw, len(new))
        done += len(chunk)
        if progress:
            progress(done, len(enc))
    return out  # type: ignore[return-value]
