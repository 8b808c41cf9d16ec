"""Where data comes from: argument, $VERACITY_DATA, and the offline error."""

from pathlib import Path

import pytest

from veracity.data import DataError, load_boolq, load_truthfulqa, resolve_data_dir
from veracity.data.paths import data_file


def test_resolve_order(monkeypatch, tmp_path):
    monkeypatch.setenv("VERACITY_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("VERACITY_DATA")
    assert resolve_data_dir(None) is None


def test_offline_without_folder_says_how_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("VERACITY_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached copy either
    for load in (load_truthfulqa, load_boolq):
        with pytest.raises(DataError, match="--data-dir.*VERACITY_DATA"):
            load()


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        data_file("boolq/dev.jsonl", tmp_path / "nope")
    with pytest.raises(DataError, match=r"boolq[/\\]dev\.jsonl: file not found"):
        load_boolq(tmp_path)


def test_family_folder_or_file_accepted(data_dir: Path):
    assert data_file("boolq/dev.jsonl", data_dir) == data_dir / "boolq" / "dev.jsonl"
    assert data_file("boolq/dev.jsonl", data_dir / "boolq") == data_dir / "boolq" / "dev.jsonl"
    assert data_file("boolq/dev.jsonl", data_dir / "boolq" / "dev.jsonl") == data_dir / "boolq" / "dev.jsonl"


def test_missing_file_in_a_family_subfolder_is_named_once(tmp_path):
    """A data folder given as the family subfolder names the missing file without the family twice."""
    from veracity.data.errors import DataError
    from veracity.data.paths import data_file

    fam = tmp_path / "truthfulqa"
    fam.mkdir()
    with pytest.raises(DataError) as e:
        data_file("truthfulqa/mc_task_v0.json", fam)
    assert f"{fam / 'mc_task_v0.json'}: file not found" in str(e.value)
    assert "truthfulqa/truthfulqa" not in str(e.value)
