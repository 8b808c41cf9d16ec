"""Labelled true/false statements: Azaria & Mitchell's topic files and Marks & Tegmark's Geometry of Truth.

Both families are `statement,label[,...]` CSVs; they share one record type so probes can mix them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError
from .paths import data_file, list_files, resolve_data_dir
from .readers import parse_label, read_table, require_text

TRUE_FALSE_DIR = "true_false"
GOT_DIR = "geometry_of_truth"
# The paper's six topics; "cities" is the file capitals_true_false.csv.
DEFAULT_TOPICS = ("animals", "cities", "companies", "elements", "facts", "inventions")
_TOPIC_FILES = {"cities": "capitals"}  # topic name -> file stem (before "_true_false")
_FILE_TOPICS = {v: k for k, v in _TOPIC_FILES.items()}
KNOWN_TOPICS = DEFAULT_TOPICS + ("generated", "neg_facts", "neg_companies")
GOT_NAMES = ("cities", "neg_cities", "sp_en_trans", "neg_sp_en_trans", "larger_than", "smaller_than",
             "cities_cities_conj", "cities_cities_disj", "common_claim_true_false")


@dataclass
class Statement:
    """One labelled true/false statement with its topic and origin; every other column of the source row is kept in
    `extra`."""
    text: str
    label: int  # 1 true, 0 false
    topic: str
    source: str  # "azaria_mitchell", "geometry_of_truth", "synthetic", or the file for a user CSV
    index: int  # 0-based row within its file (or generated set)
    extra: dict[str, str] = field(default_factory=dict)  # every other column, unchanged


def load_statements(path: str | Path, topic: str | None = None, source: str | None = None) -> list[Statement]:
    """Statements from any CSV with `statement,label` columns.

    The topic is the `topic` column when the file has one, else `topic`, else the file stem;
    other columns are kept in `extra`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    rows = read_table(path, ("statement", "label"))
    default_topic = topic or path.stem
    out = []
    for line, r in rows:
        text = require_text(r, "statement", path, line)
        label = parse_label(r["label"], path, line)
        t = r.get("topic", "").strip() or default_topic
        extra = {k: v for k, v in r.items() if k not in ("statement", "label", "topic")}
        out.append(Statement(text=text.strip(), label=label, topic=t, source=source or str(path),
                             index=len(out), extra=extra))
    return out


def available_topics(data_dir: str | Path | None = None) -> list[str]:
    """Topics with a `{file}_true_false.csv` in the data folder (the known list when there is none)."""
    files = list_files(TRUE_FALSE_DIR, "*_true_false.csv", data_dir)
    if files is None:
        return list(KNOWN_TOPICS)
    stems = [f.name[: -len("_true_false.csv")] for f in files]
    return sorted(_FILE_TOPICS.get(s, s) for s in stems)


def load_true_false(data_dir: str | Path | None = None, topics: str | list[str] | tuple[str, ...] | None = None,
                    ) -> list[Statement]:
    """Azaria & Mitchell statements for `topics` (default: the paper's six), in topic order.

    Any topic with a file is accepted ("generated", "neg_facts", ...); "capitals" is an alias of "cities".
    """
    topics = DEFAULT_TOPICS if topics is None else ([topics] if isinstance(topics, str) else list(topics))
    out: list[Statement] = []
    for t in topics:
        t = _FILE_TOPICS.get(t, t)
        rel = f"{TRUE_FALSE_DIR}/{_TOPIC_FILES.get(t, t)}_true_false.csv"
        d = resolve_data_dir(data_dir)
        local = d is not None and d.is_dir()
        if (local and t not in available_topics(data_dir)) or (not local and t not in KNOWN_TOPICS):
            raise DataError(f"unknown true/false topic {t!r}; available: {', '.join(available_topics(data_dir))}")
        out.extend(load_statements(data_file(rel, data_dir), topic=t, source="azaria_mitchell"))
    return out


def load_geometry_of_truth(name: str, data_dir: str | Path | None = None) -> list[Statement]:
    """A Geometry-of-Truth file (`geometry_of_truth/{name}.csv`), its extra columns kept."""
    name = name.removesuffix(".csv")
    d = resolve_data_dir(data_dir)
    files = list_files(GOT_DIR, "*.csv", data_dir)
    names = sorted(f.stem for f in files) if files is not None else list(GOT_NAMES)
    if name not in names and not (d is not None and d.is_file()):
        raise DataError(f"unknown Geometry-of-Truth set {name!r}; available: {', '.join(names)}")
    return load_statements(data_file(f"{GOT_DIR}/{name}.csv", data_dir), topic=name, source="geometry_of_truth")
