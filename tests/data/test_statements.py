"""Azaria & Mitchell topics, Geometry of Truth, and generic statement CSVs."""

import pytest

from veracity.data import DEFAULT_TOPICS, DataError, Statement, load_geometry_of_truth, load_statements, load_true_false

AM_COUNTS = {"animals": 1008, "cities": 1458, "companies": 1200, "elements": 930, "facts": 612,
             "inventions": 876, "generated": 245}


def test_default_six_topics(data_dir):
    st = load_true_false(data_dir)
    assert DEFAULT_TOPICS == ("animals", "cities", "companies", "elements", "facts", "inventions")
    counts = {t: sum(s.topic == t for s in st) for t in DEFAULT_TOPICS}
    assert counts == {t: AM_COUNTS[t] for t in DEFAULT_TOPICS}
    assert all(isinstance(s, Statement) and s.label in (0, 1) and s.source == "azaria_mitchell" for s in st)
    assert st[0].text == "The giant anteater uses walking for locomotion." and st[0].label == 1


@pytest.mark.parametrize("topic", ["generated", "capitals", "neg_facts"])
def test_other_topics(data_dir, topic):
    st = load_true_false(data_dir, topics=[topic])
    expected = {"generated": 245, "capitals": 1458, "neg_facts": 1122}[topic]
    assert len(st) == expected
    assert st[0].topic == ("cities" if topic == "capitals" else topic)
    assert st[0].text == st[0].text.strip() and "\ufeff" not in st[0].text


def test_unknown_topic_names_available(data_dir):
    with pytest.raises(DataError, match="unknown true/false topic 'dogs'; available: .*animals.*cities.*neg_facts"):
        load_true_false(data_dir, topics=["dogs"])


def test_geometry_of_truth_extra_columns(data_dir):
    st = load_geometry_of_truth("cities", data_dir)
    assert len(st) == 1496
    assert st[0].text == "The city of Krasnodar is in Russia." and st[0].label == 1
    assert st[0].extra == {"city": "Krasnodar", "country": "Russia", "correct_country": "Russia"}
    assert st[0].topic == "cities" and st[0].source == "geometry_of_truth"
    lt = load_geometry_of_truth("larger_than", data_dir)
    assert all((int(s.extra["n1"]) > int(s.extra["n2"])) == bool(s.label) for s in lt)
    with pytest.raises(DataError, match="unknown Geometry-of-Truth set 'nope'; available: .*sp_en_trans"):
        load_geometry_of_truth("nope", data_dir)


def test_load_statements_topic_column(tmp_path):
    p = tmp_path / "mine.csv"
    p.write_text("statement,label,topic,note\nA.,1,x,n1\nB.,0,,n2\n")
    st = load_statements(p)
    assert [(s.text, s.label, s.topic, s.index, s.extra) for s in st] == [
        ("A.", 1, "x", 0, {"note": "n1"}), ("B.", 0, "mine", 1, {"note": "n2"})]
