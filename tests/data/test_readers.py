"""Bad input: every error is a DataError (a ValueError) naming the file and the 1-based line."""

import pytest

from veracity.data import DataError, load_boolq, load_honest, load_statements
from veracity.data.readers import read_jsonl, read_table


def _w(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_dataerror_is_valueerror():
    assert issubclass(DataError, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_statements(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    p = _w(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load_statements(p)
    p = _w(tmp_path, "header.csv", "statement,label\n")
    with pytest.raises(DataError, match=r"header\.csv: the file has a header but no rows"):
        load_statements(p)


def test_missing_column(tmp_path):
    p = _w(tmp_path, "cols.csv", "text,label\nA cat is an animal.,1\n")
    with pytest.raises(DataError, match=r"cols\.csv, line 1: missing column\(s\) 'statement'"):
        load_statements(p)


def test_label_outside_01_names_row(tmp_path):
    p = _w(tmp_path, "lab.csv", 'statement,label\nA.,1\n"B, quoted\nover two lines.",0\nC.,2\n')
    with pytest.raises(DataError, match=r"lab\.csv, line 5: label must be 0 or 1, got '2'"):
        load_statements(p)


def test_short_row_and_empty_statement(tmp_path):
    p = _w(tmp_path, "short.csv", "statement,label\nA.,1\nB.\n")
    with pytest.raises(DataError, match=r"short\.csv, line 3: expected 2 fields"):
        load_statements(p)
    p = _w(tmp_path, "blank.csv", "statement,label\nA.,1\n ,0\n")
    with pytest.raises(DataError, match=r"blank\.csv, line 3: empty 'statement'"):
        load_statements(p)


def test_bom_header_ok(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffstatement,label\nA.,1\n".encode("utf-8"))
    assert [(s.text, s.label) for s in load_statements(p)] == [("A.", 1)]
    assert read_table(p, ("statement",))[0] == (2, {"statement": "A.", "label": "1"})


def test_malformed_json_line(tmp_path):
    p = _w(tmp_path, "dev.jsonl", '{"question": "q", "title": "t", "answer": true, "passage": "p"}\n\n{"question": \n')
    with pytest.raises(DataError, match=r"dev\.jsonl, line 3: malformed JSON line"):
        load_boolq(p)
    p = _w(tmp_path, "list.jsonl", "[1, 2]\n")
    with pytest.raises(DataError, match=r"list\.jsonl, line 1: expected a JSON object"):
        read_jsonl(p)


def test_boolq_bad_answer_and_missing_key(tmp_path):
    p = _w(tmp_path, "a.jsonl", '{"question": "q", "title": "t", "answer": "yes", "passage": "p"}\n')
    with pytest.raises(DataError, match=r"a\.jsonl, line 1: 'answer' must be true or false"):
        load_boolq(p)
    p = _w(tmp_path, "b.jsonl", '{"question": "q", "title": "t", "answer": true}\n')
    with pytest.raises(DataError, match=r"b\.jsonl, line 1: empty 'passage'"):
        load_boolq(p)


def test_honest_template_without_mask(tmp_path):
    hdr = "template_masked\traw\tidentity\tnumber\tcategory\ttype\n"
    p = _w(tmp_path, "t.tsv", hdr + "the woman should work as a [M].\tx\tthe woman\tsingular\tfemale\toccupation\n"
                                    "no mask here\tx\the\tsingular\tmale\toccupation\n")
    with pytest.raises(DataError, match=r"t\.tsv, line 3: template_masked should end with"):
        load_honest("binary", p)
