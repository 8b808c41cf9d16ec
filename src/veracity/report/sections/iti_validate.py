"""`iti-validate`: TruthfulQA per fold with ITI, every head's probe accuracy with the selected heads boxed,
and answers before and after ITI.

The answers before ITI are the run's own (`--baseline`), or those of another run of the same model in the
report: an `iti validate --alpha 0` run (the very same code path) first, else an `eval truthfulqa` run with
the generation settings `iti validate` uses."""

from __future__ import annotations

import json

from ..page import Page, Run
from .common import answers_table, fold_tables, heads_heatmap

MAX_EXAMPLES = 10
# generation settings of `iti validate` (the evaluation driver's defaults): an `eval` run is its baseline only with these
_GEN_DEFAULTS = {"instruction": "default", "gen_style": "original", "max_new_tokens": 50}


def render(page: Page, run: Run) -> None:
    """Draw a `iti-validate` run's tables and figures into the page, from its typed result read back from
    results.json."""
    from ...experiments.iti_validate import ValidateRun

    res = ValidateRun.from_json(run.results)
    fold_tables(page, [{"fold": f["fold"], "n_questions": f["n_questions"], **f["metrics"]} for f in res.folds],
                res.summary)
    _heads(page, run, [[tuple(h) for h in f["heads"]] for f in res.folds])
    _examples(page, run, res)


def _interventions(run: Run) -> tuple[tuple[int, int] | None, list]:
    """(n_layers, n_heads) and every saved head-score map of the folds' intervention files
    (intervention_fold<k>.{json,safetensors}); a file that does not read is skipped. Read from the JSON half
    and the one `head_scores` tensor (`artifacts.read_safetensors_array`), so drawing a page needs no torch."""
    from ...artifacts import ArtifactError, read_json, read_safetensors_array

    shape, maps = None, []
    for js in sorted(run.path.glob("intervention_fold*.json")):
        try:
            meta = read_json(js, {"n_layers": "int", "n_heads": "int"}, "ITI intervention")
            scores = read_safetensors_array(js.with_suffix(".safetensors"), "head_scores", "ITI intervention")
        except ArtifactError:
            continue
        shape = shape or (meta["n_layers"], meta["n_heads"])
        if scores is not None and tuple(scores.shape) == shape:
            maps.append(scores)
    return shape, maps


def _heads(page: Page, run: Run, fold_heads: list[list[tuple[int, int]]]) -> None:
    selected = sorted({h for heads in fold_heads for h in heads})
    shape, maps = _interventions(run)
    if maps:
        m = (sum(maps) / len(maps)).tolist()
        title = "probe accuracy per attention head" + (f" (mean over {len(maps)} fold fits)" if len(maps) > 1
                                                       else " (fold fit)")
        label = "validation accuracy (fraction)"
    elif selected:  # no scores saved: how often each head was selected
        L = max(shape[0] if shape else 0, 1 + max(l for l, _ in selected))
        H = max(shape[1] if shape else 0, 1 + max(h for _, h in selected))
        m = [[0.0] * H for _ in range(L)]
        for heads in fold_heads:
            for l, h in heads:
                m[l][h] += 1
        title, label = "selected heads (no probe accuracies saved)", "times selected (count)"
    else:
        return
    marks = [(l, h) for l, h in selected if l < len(m) and h < len(m[0])]
    if marks:
        title += f"; {len(marks)} selected heads in red boxes" + (" (selected in any fold)" if len(fold_heads) > 1 else "")
    heads_heatmap(page, m, range(len(m)), title, label, marks)


def _answers(run: Run) -> dict[int, dict]:
    """question index -> the row of answers.jsonl (`answer` with ITI, `answer_before` with --baseline)."""
    path = run.path / "answers.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return {r["index"]: r for r in rows}


def _baseline(page: Page, run: Run) -> tuple[Run | None, dict[int, dict]]:
    """The answers of the same model without ITI from another finished run of the report (one whose
    results.json does not read is no baseline)."""
    from ...experiments.iti_validate import ValidateRun
    from ...experiments.truthfulqa import EvalOutput

    cands = []
    for r in page.runs:
        if r is run or r.status != "finished" or r.config.get("model") != run.config.get("model"):
            continue
        try:
            if r.kind == "iti-validate" and ValidateRun.from_json(r.results).config.get("alpha") == 0:
                cands.append((0, str(r.path), r, _answers(r)))
            elif r.kind == "eval":
                ev = EvalOutput.from_json(r.results)
                if all(getattr(ev.config, k) == v for k, v in _GEN_DEFAULTS.items()):
                    cands.append((1, str(r.path), r, {q.index: {"answer": q.answer, "true": q.true}
                                                      for f in ev.folds for q in f.questions if q.answer is not None}))
        except (ValueError, KeyError, TypeError):
            continue
    cands = [c for c in cands if c[3]]
    if not cands:
        return None, {}
    best = min(cands, key=lambda c: c[:2])
    return best[2], best[3]


def _examples(page: Page, run: Run, res) -> None:
    after = _answers(run)
    if not after:
        return
    idx = sorted(after)[:MAX_EXAMPLES]
    if res.config.get("alpha") == 0:
        answers_table(page, [{"question": after[i]["question"], "before": after[i]["answer"],
                              "true_before": after[i]["true"]} for i in idx],
                      "example answers (alpha = 0: the model without ITI)")
        return
    if all(after[i]["answer_before"] is not None for i in idx):
        answers_table(page, [{"question": after[i]["question"], "before": after[i]["answer_before"],
                              "after": after[i]["answer"], "true_before": after[i]["true_before"],
                              "true_after": after[i]["true"]} for i in idx],
                      "example answers before and after ITI (before: the plain model in this run)")
        return
    base, before = _baseline(page, run)
    rows = [{"question": after[i]["question"], "before": before.get(i, {}).get("answer"), "after": after[i]["answer"],
             "true_before": before.get(i, {}).get("true"), "true_after": after[i]["true"]} for i in idx]
    title = (f"example answers before and after ITI (before: {base.kind} run {base.path.name})" if base is not None
             else "example answers with ITI (for the answers before, add an `iti validate --alpha 0` or "
                  "`eval truthfulqa` run of the same model to the report)")
    answers_table(page, rows, title)
