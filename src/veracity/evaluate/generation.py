"""Batched greedy answers to TruthfulQA questions (left padding), cut at the next "Q:" line.

Prompt styles: "original" = instruction + "\\n\\n" + QA primer + "\\n\\nQ: {question}\\nA:" (the ITI
setting), or "chat" = the model's chat template with the question as the user turn. Greedy decoding
with an attention mask makes the batched answers equal to one-at-a-time answers (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..models.generate import generate_greedy  # noqa: F401 (re-exported: the generator lives with the model adapter)
from ..models.scoring import InterventionFactory
from .truthfulqa import INSTRUCTIONS, truthfulqa_prompt

STYLES = ("original", "chat")


@dataclass
class GeneratedAnswer:
    """One generated TruthfulQA answer: the text the judges read (cut at the next "Q:") and the raw continuation."""
    index: int  # question index (CSV row)
    question: str
    answer: str  # cut at the next "Q:" line, stripped
    raw: str  # the full decoded continuation
    n_tokens: int  # new tokens generated


def generation_prompt(question: str, style: str = "original", tokenizer=None, instruction: str = "default") -> str:
    """The prompt a TruthfulQA answer is generated from: the original few-shot QA prompt, or the model's chat
    template."""
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


def _encode(tokenizer, prompt: str, style: str) -> list[int]:
    # a chat template already carries its special tokens
    return list(tokenizer(prompt, add_special_tokens=style != "chat")["input_ids"])


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
