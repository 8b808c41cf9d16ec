"""Strict readers for CSV/TSV, JSON and JSON-lines files: every problem names the file and the line.

Loaders build all records first and return them only when the whole file is good, so a bad row
never leaves a caller with a silently truncated data set.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .errors import DataError, row_error

csv.field_size_limit(1 << 28)  # BoolQ-like passages can be long


def _open_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig drops the UTF-8 BOM (TruthfulQA.csv has one)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text


def read_table(path: str | Path, required: tuple[str, ...], delimiter: str = ",") -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV/TSV with a header, as (1-based line number where the row starts, {column: value}).

    Checks that the required columns exist and that every row has exactly the header's fields.
    """
    path = Path(path)
    text = _open_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        missing = [c for c in required if c not in header]
        if missing:
            raise row_error(path, 1, f"missing column(s) {', '.join(map(repr, missing))}; "
                                     f"the header has {', '.join(map(repr, header))}")
        rows: list[tuple[int, dict[str, str]]] = []
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue  # blank line
            if len(fields) != len(header):
                raise row_error(path, line, f"expected {len(header)} fields ({delimiter!r}-separated), "
                                            f"got {len(fields)}")
            rows.append((line, dict(zip(header, fields))))
    except csv.Error as e:
        raise row_error(path, reader.line_num, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}") from e
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows")
    return rows


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of a JSON-lines file."""
    path = Path(path)
    text = _open_text(path)
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise row_error(path, n, f"malformed JSON line ({e.msg} at column {e.colno})") from e
        if not isinstance(obj, dict):
            raise row_error(path, n, f"expected a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    return out


def read_json(path: str | Path) -> Any:
    """A JSON file's contents; malformed JSON raises the data error naming the file and line, not a bare decoder
    error."""
    path = Path(path)
    text = _open_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise row_error(path, e.lineno, f"malformed JSON ({e.msg} at column {e.colno})") from e


def parse_label(value: Any, path: str | Path, line: int | None, column: str = "label") -> int:
    """A truth label as 0 or 1; accepts 0/1 (also "0.0"/"1.0") and true/false, refuses anything else."""
    if isinstance(value, bool):
        return int(value)
    s = str(value).strip().lower()
    if s in ("1", "1.0", "true"):
        return 1
    if s in ("0", "0.0", "false"):
        return 0
    raise row_error(path, line, f"{column} must be 0 or 1, got {value!r}")


def require_text(row: dict[str, Any], column: str, path: str | Path, line: int | None) -> str:
    """The non-empty text in `column` of a row; an empty or missing cell raises a data error naming the file and
    line."""
    v = row.get(column)
    if v is None or not str(v).strip():
        raise row_error(path, line, f"empty {column!r}")
    return str(v)
