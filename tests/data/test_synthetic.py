"""The embedded default set: deterministic, balanced, and every label checkable by parsing the text back."""

import re

import pytest

from veracity.data import DataError, load_synthetic, number_words

WORDS = {number_words(n): n for n in range(100)}


def _parse(text: str) -> int:
    m = re.fullmatch(r"(\S+) is (larger|smaller) than (\S+)\.", text)
    assert m, text
    a, b = WORDS[m.group(1).lower()], WORDS[m.group(3)]
    assert a != b
    return int(a > b) if m.group(2) == "larger" else int(a < b)


def test_number_words():
    assert [number_words(n) for n in (0, 7, 13, 20, 52, 71, 99)] == [
        "zero", "seven", "thirteen", "twenty", "fifty-two", "seventy-one", "ninety-nine"]


def test_balanced_deterministic_and_true():
    st = load_synthetic()
    assert len(st) == 400 and sum(s.label for s in st) == 200
    assert [s.text for s in st] == [s.text for s in load_synthetic(400, seed=0)]
    assert [s.text for s in st] != [s.text for s in load_synthetic(400, seed=1)]
    assert len({s.text for s in st}) == 400
    assert {s.extra["relation"] for s in st} == {"larger", "smaller"}
    for s in st:
        assert s.text[0].isupper() and s.topic == "synthetic" and s.source == "synthetic"
        assert _parse(s.text) == s.label
    assert [s.index for s in st] == list(range(400))


def test_bad_n():
    with pytest.raises(DataError, match="even"):
        load_synthetic(7)
    assert sum(s.label for s in load_synthetic(2, seed=5)) == 1
