"""Registry names flatten each family into capture rows."""

import pytest

from veracity.data import DataError, TextDataset, get_dataset, iti_prompt, list_datasets, load_truthfulqa


def test_list_datasets():
    names = [n for n, _ in list_datasets()]
    for n in ("synthetic", "truthfulqa-mc2", "truthfulqa-mc1", "truthfulqa-iti", "true-false", "true-false:<topic>",
              "got:<name>", "boolq", "boolq-passages", "honest-binary", "honest-queer"):
        assert n in names
    assert all(isinstance(d, str) and d for _, d in list_datasets())


def test_synthetic_default(monkeypatch):
    monkeypatch.delenv("VERACITY_DATA", raising=False)  # always available
    d = get_dataset()
    assert d.name == "synthetic" and len(d) == 400 and sum(d.labels) == 200 and set(d.groups) == {"synthetic"}
    assert d.content_hash == get_dataset("synthetic").content_hash and len(d.content_hash) == 16
    assert d.content_hash != get_dataset("synthetic", seed=1).content_hash
    assert len(get_dataset("synthetic", limit=11)) == 11


def test_truthfulqa_rows(data_dir):
    items = load_truthfulqa(data_dir)
    mc2 = get_dataset("truthfulqa-mc2", data_dir)
    assert len(mc2) == 5882 and sum(mc2.labels) == sum(sum(i.mc2_labels) for i in items)
    m = mc2.meta[0]
    assert m["question_index"] == 0 and m["choice_index"] == 0
    assert mc2.texts[0] == iti_prompt(items[0].question, items[0].mc2_choices[0])
    assert mc2.groups[0] == "Misconceptions"
    mc1 = get_dataset("truthfulqa-mc1", data_dir)
    assert len(mc1) == 4114 and sum(mc1.labels) == 817
    iti = get_dataset("truthfulqa-iti", data_dir)
    n0 = len(items[0].correct_answers) + len(items[0].incorrect_answers)
    assert iti.labels[:n0] == [1] * len(items[0].correct_answers) + [0] * len(items[0].incorrect_answers)
    assert iti.texts[0] == "Q: What happens to you if you eat watermelon seeds? A: Nothing happens"
    small = get_dataset("truthfulqa-mc2", data_dir, limit=5, seed=3)
    qs = {m["question_index"] for m in small.meta}
    assert len(qs) == 5 and len(small) == sum(len(items[q].mc2_choices) for q in qs)  # whole questions kept


def test_statement_sets(data_dir, tmp_path):
    tf = get_dataset("true-false", data_dir)
    assert len(tf) == 6084 and set(tf.groups) == {"animals", "cities", "companies", "elements", "facts", "inventions"}
    assert len(get_dataset("true-false:facts", data_dir)) == 612
    got = get_dataset("got:cities", data_dir, limit=10)
    assert len(got) == 10 and "correct_country" in got.meta[0]
    p = tmp_path / "mine.csv"
    p.write_text("statement,label,topic\nA.,1,x\nB.,0,y\n")
    mine = get_dataset(str(p))
    assert mine.texts == ["A.", "B."] and mine.labels == [1, 0] and mine.groups == ["x", "y"]


def test_boolq_and_honest(data_dir):
    b = get_dataset("boolq", data_dir, limit=20)
    assert len(b) == 20 and set(b.labels) <= {0, 1}
    assert b.meta[0]["x_plus"] == b.texts[0] + " Yes" and b.meta[0]["x_minus"] == b.texts[0] + " No"
    bp = get_dataset("boolq-passages", data_dir)
    assert len(bp) == 3270 and bp.labels is None
    h = get_dataset("honest-binary", data_dir)
    assert len(h) == 810 and h.labels is None and set(h.groups) == {"female", "male"}
    assert set(get_dataset("honest-queer", data_dir).groups) == {"queer", "nonqueer"}


def test_unknown_name_and_bad_dataset():
    with pytest.raises(DataError, match="unknown data set 'nope'; known: synthetic"):
        get_dataset("nope")
    with pytest.raises(DataError, match="2 labels for 1 texts"):
        TextDataset("x", ["a"], [0, 1])


def test_cli_lists_datasets(cli):
    assert "truthfulqa-mc2" in cli(["datasets"])
