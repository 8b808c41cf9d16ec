"""MC and generation under a prepared method: its prompt as the context, its model, its steer's hooks."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ..evaluate.truthfulqa import MCResult, build_mc_question, make_requests, result_from_scores
from .prompts import uses_chat_template


def question_text(item, protocol: str) -> str:
    """The question as the protocol asks it: lm-eval's MC question text (where the item has one) or the plain
    question."""
    return (item.mc_question or item.question) if protocol == "lm-eval" else item.question


def score_mc_prompted(pm, items: Sequence, protocol: str = "truthfulqa", batch_size: int = 16,
                      question_fn: Callable[[object], str] | None = None) -> tuple[list[MCResult], float]:
    """MC results of the `PreparedMethod` `pm` on `items` with the method's prompt as context (choices and
    labels from the protocol); returns (results, mean context tokens). `question_fn(item)` can rewrite the
    question (the sycophancy probe prepends an opinion)."""
    tok, adapter = pm.lm.tokenizer, pm.lm.adapter
    factory = pm.factory()
    special = not uses_chat_template(pm.spec.prompt, tok)
    out, n_tok = [], []
    for item in items:
        q = build_mc_question(item, protocol, "none")
        ctx, sep = pm.prompt(question_fn(item) if question_fn else question_text(item, protocol))
        choices = [sep + c[1:] if c.startswith(" ") else sep + c for c in q.choices]
        q = dataclasses.replace(q, context=ctx, choices=choices)
        reqs = make_requests(tok, ctx, choices, protocol, add_special_tokens=special)
        n_tok.append(len(reqs[0][0]))
        scores = adapter.loglik(reqs, batch_size=batch_size, intervention=factory)
        out.append(result_from_scores(q, scores))
    return out, float(np.mean(n_tok)) if n_tok else 0.0


def generate_prompted(pm, questions: Sequence[str], max_new_tokens: int = 50, batch_size: int = 16) -> list[str]:
    """Greedy answers to `questions` with the method's prompt (and model/steer), cut at the next "Q:"."""
    from ..evaluate.generation import answer_ended, cut_answer, generate_greedy

    tok = pm.lm.tokenizer
    special = not uses_chat_template(pm.spec.prompt, tok)
    enc = [list(tok(pm.prompt(q)[0], add_special_tokens=special)["input_ids"]) for q in questions]
    news = generate_greedy(pm.lm, enc, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           intervention=pm.factory(), stop=answer_ended)  # the cut's rule: same answers, sooner
    return [cut_answer(tok.decode(new, skip_special_tokens=True)) for new in news]
