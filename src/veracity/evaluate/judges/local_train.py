"""Training and measuring truth/info judges against the human labels (finetune_{truth,info}.jsonl): the local
judge's trainer (`train_local_judge`: logistic stage, boosted-tree stage chosen on validation questions, held-out
report), and its agreement and degenerate-answer ratings for any judge. The judge itself: `local`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ...probes.splits import held_out_groups
from .base import DATA_FILES, KINDS, SUFFIX, THRESHOLD, Judge
from .local import DEGENERATE_CAP, JudgeReport, LocalJudge, _hashing, dense_features, reference_answers


def read_labels(kind: str, data_dir=None, path: str | Path | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(questions, answers, labels) from finetune_{truth,info}.jsonl."""
    from ...data.paths import data_file

    p = Path(path) if path else data_file(DATA_FILES[kind], data_dir)
    qs, ans, ys = [], [], []
    pat = re.compile(r"^Q: (.*)\nA: (.*)\n" + re.escape(SUFFIX[kind]) + r"$", re.S)
    with open(p) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            m = pat.match(obj["prompt"])
            comp = obj["completion"].strip()
            if not m or comp not in ("yes", "no"):
                raise ValueError(f"{p}, line {n}: expected 'Q: ..\\nA: ..\\n{SUFFIX[kind]}' and ' yes'/' no'")
            qs.append(m.group(1).strip())
            ans.append(m.group(2).strip())
            ys.append(int(comp == "yes"))
    return qs, ans, np.array(ys)


def _fit(X, y, C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=3000).fit(X, y)


# Boosted-tree settings tried on the validation questions (None = the logistic stage alone).
BOOSTERS = (None, (0.05, 300, 31), (0.05, 500, 15), (0.03, 600, 31))


def _booster(setting, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    lr, n, leaves = setting
    return HistGradientBoostingClassifier(learning_rate=lr, max_iter=n, max_leaf_nodes=leaves, random_state=seed)


def _oof_scores(X, y, rows: np.ndarray, groups: Sequence[str], C: float, n_splits: int = 5) -> np.ndarray:
    """Out-of-fold logistic scores for `rows`, folds disjoint by question: the booster must learn from
    scores of answers the logistic stage has not seen, as it will at test time."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros(len(rows))
    for a, b in GroupKFold(n_splits).split(rows, groups=groups):
        out[b] = _fit(X[rows[a]], y[rows[a]], C).decision_function(X[rows[b]])
    return out


def train_local_judge(kind: str, data_dir=None, *, heldout_frac: float = 0.2, seed: int = 0,
                      Cs: Sequence[float] = (0.3, 1.0, 3.0), max_train: int | None = None,
                      labels_path: str | Path | None = None, boosters: Sequence = BOOSTERS,
                      degenerate_cap: float | None | str = "default") -> LocalJudge:
    """Train a local judge on the human labels, questions split disjointly: held-out (reported),
    validation (chooses C and the booster setting, carved from the training questions), train. The
    stored model is fit on train + validation questions only, so its held-out accuracy is honest.
    `degenerate_cap`: "default" = DEGENERATE_CAP for info judges, None (off) for truth judges; the held-out
    accuracy is measured with it applied."""
    from scipy import sparse

    from ...data.truthfulqa import load_truthfulqa

    if kind not in KINDS:
        raise ValueError(f"judge kind must be one of {KINDS}, got {kind!r}")
    t0 = time.perf_counter()
    qs, ans, y = read_labels(kind, data_dir, labels_path)
    refs = reference_answers(load_truthfulqa(data_dir))
    test_q = held_out_groups(qs, heldout_frac, seed, draw="numpy")
    te = np.array([q in test_q for q in qs])
    tr_idx = np.flatnonzero(~te)
    if max_train is not None and len(tr_idx) > max_train:  # subsample training rows (seeded)
        tr_idx = np.sort(np.random.default_rng(seed).choice(tr_idx, max_train, replace=False))
    dense = np.array([dense_features(q, a, refs) for q, a in zip(qs, ans)], dtype=np.float64)
    mean, std = dense[tr_idx].mean(0), dense[tr_idx].std(0) + 1e-6
    X = sparse.hstack([sparse.csr_matrix((dense - mean) / std), _hashing().transform(ans)]).tocsr()
    tr_q = [qs[i] for i in tr_idx]
    val_q = held_out_groups(tr_q, 0.2, seed + 1, draw="numpy")
    is_val = np.array([qs[i] in val_q for i in tr_idx])
    fit_rows, val_rows = tr_idx[~is_val], tr_idx[is_val]
    val_acc = {}
    for C in Cs:
        clf = _fit(X[fit_rows], y[fit_rows], C)
        val_acc[str(C)] = float((clf.predict(X[val_rows]) == y[val_rows]).mean())
    best_C = float(max(Cs, key=lambda c: val_acc[str(c)]))
    # stage 2 chosen on the validation questions: out-of-fold scores inside the fitting questions
    # train the booster; the validation rows get scores from a logistic fit without them
    # None in `boosters`: the logistic stage alone is a candidate too
    best_booster, best_acc = None, (val_acc[str(best_C)] if None in boosters else -1.0)
    settings = [b for b in boosters if b is not None]
    if settings and len(set(tr_q)) >= 10:
        z_fit = _oof_scores(X, y, fit_rows, [qs[i] for i in fit_rows], best_C)
        z_val = _fit(X[fit_rows], y[fit_rows], best_C).decision_function(X[val_rows])
        for b in settings:
            m = _booster(b, seed).fit(np.column_stack([dense[fit_rows], z_fit]), y[fit_rows])
            acc_b = float((m.predict(np.column_stack([dense[val_rows], z_val])) == y[val_rows]).mean())
            val_acc["booster " + "/".join(map(str, b))] = acc_b
            if acc_b > best_acc:
                best_booster, best_acc = b, acc_b
    clf = _fit(X[tr_idx], y[tr_idx], best_C)
    coef, b0 = clf.coef_.ravel().astype(np.float64), float(clf.intercept_[0])
    booster = None
    if best_booster is not None:
        z_tr = _oof_scores(X, y, tr_idx, tr_q, best_C)
        booster = _booster(best_booster, seed).fit(np.column_stack([dense[tr_idx], z_tr]), y[tr_idx])
    if degenerate_cap == "default":
        degenerate_cap = DEGENERATE_CAP if kind == "info" else None
    judge = LocalJudge(kind, refs, mean, std, coef, b0, booster=booster, degenerate_cap=degenerate_cap)
    hq, ha = [qs[i] for i in np.flatnonzero(te)], [ans[i] for i in np.flatnonzero(te)]
    p = judge.score(hq, ha)
    acc = float(((p >= THRESHOLD).astype(int) == y[te]).mean())
    acc_nocap = None
    if judge.degenerate_cap is not None:
        cap, judge.degenerate_cap = judge.degenerate_cap, None
        acc_nocap = float(((judge.score(hq, ha) >= THRESHOLD).astype(int) == y[te]).mean())
        judge.degenerate_cap = cap
    rate = float(y[te].mean())
    judge.report = JudgeReport(kind=kind, heldout_accuracy=acc, heldout_majority_baseline=max(rate, 1 - rate),
                               n_train=int(len(tr_idx)), n_heldout=int(te.sum()),
                               n_train_questions=len(set(tr_q)), n_heldout_questions=len(test_q), C=best_C,
                               validation_accuracy=val_acc, seed=seed, train_seconds=time.perf_counter() - t0,
                               heldout_questions=sorted(test_q),
                               booster="/".join(map(str, best_booster)) if best_booster else None,
                               heldout_accuracy_without_cap=acc_nocap,
                               degenerate=degenerate_rating(judge, hq, ha, seed=seed))
    return judge


def degenerate_rating(judge: Judge, questions: Sequence[str], answers: Sequence[str], seed: int = 0) -> dict:
    """How a judge rates synthetic degenerate answers built from `answers` (`health.degenerate_answers`: a
    word repeated, a phrase repeated, the answer truncated and looped; one of each per answer of >= 4
    words): the share scored below the threshold (rated untrue / uninformative), overall and per kind."""
    from ..health import DEGENERATION_KINDS, degenerate_answers

    qs, ans, kinds = degenerate_answers(questions, answers, seed=seed)
    if not ans:
        return {"n": 0, "rated_negative": None}
    neg = judge.score(qs, ans) < THRESHOLD
    k = np.array(kinds)
    return {"n": len(ans), "seed": seed, "rated_negative": float(neg.mean()),
            "per_kind": {d: float(neg[k == d].mean()) for d in DEGENERATION_KINDS if (k == d).any()}}


def evaluate_judge(judge: Judge, data_dir=None, questions: set[str] | None = None,
                   labels_path: str | Path | None = None, degenerate: bool | None = None) -> dict:
    """Accuracy of `judge` against the human labels of its kind, on `questions` (default: a local judge's
    held-out questions; else all). `degenerate` (default: for local judges only, as it scores three more
    answers per answer): also `degenerate_rating` on synthetic degenerate versions of those answers."""
    qs, ans, y = read_labels(judge.kind, data_dir, labels_path)
    if questions is None and isinstance(judge, LocalJudge) and judge.report:
        questions = set(judge.report.heldout_questions)
    keep = np.array([questions is None or q in questions for q in qs])
    idx = np.flatnonzero(keep)
    p = judge.score([qs[i] for i in idx], [ans[i] for i in idx])
    pred = (p >= THRESHOLD).astype(int)
    yy = y[idx]
    out = {"kind": judge.kind, "judge": judge.describe(), "n": int(len(idx)), "accuracy": float((pred == yy).mean()),
           "true_positive_rate": float(pred[yy == 1].mean()) if (yy == 1).any() else None,
           "true_negative_rate": float(1 - pred[yy == 0].mean()) if (yy == 0).any() else None}
    if degenerate if degenerate is not None else isinstance(judge, LocalJudge):
        out["degenerate"] = degenerate_rating(judge, [qs[i] for i in idx], [ans[i] for i in idx])
    return out
