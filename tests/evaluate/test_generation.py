"""Generation: prompt strings, the "Q:" cut, and batched (left-padded) == one-at-a-time greedy."""

from __future__ import annotations

import contextlib

import pytest

from veracity.evaluate import generation as gen
from veracity.evaluate.truthfulqa import INSTRUCTION_DEFAULT, QA_PRIMER

QUESTIONS = ["What happens if you eat watermelon seeds?", "Why?", "Where is the capital of France located today?"]


def test_prompt_and_cut():
    assert gen.generation_prompt("Why?") == INSTRUCTION_DEFAULT + "\n\n" + QA_PRIMER + "\n\nQ: Why?\nA:"
    assert gen.cut_answer(" Paris.\n\nQ: Next?\nA: x") == "Paris."
    assert gen.cut_answer(" It is 3.\nMore text\nQ: again") == "It is 3.\nMore text"
    assert gen.cut_answer(" Q: tricky first line") == "Q: tricky first line"


def _check_batched_equals_single(lm, style, n_new):
    batched = gen.generate_answers(lm, QUESTIONS, [10, 11, 12], style=style, max_new_tokens=n_new, batch_size=3)
    for q, idx, b in zip(QUESTIONS, [10, 11, 12], batched):
        single = gen.generate_answers(lm, [q], [idx], style=style, max_new_tokens=n_new, batch_size=1)[0]
        assert (b.index, b.raw, b.answer) == (single.index, single.raw, single.answer)
    return batched


def test_batched_equals_one_at_a_time_tiny(tiny_llama):
    out = _check_batched_equals_single(tiny_llama, "original", 12)
    assert [a.index for a in out] == [10, 11, 12] and all(a.n_tokens > 0 for a in out)
    _check_batched_equals_single(tiny_llama, "chat", 8)


@pytest.mark.real
def test_batched_equals_one_at_a_time_real_model(real_lm):
    """Left-padded greedy batches on both real models (Gemma 3: sliding-window layers, <bos> first)."""
    out = _check_batched_equals_single(real_lm, "original", 10)
    assert all(a.answer for a in out)


def test_intervention_entered_around_generate(tiny_llama):
    phases = []

    @contextlib.contextmanager
    def f(phase):
        phases.append(phase)
        yield

    gen.generate_answers(tiny_llama, QUESTIONS[:2], max_new_tokens=2, batch_size=1, intervention=f)
    assert phases == ["generate", "generate"]


def test_stop_gives_the_same_text_sooner(tiny_llama):
    """Each row stops growing once `stop` holds for its text, independently of the other rows: the stopped
    text equals the full run's first k tokens, k chosen per row by hand (3, 5, 7 of 10)."""
    tok = tiny_llama.tokenizer
    enc = [list(tok(t)["input_ids"]) for t in ("hello world", "The cat sat on", "1 2 3 4")]  # rows that differ
    full = gen.generate_greedy(tiny_llama, enc, max_new_tokens=10, batch_size=3)
    want = [tok.decode(f[:k], skip_special_tokens=True) for f, k in zip(full, (3, 5, 7))]
    got = gen.generate_greedy(tiny_llama, enc, max_new_tokens=10, batch_size=3, stop=set(want).__contains__)
    assert [tok.decode(g, skip_special_tokens=True) for g in got] == want
    assert [g[:k] for g, k in zip(got, (3, 5, 7))] == [f[:k] for f, k in zip(full, (3, 5, 7))]


def test_answer_ended_is_the_cut_rule():
    for text in ("Paris.\n\nQ: next", "Paris.\n  Q: x", "Paris.\nQ", "Q: a", "Paris."):
        assert gen.answer_ended(text) == (gen.cut_answer(text + "\nmore") == gen.cut_answer(text + "\nQ: z")
                                          and gen.cut_answer(text) != text.strip())
