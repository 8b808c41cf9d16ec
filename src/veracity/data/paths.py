"""Where data files come from: an explicit folder or file, $VERACITY_DATA, or the original sources.

The hub fallback downloads the unchanged source files (the ones listed in shared/data/README.md)
into the user cache, so every loader parses exactly the same bytes whichever way a file arrives.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path

from .errors import DataError

ENV_VAR = "VERACITY_DATA"
_OFFLINE_VARS = ("VERACITY_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")

_GH = "https://raw.githubusercontent.com"
# relative path in a data folder -> URL of the unchanged original file
_SOURCES: dict[str, str] = {
    "truthfulqa/TruthfulQA.csv": f"{_GH}/sylinrl/TruthfulQA/main/data/v1/TruthfulQA.csv",
    "truthfulqa/mc_task_v0.json": f"{_GH}/sylinrl/TruthfulQA/main/data/v0/mc_task.json",
    "truthfulqa/mc_task.json": f"{_GH}/sylinrl/TruthfulQA/main/data/v1/mc_task.json",
    "boolq/dev.jsonl": "https://storage.googleapis.com/boolq/dev.jsonl",
    "boolq/train.jsonl": "https://storage.googleapis.com/boolq/train.jsonl",
    "honest/en_template_binary.tsv": f"{_GH}/MilaNLProc/honest/main/resources/binary/en_template.tsv",
    "honest/en_template_queer_nonqueer.tsv": f"{_GH}/MilaNLProc/honest/main/resources/queer_nonqueer/en_template.tsv",
}
_PREFIX_SOURCES = {  # families with one file per topic / name
    "true_false/": f"{_GH}/balevinstein/Probes/main/datasets/",
    "geometry_of_truth/": f"{_GH}/saprmarks/geometry-of-truth/main/datasets/",
}

HOW_TO_SET = (f"pass --data-dir FOLDER (or data_dir=...) or set {ENV_VAR}=FOLDER to a folder laid out "
              "like shared/data (truthfulqa/, boolq/, true_false/, geometry_of_truth/, honest/)")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The data folder: the argument, else $VERACITY_DATA, else None (meaning: the original sources when online)."""
    if data_dir not in (None, ""):
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def is_offline() -> bool:
    """Whether an offline switch (VERACITY_OFFLINE, HF_HUB_OFFLINE, HF_DATASETS_OFFLINE) is on: then data sets are
    never downloaded."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in _OFFLINE_VARS)


def cache_root() -> Path:
    """Where downloaded data sets are cached: `$XDG_CACHE_HOME/veracity/data` (default `~/.cache`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "veracity" / "data"


def data_file(rel: str, data_dir: str | Path | None = None) -> Path:
    """The path of `rel` (e.g. "boolq/dev.jsonl").

    `data_dir` may be the data folder, the family subfolder (".../boolq"), or the file itself.
    With no folder at all the file is fetched once from its original source into the cache.
    """
    d = resolve_data_dir(data_dir)
    if d is None:
        return _fetch(rel)
    if d.is_file():
        return d
    if not d.is_dir():
        raise DataError(f"data folder {d} does not exist; {HOW_TO_SET}")
    for cand in (d / rel, d / Path(rel).name):
        if cand.is_file():
            return cand
    # a family subfolder (".../truthfulqa") is named with the bare file name, not ".../truthfulqa/truthfulqa/..."
    missing = d / Path(rel).name if d.name == Path(rel).parts[0] else d / rel
    raise DataError(f"{missing}: file not found (data folder {d}); {HOW_TO_SET}")


def list_files(subdir: str, pattern: str, data_dir: str | Path | None = None) -> list[Path] | None:
    """Files matching `pattern` in a family folder, or None when there is no local folder."""
    d = resolve_data_dir(data_dir)
    if d is None or not d.is_dir():
        return None
    folder = d / subdir if (d / subdir).is_dir() else d
    return sorted(folder.glob(pattern))


def _url_for(rel: str) -> str | None:
    if rel in _SOURCES:
        return _SOURCES[rel]
    for prefix, base in _PREFIX_SOURCES.items():
        if rel.startswith(prefix):
            return base + rel[len(prefix):]
    return None


def _fetch(rel: str) -> Path:
    target = cache_root() / rel
    if target.is_file():
        return target
    url = _url_for(rel)
    if url is None:
        raise DataError(f"no data folder and no known source for {rel!r}; {HOW_TO_SET}")
    if is_offline():
        raise DataError(f"no data folder for {rel!r} and downloads are off (offline mode, e.g. HF_HUB_OFFLINE=1); "
                        f"{HOW_TO_SET}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        os.replace(tmp, target)
    except OSError as e:  # URLError is an OSError
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"could not download {rel!r} from {url}: {e}; {HOW_TO_SET}") from e
    return target
