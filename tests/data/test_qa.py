"""The QA tables, the seeded loader and the answer rule (checked against SQuAD's normaliser, written out here)."""

from __future__ import annotations

import json
import re
import string

import pytest
from hypothesis import given, settings, strategies as st

from veracity.data import DataError
from veracity.data.facts import CITIES
from veracity.data.qa import (TABLES, answer_span, first_line, first_line_done, is_match, load_qa,
                              load_truthfulqa_qa, normalise_answer, qa_table)


def squad_normalize(s: str) -> str:
    """SQuAD v1.1 evaluate.py's normalize_answer, verbatim in substance."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


@pytest.mark.parametrize("text", ["The U.S.A.", "  Paris,   France! ", "an apple a day", "Theatre of the Absurd",
                                  "Washington, D.C.", "the-the", "A", "", "Saint-Exupéry", "it's 8."])
def test_normalise_answer_is_squads_rule(text):
    assert normalise_answer(text) == squad_normalize(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=" \n\tabcdeinhtAThE.,-!'?", max_size=30))
def test_normalise_answer_matches_squad_on_random_text(text):
    assert normalise_answer(text) == squad_normalize(text)


def test_is_match_whole_words_only():
    assert is_match("It is in France.", ["France"])
    assert is_match("france", ["The France"])
    assert not is_match("Franceville", ["France"])
    assert is_match("Lyon is in the U.S.", ["US"])
    assert not is_match("Rome", ["Paris", "Lutetia"])
    assert not is_match("anything", ["the", "..."])  # aliases that normalise to nothing never match


def test_answer_span_never_depends_on_the_gold_answer():
    """Right or wrong, the span is the first line's first sentence: a span located with the aliases made the tokens
    read differ by label (a leak: 1.00 AUROC from the embeddings)."""
    text = "  The capital is Washington, D.C. not Washington state.\nParis"
    s, e, ok = answer_span(text, ["Washington", "Washington, D.C.", "Paris"])
    assert ok and text[s:e] == "The capital is Washington, D.C"  # first sentence ends at ". "
    s2, e2, ok2 = answer_span(text, ["Paris"])  # only on the second line: wrong, same span
    assert not ok2 and (s2, e2) == (s, e)


def test_answer_span_wrong_is_the_first_sentence():
    text = "\n It is in Italy! Or Spain.\nFrance"
    s, e, ok = answer_span(text, ["France"])
    assert (text[s:e], ok) == ("It is in Italy", False)
    assert answer_span("   ", ["x"])[:2] == (3, 3)
    assert first_line("\n\n ab \ncd") == (3, 5)


def test_first_line_done():
    assert not first_line_done("\n\n  Paris")
    assert first_line_done("\nParis\n")
    assert not first_line_done("")


def test_tables_are_well_formed():
    items = load_qa()
    assert {it.table for it in items} == set(TABLES)
    assert len({it.id for it in items}) == len(items)
    assert 300 <= len(items) <= 1000
    for it in items:
        assert it.aliases[0] == it.answer and len(set(it.aliases)) == len(it.aliases)
        assert all(normalise_answer(a) for a in it.aliases)
        assert it.question.endswith("?") and is_match(it.answer, it.aliases)
    for name in TABLES:
        qs = [it.question for it in qa_table(name)]
        assert len(set(qs)) == len(qs), name
    cities = qa_table("cities")
    assert len(cities) == len(CITIES)
    lyon = next(it for it in cities if "Lyon" in it.question)
    assert lyon.question == "Which country is Lyon in?" and lyon.answer == "France"


def test_load_qa_is_seeded_and_keeps_every_table():
    a, b, c = load_qa(limit=5, seed=1), load_qa(limit=5, seed=1), load_qa(limit=5, seed=2)
    assert a == b and a != c
    assert len(a) == 5 * len(TABLES)
    full = {it.id: it for it in load_qa()}
    assert all(full[it.id] == it for it in a)
    assert [it.id for it in a] == sorted((it.id for it in a), key=list(full).index)  # table order kept
    assert [it.table for it in load_qa("elements")] == ["elements"] * len(qa_table("elements"))
    with pytest.raises(DataError, match="unknown QA table"):
        load_qa(["nope"])
    with pytest.raises(DataError, match="positive"):
        load_qa(limit=0)


def test_truthfulqa_as_qa_items(data_dir):
    from veracity.data import load_truthfulqa

    tqa = load_truthfulqa(data_dir)
    items = load_truthfulqa_qa(data_dir, limit=7, seed=3)
    assert items == load_truthfulqa_qa(data_dir, limit=7, seed=3) and len(items) == 7
    for it in items:
        src = tqa[int(it.id.split("-")[1])]
        assert it.question == src.question and it.answer == src.best_answer and it.table == "truthfulqa"
        assert set(src.correct_answers) <= set(it.aliases)


# --- TriviaQA: a hand-written file in TriviaQA's own formats (no network) ---------------------------------
_TRIVIA_ORIGINAL = {"Version": 1.0, "Domain": "Web", "Data": [
    {"Question": "Which Lloyd Webber musical premiered in the US on 10th December 1993?", "QuestionId": "tc_33",
     "QuestionSource": "http://www.triviacountry.com/",
     "Answer": {"Aliases": ["Sunset Blvd", "Sunset Boulevard", "Sunset Bulevard"], "Value": "Sunset Boulevard",
                "NormalizedAliases": ["sunset boulevard", "sunset blvd"], "Type": "WikipediaEntity"}},
    {"Question": "Who was the man behind The Chipmunks?", "QuestionId": "tc_40",
     "Answer": {"Aliases": ["David Seville", "Ross Bagdasarian"], "Value": "David Seville", "Type": "WikipediaEntity"}},
    {"Question": "What star sign is Jamie Lee Curtis?", "QuestionId": "tc_217",
     "Answer": {"Aliases": ["Scorpio", "Skorpio"], "Value": "Scorpio", "Type": "WikipediaEntity"}},
]}


def _hub_rows():
    return [{"question": r["Question"], "question_id": r["QuestionId"], "question_source": "",
             "entity_pages": {}, "search_results": {},
             "answer": {"value": r["Answer"]["Value"], "aliases": r["Answer"]["Aliases"],
                        "normalized_value": r["Answer"]["Value"].lower(), "type": "WikipediaEntity"}}
            for r in _TRIVIA_ORIGINAL["Data"]]


@pytest.mark.parametrize("layout", ["original", "hub"])
def test_load_triviaqa_reads_a_local_file(tmp_path, layout):
    from veracity.data.qa import is_match, load_triviaqa

    p = tmp_path / "trivia.json"
    p.write_text(json.dumps(_TRIVIA_ORIGINAL if layout == "original" else _hub_rows()))
    items = load_triviaqa(path=p)
    assert [it.id for it in items] == ["triviaqa-tc_33", "triviaqa-tc_40", "triviaqa-tc_217"]
    first = items[0]
    assert first.question.startswith("Which Lloyd Webber") and first.answer == "Sunset Boulevard"
    assert first.aliases == ("Sunset Boulevard", "Sunset Blvd", "Sunset Bulevard") and first.table == "triviaqa"
    assert is_match("It was Sunset Blvd.", first.aliases) and not is_match("Cats", first.aliases)
    drawn = load_triviaqa(path=p, limit=2, seed=1)
    assert len(drawn) == 2 and [items.index(it) for it in drawn] == sorted(items.index(it) for it in drawn)
    assert drawn == load_triviaqa(path=p, limit=2, seed=1)


def test_load_triviaqa_refuses_what_it_cannot_read(tmp_path, monkeypatch):
    import builtins

    from veracity.data.errors import DataError
    from veracity.data.qa import load_triviaqa

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"Data": [{"Question": "no answer here"}]}))
    with pytest.raises(DataError, match="row 0"):
        load_triviaqa(path=bad)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError):
        load_triviaqa(path=tmp_path / "broken.json")
    with pytest.raises(DataError, match="limit"):
        load_triviaqa(path=bad, limit=0)
    real_import = builtins.__import__

    def no_datasets(name, *a, **k):  # offline and without the package: a clear DataError, no traceback
        if name == "datasets":
            raise ImportError("no datasets here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(DataError, match="datasets"):
        load_triviaqa("validation")
