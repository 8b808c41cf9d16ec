"""The normalised-match rule: when a short generated answer counts as a gold answer, and when two sampled answers
count as the same answer (the clustering of semantic entropy).

Normalisation (`normalise_answer`, SQuAD's and TriviaQA's evaluation rule, plus Unicode NFKC): lower-case; delete
punctuation (every Unicode punctuation character, so "U.S." -> "us"); drop the articles "a", "an", "the" as
whole words; collapse whitespace. Correctness (`is_match`): the normalised answer equals, or contains as whole
words (a contiguous run of its words), the normalised form of some alias; an alias that normalises to nothing
never matches. So "It is in France." matches "France" but "Francesca" does not.

Equivalence (`same_answer`): two answers are the same when their normalised forms are equal, or, given the
question's aliases, when both match one (every alias names the one gold answer). Unlike containment in either
direction, this is an equivalence relation (reflexive, symmetric, transitive: tested), so clustering does not
depend on the order of the samples.
"""

from __future__ import annotations

from typing import Callable, Iterable

from ..data.qa import is_match, normalise_answer  # the rule is defined once, in data/qa.py

__all__ = ["is_match", "match_rule", "normalise_answer", "same_answer"]

def same_answer(a: str, b: str, aliases: Iterable[str] = ()) -> bool:
    """Whether two answers are the same under the normalised-match rule: equal normalised forms, or both matching
    one of the question's `aliases` (module doc)."""
    if normalise_answer(a) == normalise_answer(b):
        return True
    aliases = list(aliases)
    return bool(aliases) and is_match(a, aliases) and is_match(b, aliases)


def match_rule(aliases: Iterable[str] = ()) -> Callable[[str, str], bool]:
    """The equivalence of the normalised-match rule for one question (its `aliases` bound), as
    `semantic_entropy.cluster_answers` takes it."""
    aliases = tuple(aliases)
    return lambda a, b: same_answer(a, b, aliases)
