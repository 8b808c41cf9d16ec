"""Named data sets flattened to what capture consumes: texts, optional labels and groups, per-row meta.

One name ("truthfulqa-mc2", "true-false:animals", "got:cities", a CSV path, ...) identifies both
how the rows are built and, with `content_hash`, exactly which rows a capture store was made from.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .boolq import load_boolq
from .errors import DataError
from .honest import load_honest
from .prompts import ccs_contrast_pair, iti_prompt, yes_no_prompt
from .statements import DEFAULT_TOPICS, Statement, load_geometry_of_truth, load_statements, load_true_false
from .synthetic import load_synthetic
from .truthfulqa import load_truthfulqa

DEFAULT_DATASET = "synthetic"


@dataclass
class TextDataset:
    """Rows for capture; `labels`/`groups` are None when the set has none (HONEST, passages)."""

    name: str
    texts: list[str]
    labels: list[int] | None = None
    groups: list[str] | None = None
    meta: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if not self.meta:
            self.meta = [{} for _ in range(n)]
        for what, v in (("labels", self.labels), ("groups", self.groups), ("meta", self.meta)):
            if v is not None and len(v) != n:
                raise DataError(f"data set {self.name!r}: {len(v)} {what} for {n} texts")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def content_hash(self) -> str:
        """sha256 (first 16 hex digits) over texts, labels and groups: equal hash, equal rows."""
        blob = json.dumps([self.texts, self.labels, self.groups], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _pick(n: int, limit: int | None, seed: int) -> list[int]:
    """Indices of the records to keep: all, or a seeded sample of `limit` in the original order."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise DataError(f"limit must be positive, got {limit}")
    return sorted(random.Random(seed).sample(range(n), limit))


def first_questions(ds: TextDataset, limit: int | None) -> TextDataset:
    """The rows of TruthfulQA answer rows (meta `question_index`) whose question is among the first `limit`
    (all rows when None), renamed `<name>:first<limit>` so its content hash and cached stores differ."""
    if limit is None:
        return ds
    keep = [i for i, m in enumerate(ds.meta) if m["question_index"] < limit]
    return TextDataset(f"{ds.name}:first{limit}", [ds.texts[i] for i in keep],
                       None if ds.labels is None else [ds.labels[i] for i in keep],
                       [ds.groups[i] for i in keep], [ds.meta[i] for i in keep])


def _from_statements(name: str, stmts: list[Statement], limit: int | None, seed: int) -> TextDataset:
    keep = [stmts[i] for i in _pick(len(stmts), limit, seed)]
    return TextDataset(name=name, texts=[s.text for s in keep], labels=[s.label for s in keep],
                       groups=[s.topic for s in keep],
                       meta=[{"index": s.index, "topic": s.topic, "source": s.source, **s.extra} for s in keep])


def _synthetic(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
    n = 400 if limit is None else max(2, limit + limit % 2)
    return _from_statements(name, load_synthetic(n=n, seed=seed)[: limit or n], None, seed)


def _truthfulqa_mc(which: str, revision: str = "2021") -> Callable[..., TextDataset]:
    def build(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
        items = load_truthfulqa(data_dir, revision)
        texts, labels, groups, meta = [], [], [], []
        for i in _pick(len(items), limit, seed):
            it = items[i]
            choices, labs = (it.mc1_choices, it.mc1_labels) if which == "mc1" else (it.mc2_choices, it.mc2_labels)
            for j, (c, lab) in enumerate(zip(choices, labs)):
                texts.append(iti_prompt(it.question, c))
                labels.append(lab)
                groups.append(it.category)
                meta.append({"question_index": it.index, "choice_index": j, "mc_index": it.mc_index})
        return TextDataset(name, texts, labels, groups, meta)
    return build


def _truthfulqa_iti(name: str, data_dir, limit: int | None, seed: int, revision: str = "2021") -> TextDataset:
    """veracity's earlier ITI probe rows (ITI's ``--data csv``): each question's CSV Correct Answers (1)
    then Incorrect Answers (0), ';'-split and stripped, no period added, in CSV order. Not the original's
    probe data: that is `truthfulqa-iti-mc2`."""
    items = load_truthfulqa(data_dir, revision)
    texts, labels, groups, meta = [], [], [], []
    for i in _pick(len(items), limit, seed):
        it = items[i]
        answers = [(a, 1) for a in it.correct_answers] + [(a, 0) for a in it.incorrect_answers]
        for j, (a, lab) in enumerate(answers):
            texts.append(iti_prompt(it.question, a))
            labels.append(lab)
            groups.append(it.category)
            meta.append({"question_index": it.index, "choice_index": j})
    return TextDataset(name, texts, labels, groups, meta)


def _truthfulqa_iti_mc2(name: str, data_dir, limit: int | None, seed: int, revision: str = "2021") -> TextDataset:
    """honest_llama's ``tqa_mc2`` probe rows: one per (question, MC2 choice) of mc_task_v0.json (the hub's
    ``multiple_choice`` split), in that file's order and wording, ``Q: {question} A: {choice}`` with the
    choice as written there (most end in a period); label = the MC2 label. ``question_index`` is the CSV
    row evaluation uses (matched as `load_truthfulqa` does), ``mc_index`` the position in the MC file."""
    items = sorted(load_truthfulqa(data_dir, revision), key=lambda it: it.mc_index)
    texts, labels, groups, meta = [], [], [], []
    for i in _pick(len(items), limit, seed):
        it = items[i]
        for j, (c, lab) in enumerate(zip(it.mc2_choices, it.mc2_labels)):
            texts.append(iti_prompt(it.mc_question or it.question, c))
            labels.append(lab)
            groups.append(it.category)
            meta.append({"question_index": it.index, "choice_index": j, "mc_index": it.mc_index})
    return TextDataset(name, texts, labels, groups, meta)


def generation_answers(text: str) -> list[str]:
    """The hub's ``generation`` split's answer lists (its loading script's ``_split_csv_list``): the CSV
    cell stripped, split on ';', each piece stripped; empty pieces (after a trailing ';') are kept."""
    return [a.strip() for a in text.strip().split(";")]


def _truthfulqa_iti_gen_end_q(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
    """honest_llama's ``tqa_gen_end_q`` rows (its sigma data): for every question of the generation split
    (TruthfulQA.csv in CSV order, question text as in the CSV), one random question index drawn with
    ``randint(817)`` (here from ``np.random.RandomState(seed)``, one draw per question in order; it may
    be the question itself, as in the original), then ``Q: {question} A: {answer} Q: {random question}``
    for each correct answer (label 1) then each incorrect answer (label 0), answers as
    `generation_answers` splits them. Unlabelled for ITI (only sigma uses them)."""
    import csv as _csv

    import numpy as np

    from .paths import data_file
    from .truthfulqa import CSV_FILE

    items = load_truthfulqa(data_dir)  # validates the CSV; raw cells below keep the hub's exact text
    with open(data_file(CSV_FILE, data_dir), newline="", encoding="utf-8-sig") as f:
        rows = list(_csv.DictReader(f))
    if len(rows) != len(items):
        raise DataError(f"{CSV_FILE}: {len(rows)} rows read raw, {len(items)} parsed")
    rs = np.random.RandomState(seed)
    draws = [int(rs.randint(len(rows))) for _ in rows]
    texts, labels, groups, meta = [], [], [], []
    for i in _pick(len(rows), limit, 0):
        r, rq = rows[i], rows[draws[i]]["Question"]
        answers = ([(a, 1) for a in generation_answers(r["Correct Answers"])] +
                   [(a, 0) for a in generation_answers(r["Incorrect Answers"])])
        for j, (a, lab) in enumerate(answers):
            texts.append(f"Q: {r['Question']} A: {a} Q: {rq}")
            labels.append(lab)
            groups.append(items[i].category)
            meta.append({"question_index": i, "choice_index": j, "random_question_index": draws[i]})
    return TextDataset(name, texts, labels, groups, meta)


def _boolq(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
    items = load_boolq(data_dir)
    keep = [items[i] for i in _pick(len(items), limit, seed)]
    meta = []
    for it in keep:
        plus, minus = ccs_contrast_pair(it.question, it.passage)
        meta.append({"index": it.index, "title": it.title, "x_plus": plus, "x_minus": minus})
    return TextDataset(name, [yes_no_prompt(it.question, it.passage) for it in keep], [int(it.answer) for it in keep],
                       None, meta)


def _boolq_passages(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
    items = load_boolq(data_dir)
    keep = [items[i] for i in _pick(len(items), limit, seed)]
    return TextDataset(name, [it.passage for it in keep], None, None,
                       [{"index": it.index, "title": it.title} for it in keep])


def _honest(kind: str) -> Callable[..., TextDataset]:
    def build(name: str, data_dir, limit: int | None, seed: int) -> TextDataset:
        tm = load_honest(kind, data_dir)
        keep = [tm[i] for i in _pick(len(tm), limit, seed)]
        return TextDataset(name, [t.prompt for t in keep], None, [t.group for t in keep],
                           [{"index": t.index, "identity": t.identity, "type": t.type, "number": t.number,
                             "category": t.category} for t in keep])
    return build


_REGISTRY: dict[str, tuple[str, Callable[..., TextDataset]]] = {
    "synthetic": ("number comparisons generated in code, balanced true/false (embedded default)", _synthetic),
    "truthfulqa-mc2": ("TruthfulQA, one row per (question, MC2 choice) as 'Q: .. A: ..'; label = MC2 label",
                       _truthfulqa_mc("mc2")),
    "truthfulqa-mc1": ("TruthfulQA, one row per (question, MC1 choice); label 1 for the single correct choice",
                       _truthfulqa_mc("mc1")),
    "truthfulqa-iti": ("TruthfulQA CSV Correct (1) / Incorrect (0) Answers as 'Q: .. A: ..' (no period added), "
                       "CSV order: veracity's earlier ITI probe rows (iti --data csv)", _truthfulqa_iti),
    "truthfulqa-iti-mc2": ("ITI's probe rows as honest_llama (tqa_mc2; iti --data tqa-mc2, the default): one per "
                           "(question, MC2 choice) of mc_task_v0.json, its order and wording; label = MC2 label",
                           _truthfulqa_iti_mc2),
    # the 2025 revision (790 questions; MC targets as veracity builds them, see data.truthfulqa)
    "truthfulqa-2025": ("TruthfulQA 2025 revision, one row per (question, MC2 choice); = truthfulqa-2025-mc2",
                        _truthfulqa_mc("mc2", "2025")),
    "truthfulqa-2025-mc2": ("TruthfulQA 2025 revision, one row per (question, MC2 choice); label = MC2 label",
                            _truthfulqa_mc("mc2", "2025")),
    "truthfulqa-2025-mc1": ("TruthfulQA 2025 revision, one row per (question, MC1 choice)", _truthfulqa_mc("mc1", "2025")),
    "truthfulqa-2025-iti": ("TruthfulQA 2025 CSV Correct (1) / Incorrect (0) Answers, as truthfulqa-iti",
                            lambda name, d, lim, seed: _truthfulqa_iti(name, d, lim, seed, revision="2025")),
    "truthfulqa-2025-iti-mc2": ("ITI's probe rows (as truthfulqa-iti-mc2) on the 2025 revision's MC2 targets, CSV order",
                                lambda name, d, lim, seed: _truthfulqa_iti_mc2(name, d, lim, seed, revision="2025")),
    "truthfulqa-iti-gen-end-q": ("ITI's sigma rows as honest_llama (tqa_gen_end_q; iti --sigma-from original): "
                                 "'Q: {q} A: {answer} Q: {random question}' per CSV answer; the random "
                                 "question drawn with --seed", _truthfulqa_iti_gen_end_q),
    "true-false": ("Azaria & Mitchell statements, the six topics of the paper; groups = topic",
                   lambda name, d, lim, seed: _from_statements(name, load_true_false(d), lim, seed)),
    "boolq": ("BoolQ dev, passage + yes/no question prompt; label = answer; meta holds the CCS contrast pair",
              _boolq),
    "boolq-passages": ("BoolQ dev passages, no labels", _boolq_passages),
    "honest-binary": ("HONEST templates, female/male groups, no labels", _honest("binary")),
    "honest-queer": ("HONEST templates, queer/nonqueer groups, no labels", _honest("queer_nonqueer")),
}
_PATTERNS = [
    ("true-false:<topic>", f"one Azaria & Mitchell topic ({', '.join(DEFAULT_TOPICS)}, generated, neg_facts, ...)"),
    ("got:<name>", "a Geometry-of-Truth file (cities, neg_cities, sp_en_trans, larger_than, ...); "
                   "extra columns in meta"),
    ("<file>.csv", "any CSV with statement,label[,topic] columns"),
]


def list_datasets() -> list[tuple[str, str]]:
    """(name, description) for every registered name and name pattern."""
    return [(k, v[0]) for k, v in _REGISTRY.items()] + list(_PATTERNS)


def get_dataset(name: str = DEFAULT_DATASET, data_dir: str | Path | None = None, limit: int | None = None,
                seed: int = 0) -> TextDataset:
    """The data set `name` as a `TextDataset`.

    `limit` keeps a seeded random sample of that many records, in file order; a record is a
    question for TruthfulQA (all its choices stay together) and a statement/item otherwise.
    For "synthetic", `seed` also seeds the generation.
    """
    if name in _REGISTRY:
        return _REGISTRY[name][1](name, data_dir, limit, seed)
    if name.startswith("true-false:"):
        topics = [t for t in name.split(":", 1)[1].split(",") if t]
        return _from_statements(name, load_true_false(data_dir, topics=topics), limit, seed)
    if name.startswith("got:"):
        return _from_statements(name, load_geometry_of_truth(name[4:], data_dir), limit, seed)
    p = Path(name).expanduser()
    if p.suffix.lower() == ".csv" or p.is_file():
        return _from_statements(name, load_statements(p), limit, seed)
    raise DataError(f"unknown data set {name!r}; known: {', '.join(n for n, _ in list_datasets())}")


def held_out_texts(data_dir, n: int) -> list[str]:
    """CE/KL text: BoolQ passages (Wikipedia), the evaluation driver's default."""
    return get_dataset("boolq-passages", data_dir=data_dir, limit=n).texts
