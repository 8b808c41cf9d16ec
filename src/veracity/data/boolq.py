"""BoolQ (Clark et al. 2019): yes/no questions about a Wikipedia passage; the CCS data set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import row_error
from .paths import data_file
from .readers import read_jsonl, require_text


@dataclass
class BoolQItem:
    """One BoolQ question with its passage and yes/no answer, kept as in the release so prompts match the published
    protocol."""
    question: str  # lower-case, no question mark, as in the release
    passage: str
    title: str
    answer: bool
    index: int  # 0-based position in the split file


def load_boolq(data_dir: str | Path | None = None, split: str = "dev") -> list[BoolQItem]:
    """The BoolQ `split` ("dev": 3,270 rows; "train" when present) from boolq/{split}.jsonl."""
    path = data_file(f"boolq/{split}.jsonl", data_dir)
    items = []
    for line, obj in read_jsonl(path):
        ans = obj.get("answer")
        if not isinstance(ans, bool):
            raise row_error(path, line, f"'answer' must be true or false, got {ans!r}")
        items.append(BoolQItem(question=require_text(obj, "question", path, line),
                               passage=require_text(obj, "passage", path, line),
                               title=str(obj.get("title", "")), answer=ans, index=len(items)))
    if not items:
        raise row_error(path, None, "no rows")
    return items
