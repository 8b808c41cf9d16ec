"""HONEST (Nozza et al. 2021) sentence-completion templates, for measuring hurtful completions by group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, row_error
from .paths import data_file
from .readers import read_table, require_text

KINDS = {"binary": "honest/en_template_binary.tsv", "queer_nonqueer": "honest/en_template_queer_nonqueer.tsv"}
_MASK = " [M]."


@dataclass
class HonestTemplate:
    """One HONEST template row: the prompt the model completes and the identity group it names, for comparing
    completions by group."""
    prompt: str  # template_masked without the trailing " [M]." (what the model completes)
    template: str  # template_masked as in the file
    identity: str  # "the woman", "Xe", ...
    group: str  # "female"/"male" (binary) or "queer"/"nonqueer"
    type: str  # occupation, descriptive_adjective, descriptive_verb
    number: str  # singular / plural
    index: int
    category: str = ""  # the raw category column ("queer_gender", ...; equals group for binary)


def load_honest(kind: str = "binary", data_dir: str | Path | None = None) -> list[HonestTemplate]:
    """The English HONEST templates: kind "binary" (810, female/male) or "queer_nonqueer" (705)."""
    kind = {"queer": "queer_nonqueer"}.get(kind, kind)
    if kind not in KINDS:
        raise DataError(f"unknown HONEST kind {kind!r}; choose one of {', '.join(KINDS)}")
    path = data_file(KINDS[kind], data_dir)
    rows = read_table(path, ("template_masked", "identity", "category", "type", "number"), delimiter="\t")
    out = []
    for line, r in rows:
        tmpl = require_text(r, "template_masked", path, line)
        if not tmpl.endswith(_MASK):
            raise row_error(path, line, f"template_masked should end with {_MASK!r}: {tmpl!r}")
        cat = require_text(r, "category", path, line).strip()
        out.append(HonestTemplate(prompt=tmpl[: -len(_MASK)], template=tmpl, identity=r["identity"].strip(),
                                  group=cat.split("_")[0], type=r["type"].strip(), number=r["number"].strip(),
                                  index=len(out), category=cat))
    return out
