"""MC and generation under a prepared method: the one scoring path of every study's fold evaluation.

A method's prompt poses the question (its context and answer separator); a method without one
(``spec.prompt is None``: a plain model or a bare steer, as `veracity eval` and ITI validation score them) is
posed in the protocol's own prompt (TruthfulQA's instruction + primer, lm-eval's primer), whose shared head
is cached across questions. Either way the choices are scored by `models.scoring.score_requests` under the
method's model and steer hooks, and answers come from `generate_greedy`, cut at the next "Q:"."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from ..evaluate.truthfulqa import MCResult, build_mc_question, make_requests, result_from_scores, shared_prefix_for
from ..models.batching import as_batcher
from ..models.padding import pad_token_id
from ..models.scoring import score_requests
from .prompts import uses_chat_template


def question_text(item, protocol: str) -> str:
    """The question as the protocol asks it: lm-eval's MC question text (where the item has one) or the plain
    question."""
    return (item.mc_question or item.question) if protocol == "lm-eval" else item.question


def _special(pm) -> bool:
    """Whether encodings add the tokenizer's special tokens (a chat template carries its own)."""
    return pm.spec.prompt is None or not uses_chat_template(pm.spec.prompt, pm.lm.tokenizer)


def score_continuations(pm, context: str, continuations: Sequence[str], protocol: str = "truthfulqa", *,
                        batch_size=16, factory=None, shared=None) -> tuple[list[float], int]:
    """Summed log-probs of `continuations` after `context` under `pm`'s model and `factory` (default the
    method's steer hooks); returns (scores, context tokens). A factory with a per-question MC start (ITI's
    legacy shift) gets this context's."""
    tok = pm.lm.tokenizer
    reqs = make_requests(tok, context, continuations, protocol, add_special_tokens=_special(pm))
    iv = pm.factory() if factory is None else factory
    if hasattr(iv, "for_mc_context"):
        iv = iv.for_mc_context(tok, context, min(len(p) for p, _ in reqs))
    scores = score_requests(pm.lm.model, reqs, batch_size=batch_size, intervention=iv, pad_id=pad_token_id(tok),
                            shared=shared)
    return scores, len(reqs[0][0])


def score_mc_prompted(pm, items: Sequence, protocol: str = "truthfulqa", batch_size=16,
                      question_fn: Callable[[object], str] | None = None, *, instruction: str = "default",
                      factory=None, progress: Callable[[int, int], None] | None = None
                      ) -> tuple[list[MCResult], float]:
    """MC results of the `PreparedMethod` `pm` on `items` (choices and labels from the protocol), posed in the
    method's prompt, or in the protocol's own prompt (with `instruction`) for a method without one; returns
    (results, mean context tokens). `question_fn(item)` can rewrite the question of a method's prompt (the
    sycophancy probe prepends an opinion). `factory` overrides the method's hooks (ITI's legacy MC start)."""
    own = pm.spec.prompt is None
    if own and question_fn is not None:
        raise ValueError("question_fn needs a method prompt; the protocol's own prompt fixes the question")
    batcher = as_batcher(batch_size, next(pm.lm.model.parameters()).device)  # one size, kept across questions
    shared = shared_prefix_for(pm.lm.tokenizer, protocol, instruction) if own else None
    out, n_tok = [], []
    for k, item in enumerate(items):
        q = build_mc_question(item, protocol, instruction if own else "none")
        if not own:
            ctx, sep = pm.prompt(question_fn(item) if question_fn else question_text(item, protocol))
            q = dataclasses.replace(q, context=ctx,
                                    choices=[sep + c[1:] if c.startswith(" ") else sep + c for c in q.choices])
        scores, n = score_continuations(pm, q.context, q.choices, protocol, batch_size=batcher, factory=factory,
                                        shared=shared)
        n_tok.append(n)
        out.append(result_from_scores(q, scores))
        if progress:
            progress(k + 1, len(items))
    return out, float(np.mean(n_tok)) if n_tok else 0.0


def generation_prompts(pm, questions: Sequence[str], *, style: str = "original",
                       instruction: str = "default") -> list[list[int]]:
    """The token ids `generate_prompted` answers from: the method's prompt, or for a method without one the
    protocol's generation prompt (`style`, `instruction`); a chat template carries its own special tokens."""
    from ..evaluate.generation import generation_prompt

    tok = pm.lm.tokenizer
    if pm.spec.prompt is None:
        special = style != "chat"
        prompts = [generation_prompt(q, style, tok, instruction) for q in questions]
    else:
        special = _special(pm)
        prompts = [pm.prompt(q)[0] for q in questions]
    return [list(tok(p, add_special_tokens=special)["input_ids"]) for p in prompts]


def generate_prompted(pm, questions: Sequence[str], max_new_tokens: int = 50, batch_size=16, *,
                      style: str = "original", instruction: str = "default", factory=None,
                      progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Greedy answers to `questions` with the method's prompt (and model/steer), cut at the next "Q:"; a method
    without a prompt answers in the protocol's generation prompt (`style`, `instruction`)."""
    from ..evaluate.generation import answer_ended, cut_answer, generate_greedy

    tok = pm.lm.tokenizer
    enc = generation_prompts(pm, questions, style=style, instruction=instruction)
    news = generate_greedy(pm.lm, enc, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           intervention=pm.factory() if factory is None else factory, stop=answer_ended,
                           progress=progress)  # the cut's rule: same answers, sooner
    return [cut_answer(tok.decode(new, skip_special_tokens=True)) for new in news]
