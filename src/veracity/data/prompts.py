"""Prompt builders, named after the method that uses them, so a protocol's exact string lives in one place."""

from __future__ import annotations

from typing import Any


def iti_prompt(question: str, answer: str) -> str:
    """ITI's `format_truthfulqa`: "Q: {question} A: {answer}" (one line, no primer)."""
    return f"Q: {question} A: {answer}"


def yes_no_prompt(question: str, passage: str | None = None) -> str:
    """The stem of a CCS contrast pair: "[passage\\n\\n]Question: {question}?\\nAnswer:".

    BoolQ questions come lower-case without a "?"; one "?" is ensured, the wording is kept.
    """
    q = question.strip().rstrip("?").rstrip()
    stem = f"Question: {q}?\nAnswer:"
    return f"{passage.strip()}\n\n{stem}" if passage else stem


def ccs_contrast_pair(question: str, passage: str | None = None, style: str = "yes-no") -> tuple[str, str]:
    """(x_plus, x_minus) for a yes/no question: the same prompt answered " Yes" and " No".

    Template (style "yes-no", Burns et al.'s question/answer form):
        "{passage}\\n\\nQuestion: {question}?\\nAnswer: Yes"   /   "... Answer: No"
    (without a passage the prompt starts at "Question:"). The passage is included as in the
    LLaMA-CCS BoolQ experiments; style "llama-ccs" reproduces that repo's exact `format_boolq`:
        "{passage}\\n\\nAfter reading this passage, I have a question: {question}?\\n\\nTrue or False: True" / "False".
    """
    if style == "yes-no":
        stem = yes_no_prompt(question, passage)
        return f"{stem} Yes", f"{stem} No"
    if style == "llama-ccs":
        head = f"{passage}\n\n" if passage else ""
        return tuple(f"{head}After reading this passage, I have a question: {question}?\n\nTrue or False: {a}"
                     for a in ("True", "False"))  # type: ignore[return-value]
    raise ValueError(f"unknown contrast-pair style {style!r}; use 'yes-no' or 'llama-ccs'")


def chat_prompt(tokenizer: Any, user: str, system: str | None = None) -> str:
    """The model's own chat format when its tokenizer has a template, else plain "Q: {user}\\nA:".

    A template that refuses a system role (older Gemma) gets the system text prepended to the user turn.
    """
    if getattr(tokenizer, "chat_template", None):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        try:
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception:
            if not system:
                raise
            return tokenizer.apply_chat_template([{"role": "user", "content": f"{system}\n\n{user}"}],
                                                 tokenize=False, add_generation_prompt=True)
    return f"{system}\n\nQ: {user}\nA:" if system else f"Q: {user}\nA:"
