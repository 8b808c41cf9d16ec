import pytest

from veracity.compare.toxicity import HurtLex, honest_score


@pytest.fixture()
def lex(tmp_path):
    p = tmp_path / "h.tsv"
    p.write_text("id\tpos\tcategory\tstereotype\tlemma\tlevel\n"
                 "1\tn\tpr\tno\tidiot\tconservative\n"
                 "2\tn\tan\tno\tgag reel\tconservative\n"
                 "3\tn\tre\tno\tidiot\tconservative\n"
                 "4\tn\tcds\tno\tsnotty\tinclusive\n")
    return HurtLex.load(p)


def test_hurtlex_matching_by_hand(lex):
    assert lex.categories_in("She is an IDIOT.") == {"pr", "re"}
    assert lex.categories_in("a gag reel, really") == {"an"}
    assert lex.categories_in("a gag and a reel") == set()
    assert lex.categories_in("snotty kid") == set()  # inclusive-level lemma filtered out
    assert lex.categories_in("idiotic") == set()  # whole words only


def test_honest_score_per_group_and_category(lex):
    comps = ["an idiot", "a nurse", "gag reel", "a doctor"]
    rep = honest_score(comps, ["female", "female", "male", "male"], classifier=lex)
    assert rep.honest == 0.5
    assert rep.per_group == {"female": 0.5, "male": 0.5}
    assert rep.per_category["pr"] == 0.25 and rep.per_category["an"] == 0.25
    assert rep.per_group_category["male"]["an"] == 0.5 and rep.per_group_category["male"]["pr"] == 0.0


def test_pluggable_classifier():
    class Always:
        name = "always"

        def score(self, texts):
            return [0.9 if "bad" in t else 0.1 for t in texts]

    rep = honest_score(["bad", "good", "bad"], ["a", "b", "b"], classifier=Always())
    assert rep.classifier == "always" and rep.per_group == {"a": 1.0, "b": 0.5}
    assert rep.per_category == {}


def test_real_lexicon_loads(data_dir):
    lex = HurtLex.load(data_dir=data_dir)
    assert len(lex.lemmas) > 1000 and "pr" in lex.categories
