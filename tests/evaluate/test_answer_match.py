"""The normalised-match rule (veracity.evaluate.answer_match): normalisation, correctness against aliases, and the
equivalence that clusters sampled answers."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from veracity.evaluate.answer_match import is_match, match_rule, normalise_answer, same_answer


def test_normalise_answer():
    assert normalise_answer("  The U.S.A.! ") == "usa"
    assert normalise_answer("An apple,  a PEAR and the plum") == "apple pear and plum"
    assert normalise_answer("Jean-Paul Sartre's") == "jeanpaul sartres"  # punctuation deleted, as SQuAD does
    assert normalise_answer("“Café” — théâtre") == "café théâtre"  # Unicode punctuation too; accents kept
    assert normalise_answer("Theatre another") == "theatre another"  # articles only as whole words
    assert normalise_answer("The") == "" and normalise_answer("") == ""


def test_is_match_equal_or_contained_as_whole_words():
    assert is_match("Paris", ["paris"]) and is_match("It is in France.", ["France"])
    assert is_match("the Eiffel Tower, of course", ["Eiffel Tower"])
    assert is_match("New York City", ["York"]) and not is_match("Newark", ["New"])
    assert not is_match("Francesca", ["France"]) and not is_match("Tower Eiffel", ["Eiffel Tower"])
    assert is_match("USA", ["United States", "U.S.A."])
    assert not is_match("The answer", ["the"])  # an alias that normalises to nothing matches nothing
    assert not is_match("Paris", [])


def test_same_answer_merges_equal_forms_and_alias_matches():
    assert same_answer("Paris.", "the paris") and not same_answer("Paris", "Lyon")
    assert not same_answer("USA", "United States of America")  # different strings, no aliases given
    assert same_answer("USA", "United States of America", ["United States", "USA"])
    assert not same_answer("USA", "Canada", ["United States", "USA"])
    rule = match_rule(("United States", "USA"))
    assert rule("the U.S.A", "It is the United States") and not rule("Mexico", "Canada")


POOL = ["Paris", "paris.", "the Paris", "Lyon", "Paris, France", "France", "Lyon city", "", "The"]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(POOL), st.sampled_from(POOL), st.sampled_from(POOL),
       st.lists(st.sampled_from(["Paris", "France", "Lyon", "City of Paris"]), max_size=2))
def test_same_answer_is_an_equivalence_relation(a, b, c, aliases):
    assert same_answer(a, a, aliases)
    assert same_answer(a, b, aliases) == same_answer(b, a, aliases)
    if same_answer(a, b, aliases) and same_answer(b, c, aliases):
        assert same_answer(a, c, aliases)
