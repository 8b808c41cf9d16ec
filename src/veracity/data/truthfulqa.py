"""TruthfulQA (Lin et al. 2021): the CSV's reference answers joined with the MC targets of mc_task_v0.json.

The CSV (original repo, ITI) and mc_task_v0.json (the hub's `multiple_choice` config, used by
lm-evaluation-harness) list the same 817 questions in DIFFERENT orders, and two rows differ in
text (a trailing space on the tarot question; "Are all plants plants?" in the CSV is "Are all
women women?" in the MC file). Rows are therefore joined on the stripped question text, and the
one left over on each side is paired by elimination; `index` is the CSV row and `mc_index` the
position in the MC file (its order is lm-evaluation-harness's order).

Revisions (`revision=`): "2021" (default; the v1 CSV + mc_task_v0.json above, as published results use)
and "2025" (the January 2025 revision: 790 questions, a `Best Incorrect Answer` column, no MC file). For
2025 the MC1/MC2 targets are veracity's construction, the one mc_task_v0.json follows for the 2021 CSV:
each answer closed with a period (`close_answer`), MC1 = [Best Answer] + Incorrect Answers (CSV order, the
one correct answer first), MC2 = Correct Answers (they include the Best Answer) + Incorrect Answers, labels
1 then 0, duplicates dropped (first kept); `mc_index` is the CSV row and `mc_question` the CSV wording.
`match_questions` pairs the questions of two revisions by text (for fitting on one, evaluating on the other).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError, row_error
from .paths import data_file, resolve_data_dir
from .readers import read_json, read_table, require_text

CSV_FILE = "truthfulqa/TruthfulQA.csv"
MC_FILE = "truthfulqa/mc_task_v0.json"
CSV_FILE_2025 = "truthfulqa_2025/TruthfulQA.csv"
_COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers")
_COLUMNS_2025 = _COLUMNS + ("Best Incorrect Answer",)
REVISIONS = ("2021", "2025")
DEFAULT_REVISION = "2021"
#: data-set names of the revisions (`--dataset`), and back
DATASET_NAMES = {"2021": "truthfulqa", "2025": "truthfulqa-2025"}


@dataclass
class TruthfulQAItem:
    """One TruthfulQA question with both families of reference answers."""

    index: int  # 0-based CSV row
    question: str  # CSV wording
    category: str
    type: str  # "Adversarial" / "Non-Adversarial"
    best_answer: str
    correct_answers: list[str]  # CSV, ';'-split and stripped, no period added
    incorrect_answers: list[str]
    mc1_choices: list[str]  # mc_task_v0.json order: the one correct answer first
    mc1_labels: list[int]
    mc2_choices: list[str]
    mc2_labels: list[int]
    source: str = ""
    mc_index: int = -1  # position in mc_task_v0.json (= hub `multiple_choice` order)
    mc_question: str = ""  # wording in mc_task_v0.json (what lm-evaluation-harness puts in the prompt)
    best_incorrect_answer: str = ""  # 2025 revision only ("" in 2021)
    revision: str = DEFAULT_REVISION


def split_answers(text: str) -> list[str]:
    """The original repo's `split_multi_answer(close=False)`: split on ';', strip, drop empties."""
    return [a.strip() for a in text.strip().split(";") if a.strip()]


def _targets(entry: object, key: str, path: Path, n: int) -> tuple[list[str], list[int]]:
    t = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(t, dict) or not t:
        raise row_error(path, None, f"entry {n}: missing or empty {key!r}")
    labels = []
    for choice, lab in t.items():
        if lab not in (0, 1) or isinstance(lab, float):
            raise row_error(path, None, f"entry {n}: {key} label of {choice!r} must be 0 or 1, got {lab!r}")
        labels.append(int(lab))
    if 1 not in labels:
        raise row_error(path, None, f"entry {n}: {key} has no correct choice")
    return list(t.keys()), labels


def _read_mc(path: Path) -> list[tuple[str, list[str], list[int], list[str], list[int]]]:
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise DataError(f"{path}: expected a non-empty JSON list of questions")
    out = []
    for n, entry in enumerate(data, start=1):
        q = entry.get("question") if isinstance(entry, dict) else None
        if not isinstance(q, str) or not q.strip():
            raise row_error(path, None, f"entry {n}: missing 'question'")
        c1, l1 = _targets(entry, "mc1_targets", path, n)
        c2, l2 = _targets(entry, "mc2_targets", path, n)
        out.append((q, c1, l1, c2, l2))
    return out


def _join(questions: list[str], mc_questions: list[str], csv_path: Path, mc_path: Path) -> list[int]:
    """For each CSV row, the index of its MC entry (stripped-text match, then elimination)."""
    if len(questions) != len(mc_questions):
        raise DataError(f"{csv_path} has {len(questions)} questions but {mc_path} has {len(mc_questions)}")
    by_text: dict[str, int] = {}
    for j, q in enumerate(mc_questions):
        by_text.setdefault(q.strip(), j)
    match = [by_text.get(q.strip(), -1) for q in questions]
    used = {j for j in match if j >= 0}
    if len(used) != len([j for j in match if j >= 0]):
        raise DataError(f"{csv_path}: duplicate questions; cannot align with {mc_path}")
    left_rows = [i for i, j in enumerate(match) if j < 0]
    left_mc = [j for j in range(len(mc_questions)) if j not in used]
    if len(left_rows) > 2:  # the known releases differ in two questions' wording at most
        raise DataError(f"{csv_path} and {mc_path} disagree on {len(left_rows)} questions "
                        f"(e.g. {questions[left_rows[0]]!r}); are they the same TruthfulQA release?")
    for i, j in zip(left_rows, left_mc):
        match[i] = j
    return match


def check_revision(revision: str) -> str:
    """"2021" / "2025" (also "truthfulqa" / "truthfulqa-2025"), else a DataError naming the choices."""
    rev = {v: k for k, v in DATASET_NAMES.items()}.get(str(revision), str(revision))
    if rev not in REVISIONS:
        raise DataError(f"unknown TruthfulQA revision {revision!r}; use one of {', '.join(REVISIONS)}")
    return rev


def close_answer(text: str) -> str:
    """The original repo's `format_best`: strip, add a final period when missing."""
    text = text.strip()
    return text if not text or text.endswith(".") else text + "."


def _dedupe(choices: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
    seen: set[str] = set()
    out_c, out_l = [], []
    for c, lab in zip(choices, labels):
        if c not in seen:
            seen.add(c)
            out_c.append(c)
            out_l.append(lab)
    return out_c, out_l


def load_truthfulqa_2025(data_dir: str | Path | None = None) -> list[TruthfulQAItem]:
    """The 790 questions of the 2025 revision, in CSV order, with veracity's MC targets (module doc)."""
    csv_path = data_file(CSV_FILE_2025, data_dir)
    items = []
    for i, (line, r) in enumerate(read_table(csv_path, _COLUMNS_2025)):
        q = require_text(r, "Question", csv_path, line)
        best = require_text(r, "Best Answer", csv_path, line).strip()
        best_bad = require_text(r, "Best Incorrect Answer", csv_path, line).strip()
        correct, incorrect = split_answers(r["Correct Answers"]), split_answers(r["Incorrect Answers"])
        if not correct or not incorrect:
            raise row_error(csv_path, line, "needs at least one correct and one incorrect answer")
        inc = [close_answer(a) for a in incorrect]
        c1, l1 = _dedupe([close_answer(best)] + inc, [1] + [0] * len(inc))
        c2, l2 = _dedupe([close_answer(a) for a in correct] + inc, [1] * len(correct) + [0] * len(inc))
        if 1 not in l2:  # the best answer is always among the correct ones in the released CSV
            c2, l2 = [close_answer(best)] + c2, [1] + l2
        items.append(TruthfulQAItem(
            index=i, question=q, category=r["Category"].strip(), type=r["Type"].strip(), best_answer=best,
            correct_answers=correct, incorrect_answers=incorrect, mc1_choices=c1, mc1_labels=l1, mc2_choices=c2,
            mc2_labels=l2, source=r.get("Source", "").strip(), mc_index=i, mc_question=q,
            best_incorrect_answer=best_bad, revision="2025"))
    return items


def match_questions(src: list[TruthfulQAItem], dst: list[TruthfulQAItem]) -> tuple[dict[int, int], list[int], list[int]]:
    """Questions of two revisions paired by stripped text: ({src index: dst index}, src indices with no
    match (e.g. the 28 questions the 2025 revision removed), dst indices with no match (questions added or
    reworded))."""
    by_text: dict[str, int] = {}
    for it in dst:
        by_text.setdefault(it.question.strip(), it.index)
    pairs = {it.index: by_text[it.question.strip()] for it in src if it.question.strip() in by_text}
    used = set(pairs.values())
    return pairs, [it.index for it in src if it.index not in pairs], [it.index for it in dst if it.index not in used]


def load_truthfulqa(data_dir: str | Path | None = None, revision: str = DEFAULT_REVISION) -> list[TruthfulQAItem]:
    """All TruthfulQA questions of `revision` ("2021": 817 questions of the v1 CSV with the MC1/MC2 targets
    of mc_task_v0.json; "2025": the 790 of the revised CSV, see `load_truthfulqa_2025`), in CSV order."""
    if check_revision(revision) == "2025":
        return load_truthfulqa_2025(data_dir)
    csv_path = data_file(CSV_FILE, data_dir)
    # beside the CSV when local (also when data_dir is the CSV itself); from its source otherwise
    mc_path = data_file(MC_FILE, None if resolve_data_dir(data_dir) is None else csv_path.parent)
    rows = read_table(csv_path, _COLUMNS)
    parsed = []
    for line, r in rows:
        q = require_text(r, "Question", csv_path, line)
        best = require_text(r, "Best Answer", csv_path, line)
        correct, incorrect = split_answers(r["Correct Answers"]), split_answers(r["Incorrect Answers"])
        if not correct or not incorrect:
            raise row_error(csv_path, line, "needs at least one correct and one incorrect answer")
        parsed.append((line, r, q, best, correct, incorrect))
    mc = _read_mc(mc_path)
    match = _join([p[2] for p in parsed], [m[0] for m in mc], csv_path, mc_path)
    items = []
    for i, ((line, r, q, best, correct, incorrect), j) in enumerate(zip(parsed, match)):
        mq, c1, l1, c2, l2 = mc[j]
        items.append(TruthfulQAItem(
            index=i, question=q, category=r["Category"].strip(), type=r["Type"].strip(), best_answer=best.strip(),
            correct_answers=correct, incorrect_answers=incorrect, mc1_choices=c1, mc1_labels=l1,
            mc2_choices=c2, mc2_labels=l2, source=r.get("Source", "").strip(), mc_index=j, mc_question=mq))
    return items


def cross_revision_items(fit_items: list[TruthfulQAItem], eval_items: list[TruthfulQAItem]) -> tuple[list[TruthfulQAItem], dict]:
    """Evaluation items of one revision under the question indices of another (the one an intervention is
    fitted on), paired by stripped question text (`match_questions`): each matched evaluation item is a copy
    with `index` = the fit revision's index, so k-fold code that holds out fit-revision questions evaluates
    their other-revision version. Questions with no counterpart are left out and reported:
    {"fit_revision", "eval_revision", "matched", "removed": fit questions with no match (not evaluated),
    "unmatched_eval": evaluation questions never evaluated (added or reworded)}."""
    import dataclasses

    pairs, removed, added = match_questions(fit_items, eval_items)
    by_eval = {it.index: it for it in eval_items}
    by_fit = {it.index: it for it in fit_items}
    mapped = [dataclasses.replace(by_eval[j], index=i) for i, j in sorted(pairs.items())]
    fit_rev = fit_items[0].revision if fit_items else DEFAULT_REVISION
    eval_rev = eval_items[0].revision if eval_items else DEFAULT_REVISION
    report = {"fit_revision": fit_rev, "eval_revision": eval_rev, "matched": len(pairs),
              "removed": [{"index": i, "question": by_fit[i].question} for i in removed],
              "unmatched_eval": [{"index": j, "question": by_eval[j].question} for j in added]}
    return mapped, report
