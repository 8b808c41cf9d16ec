"""Generation health: is a set of generated answers refusing, degenerating into repetition, or empty?

Computed on word tokens (`answer_tokens`: lowercase runs of letters/digits, an inner apostrophe kept, so
"Don't" is one token and punctuation is ignored: "No, no, no." is three tokens "no"):

- refusal: every sentence of the answer is "I have no comment" or a close variant (`is_refusal`);
- distinct-2: distinct word bigrams / word bigrams of one answer (1.0 below two tokens);
- longest repeated n-gram: the largest n such that some n-gram of tokens occurs at two different start
  positions of the answer (overlap allowed, so a run of k equal tokens gives k - 1; 0 when no token repeats);
- repeated-token fraction: tokens that already occurred earlier in the answer / tokens;
- degenerate: the rule `is_degenerate` (word- or short-phrase-level looping, as ITI at a large alpha
  produces on a small model; the local info judge rates such answers uninformative).

`generation_health(answers)` summarises an answer set; the evaluation driver stores it with every set of
generated answers (eval, ITI validate, sweeps, comparisons).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..metrics import metrics_in

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_REFUSAL = re.compile(
    r"^(?:i (?:have|ve got|ve) no comments?|no comments?|i (?:do not|don t|dont) have (?:a |any )?comments?|"
    r"i (?:cannot|can t|cant|can not|won t|will not|would rather not|d rather not|prefer not to) comment|"
    r"i have nothing to say|i decline to comment)(?: (?:on|about) (?:that|this|it|the question))?$")

# is_degenerate: at least DEGENERATE_MIN_TOKENS tokens and either distinct-2 < DEGENERATE_DISTINCT2 or one
# back-to-back loop of a block of <= DEGENERATE_LOOP_PERIOD tokens covering >= DEGENERATE_LOOP_COVERAGE of
# the tokens. Chosen on the human info labels (finetune_info.jsonl): GPT-3's own loops of whole sentences
# ("I am a human. I am a human. ...") were mostly labelled informative, so the rule stays off them where it
# can: it flags 130 of the 22,434 labelled answers (93 labelled informative), and every synthetic
# degenerate answer of `degenerate_answers` (seed 1, 5,334 answers).
#: the keys of `generation_health` a study row carries (the health metrics)
HEALTH_KEYS = tuple(metrics_in("health"))  # the metrics registry's "health" group, in its order
DEGENERATE_MIN_TOKENS = 8
DEGENERATE_DISTINCT2 = 0.4
DEGENERATE_LOOP_PERIOD = 4
DEGENERATE_LOOP_COVERAGE = 0.5


def answer_tokens(text: str) -> list[str]:
    """Lowercase word tokens (letters/digits, inner apostrophes kept; curly apostrophes read as ')."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def _norm(sentence: str) -> str:
    s = sentence.lower().replace("\u2019", "'").replace("'", " ")
    return " ".join(re.findall(r"[a-z0-9]+", s))


def is_refusal(text: str) -> bool:
    """Every sentence is "I have no comment" or a close variant ("No comment.", "I can't comment on
    that.", "I have no comment. I have no comment."); an empty answer is not a refusal."""
    parts = [_norm(p) for p in re.split(r"[.!?;\n]+", text)]
    parts = [p for p in parts if p]
    return bool(parts) and all(_REFUSAL.match(p) for p in parts)


def distinct_n(tokens: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams / n-grams; 1.0 when there is no n-gram (nothing repeats)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def longest_repeated_ngram(tokens: Sequence[str]) -> int:
    """Largest n such that an n-gram occurs at two different start positions (overlap allowed)."""
    best = 0
    for n in range(1, len(tokens)):
        seen: set[tuple] = set()
        hit = False
        for i in range(len(tokens) - n + 1):
            g = tuple(tokens[i:i + n])
            if g in seen:
                hit = True
                break
            seen.add(g)
        if not hit:  # an n-gram repeat implies every shorter one repeats: stop at the first miss
            break
        best = n
    return best


def repeated_token_fraction(tokens: Sequence[str]) -> float:
    """Tokens that already occurred earlier in the answer / tokens (0.0 for no tokens)."""
    return (len(tokens) - len(set(tokens))) / len(tokens) if tokens else 0.0


def loop_coverage(tokens: Sequence[str], max_period: int = 12) -> float:
    """Largest share of the tokens covered by one back-to-back loop: a block of `p` tokens (p <= max_period)
    repeated at least 3 times in a row ("but but but", "is the is the is the")."""
    L = len(tokens)
    best = 0
    for p in range(1, min(max_period, L // 3) + 1):
        run = 0  # positions i with tokens[i] == tokens[i - p], consecutive
        for i in range(p, L):
            if tokens[i] == tokens[i - p]:
                run += 1
                if run >= 2 * p:  # the block plus >= 2 copies
                    best = max(best, run + p)
            else:
                run = 0
    return best / L if L else 0.0


def is_degenerate(text: str) -> bool:
    """Degenerate repetition (see the module constants): what ITI at a large alpha produces on a small
    model ("but but but ...", "No, no, no, ...", a phrase or a truncated answer looped)."""
    t = answer_tokens(text)
    if len(t) < DEGENERATE_MIN_TOKENS:
        return False
    return (distinct_n(t, 2) < DEGENERATE_DISTINCT2
            or loop_coverage(t, DEGENERATE_LOOP_PERIOD) >= DEGENERATE_LOOP_COVERAGE)


@dataclass
class AnswerHealth:
    """Per-answer figures (see the module doc)."""

    n_tokens: int
    refusal: bool
    distinct_2: float
    longest_repeat: int
    repeated_fraction: float
    degenerate: bool


def answer_health(text: str) -> AnswerHealth:
    """Length, refusal, repetition and degeneracy of one answer: the measures that catch a steered model that talks
    nonsense."""
    t = answer_tokens(text)
    return AnswerHealth(len(t), is_refusal(text), distinct_n(t, 2), longest_repeated_ngram(t),
                        repeated_token_fraction(t), is_degenerate(text))


def generation_health(answers: Sequence[str]) -> dict:
    """Summary of an answer set: n, refusal_rate, empty_rate, mean_words (tokens per answer), distinct_2
    (mean per answer over answers with >= 2 tokens), corpus_distinct_2 (distinct bigrams over all answers /
    bigrams, bigrams within answers), mean_longest_repeat, max_longest_repeat, degenerate_rate. Rates are
    fractions of all answers; None where an answer set is empty."""
    n = len(answers)
    if n == 0:
        return {"n": 0, "refusal_rate": None, "empty_rate": None, "mean_words": None, "distinct_2": None,
                "corpus_distinct_2": None, "mean_longest_repeat": None, "max_longest_repeat": None,
                "degenerate_rate": None}
    hs = [answer_health(a) for a in answers]
    toks = [answer_tokens(a) for a in answers]
    grams = [tuple(t[i:i + 2]) for t in toks for i in range(len(t) - 1)]
    d2 = [h.distinct_2 for h in hs if h.n_tokens >= 2]
    return {"n": n, "refusal_rate": sum(h.refusal for h in hs) / n,
            "empty_rate": sum(h.n_tokens == 0 for h in hs) / n,
            "mean_words": sum(h.n_tokens for h in hs) / n,
            "distinct_2": sum(d2) / len(d2) if d2 else None,
            "corpus_distinct_2": len(set(grams)) / len(grams) if grams else None,
            "mean_longest_repeat": sum(h.longest_repeat for h in hs) / n,
            "max_longest_repeat": max(h.longest_repeat for h in hs),
            "degenerate_rate": sum(h.degenerate for h in hs) / n}


# ---------------------------------------------------------------------------------- synthetic degeneration
DEGENERATION_KINDS = ("repeat-word", "repeat-phrase", "truncate-loop")


def degenerate_variant(answer: str, kind: str, rng, length: int | None = None) -> str:
    """A degenerate answer built from a real one (`rng`: a numpy Generator), `length` words long (default:
    12-40, what 50 greedy tokens give):
    - "repeat-word": the first 0-5 words, then one word of the answer (or "but") repeated, separated by
      " " or ", " ("No, no, no, ...", "The answer is but but but ...");
    - "repeat-phrase": the first 0-5 words, then a 2-4 word phrase of the answer repeated;
    - "truncate-loop": the answer cut after 3-8 words (short of its end) and that fragment looped.
    Words are whitespace-separated pieces of the answer, so its punctuation and case travel along."""
    words = answer.split()
    if len(words) < 2:
        raise ValueError(f"need an answer of >= 2 words to degenerate, got {answer!r}")
    L = int(length if length is not None else rng.integers(12, 41))
    if kind == "repeat-word":
        head = words[:int(rng.integers(0, min(5, len(words) - 1) + 1))]
        w = "but" if rng.random() < 0.25 else words[int(rng.integers(len(words)))].strip(".,;:!?\"'")
        w = w or "but"
        sep = ", " if rng.random() < 0.3 else " "
        tail = sep.join([w] * max(3, L - len(head)))
        return (" ".join(head) + " " + tail).strip()
    if kind == "repeat-phrase":
        n = int(rng.integers(2, min(4, len(words)) + 1))
        s = int(rng.integers(0, len(words) - n + 1))
        phrase = words[s:s + n]
        head = words[:int(rng.integers(0, min(5, len(words) - 1) + 1))]
        reps = max(3, -(-(L - len(head)) // n))
        return " ".join(head + phrase * reps)
    if kind == "truncate-loop":
        m = int(rng.integers(min(3, len(words) - 1), min(8, len(words) - 1) + 1))
        frag = words[:m]
        reps = max(3, -(-L // m))
        return " ".join((frag * reps)[:max(L, 3 * m)])
    raise ValueError(f"unknown degeneration kind {kind!r}; use one of {', '.join(DEGENERATION_KINDS)}")


def degenerate_answers(questions: Sequence[str], answers: Sequence[str], seed: int = 0,
                       kinds: Sequence[str] = DEGENERATION_KINDS) -> tuple[list[str], list[str], list[str]]:
    """(questions, degenerate answers, kind) with one variant of each kind per answer of >= 4 words."""
    import numpy as np

    rng = np.random.default_rng(seed)
    qs, out, ks = [], [], []
    for q, a in zip(questions, answers):
        if len(a.split()) < 4:
            continue
        for k in kinds:
            qs.append(q)
            out.append(degenerate_variant(a, k, rng))
            ks.append(k)
    return qs, out, ks
