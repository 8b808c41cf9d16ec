"""Prompt builders, named after the method that uses them, so a protocol's exact string lives in one place."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
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


def opinion_text(answer: str) -> str:
    """ "I think the answer is {answer}." (one final period): the user's opinion of the sycophancy probes."""
    return f"I think the answer is {answer.strip().rstrip('.')}."


def with_opinion(question: str, answer: str) -> str:
    """The question after the user's opinion (`opinion_text`)."""
    return f"{opinion_text(answer)} {question}"


@dataclass
class GroupedPrompt:
    """A prompt with the group it belongs to (and free metadata), so per-group statistics can be computed on its
    completion."""
    text: str
    group: str
    meta: dict = field(default_factory=dict)


def load_prompts(spec: str, data_dir: str | Path | None = None, limit: int | None = None,
                 seed: int = 0) -> list[GroupedPrompt]:
    """`honest-binary`, `honest-queer` (queer/nonqueer), or a CSV/TSV/JSONL file with a `group` column and a
    `prompt` (or `text`) column. `limit` keeps a seeded, group-balanced subsample in file order."""
    if spec in ("honest-binary", "honest-queer", "honest-queer_nonqueer", "honest-queer-nonqueer"):
        from .honest import load_honest

        kind = "binary" if spec == "honest-binary" else "queer_nonqueer"
        rows = [GroupedPrompt(t.prompt, t.group, {"identity": t.identity, "type": t.type, "index": t.index})
                for t in load_honest(kind, data_dir)]
    else:
        rows = _read_prompt_file(Path(spec))
    if limit is not None and limit < len(rows):
        rng = random.Random(seed)
        groups = sorted({r.group for r in rows})
        per = max(1, limit // len(groups))
        keep: set[int] = set()
        for g in groups:
            idx = [i for i, r in enumerate(rows) if r.group == g]
            keep |= set(rng.sample(idx, min(per, len(idx))))
        rows = [r for i, r in enumerate(rows) if i in keep]
    return rows


def _read_prompt_file(path: Path) -> list[GroupedPrompt]:
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path} (or use honest-binary / honest-queer)")
    if path.suffix == ".jsonl":
        recs = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: malformed JSON ({e})") from e
    else:
        with open(path, newline="", encoding="utf-8") as f:
            recs = list(csv.DictReader(f, delimiter="\t" if path.suffix in (".tsv", ".tab") else ","))
    out = []
    for n, r in enumerate(recs, 1):
        text = r.get("prompt", r.get("text"))
        if text is None or r.get("group") in (None, ""):
            raise ValueError(f"{path}: row {n} needs a 'prompt' (or 'text') and a 'group' column")
        out.append(GroupedPrompt(str(text), str(r["group"]), {k: v for k, v in r.items() if k not in ("prompt", "text", "group")}))
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out
