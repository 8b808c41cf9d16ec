"""A detector of wrong answers judged as a deployed one, and used: ranking quality, a threshold fixed in advance,
calibration, selective answering, best-of-N selection, and the checks every headline gets.

Convention everywhere in this module: a SCORE is the detector's belief that the answer is CORRECT (higher = more
likely correct: a probe's logit, P(True), a mean token log-prob, minus semantic entropy), and LABELS are 1 for a
correct answer, 0 for a wrong one. The detector FLAGS an answer as wrong when its score is below a threshold; so
for flagging, the positive class is the wrong answers: recall = share of wrong answers flagged, false-positive
rate = share of correct answers flagged.

Units and chance levels: AUROC is a probability (0.5 chance, 1 perfect); AUPRC of the correct answers has chance
level their share (the accuracy), AUPRC of the wrong answers the error rate; balanced accuracy 0.5; ECE a
probability gap (0 perfect); AURC a mean error rate over coverages (lower is better: the error rate at chance,
`oracle_aurc` for a perfect ranking); PRR 0 at chance, 1 for the oracle. Ties are handled
as scikit-learn does (AUROC: half; AUPRC: one threshold per distinct score) and, for risk-coverage, by the
expectation over a random order within a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

import numpy as np


class Interval(NamedTuple):
    """A point estimate and its percentile bootstrap interval."""
    value: float
    low: float
    high: float


def _as(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape or s.size == 0:
        raise ValueError(f"need one label per score, got {s.size} scores and {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("every score must be finite")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (wrong answer) or 1 (correct answer)")
    return s, y.astype(np.float64)


# ---- ranking: AUROC and AUPRC, weighted so that one sort serves every bootstrap resample ----

def _per_score(s: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct score, highest score first ([B, groups] for weights [B, n])."""
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
    wo, yo = w[:, order], y[order]
    return np.add.reduceat(wo * yo, starts, axis=1), np.add.reduceat(wo * (1 - yo), starts, axis=1)


def _auroc_w(s, y, w) -> np.ndarray:
    P, N = _per_score(s, y, w)
    pt, nt = P.sum(1), N.sum(1)
    below = nt[:, None] - np.cumsum(N, 1)  # negatives scoring strictly lower than each group
    num = (P * (below + 0.5 * N)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pt > 0) & (nt > 0), num / (pt * nt), np.nan)


def _auprc_w(s, y, w) -> np.ndarray:
    P, N = _per_score(s, y, w)
    tp, fp = np.cumsum(P, 1), np.cumsum(N, 1)
    prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
    pt = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pt > 0, (P * prec).sum(1) / pt, np.nan)  # sum of recall steps x precision


def auroc(scores, labels) -> float:
    """Area under the ROC curve: the probability that a correct answer scores above a wrong one, ties counting
    half (= `sklearn.metrics.roc_auc_score`); NaN when one class is absent. Chance 0.5."""
    s, y = _as(scores, labels)
    return float(_auroc_w(s, y, np.ones((1, s.size)))[0])


def auprc(scores, labels, positive: int = 1) -> float:
    """Average precision (= `sklearn.metrics.average_precision_score`) with the answers of class `positive` as the
    positives: 1 ranks correct answers by the score, 0 ranks wrong answers by minus the score (the detector of
    wrong answers). Chance = the positives' share; NaN when there are none."""
    s, y = _positives(*_as(scores, labels), positive)
    return float(_auprc_w(s, y, np.ones((1, s.size)))[0])


def separation(scores, labels) -> float:
    """The gap between the correct and the wrong answers' mean scores in pooled standard deviations (d'); the
    tie-break when two cells reach the same validation AUROC (small validation splits often give several 1.00,
    and grid order would then choose). Scale-free, so probes of different scales compare; +inf when both classes
    are constant and apart, NaN when one class is absent."""
    s, y = _as(scores, labels)
    a, b = s[y == 1], s[y == 0]
    if a.size == 0 or b.size == 0:
        return math.nan
    gap = float(a.mean() - b.mean())
    pooled = math.sqrt((a.var() * a.size + b.var() * b.size) / s.size)
    if pooled == 0:
        return math.copysign(math.inf, gap) if gap else 0.0
    return gap / pooled


def _bootstrap_counts(n: int, n_boot: int, seed: int, max_cells: int = 1 << 22) -> Iterator[np.ndarray]:
    """How often each of n rows is drawn in each of n_boot resamples with replacement ([chunk, n] floats)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, max_cells // max(n, 1))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]  # row r's draws, offset into row r
        yield np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _check_boot(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


def _positives(s: np.ndarray, y: np.ndarray, positive: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels with class `positive` as label 1 (wrong answers: minus the score, flipped labels)."""
    if positive not in (0, 1):
        raise ValueError(f"positive must be 1 (correct answers) or 0 (wrong answers), got {positive!r}")
    return (s, y) if positive == 1 else (-s, 1 - y)


def _ranking_ci(fn: Callable, s, y, n_boot: int, seed: int, level: float) -> Interval:
    _check_boot(n_boot, level)
    value = float(fn(s, y, np.ones((1, s.size)))[0])
    boots = np.concatenate([fn(s, y, w) for w in _bootstrap_counts(s.size, n_boot, seed)])
    return Interval(value, *_percentiles(boots, level))


def auroc_ci(scores, labels, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """AUROC with its percentile bootstrap interval over answers (resampled with replacement, seeded; a resample
    missing one class is left out of the percentiles)."""
    s, y = _as(scores, labels)
    return _ranking_ci(_auroc_w, s, y, n_boot, seed, level)


def auprc_ci(scores, labels, positive: int = 1, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """AUPRC (`auprc`, positives of class `positive`) with its percentile bootstrap interval, as `auroc_ci`."""
    s, y = _positives(*_as(scores, labels), positive)
    return _ranking_ci(_auprc_w, s, y, n_boot, seed, level)


# ---- a threshold fixed on a control split ----

def threshold_at_fpr(control_scores, control_labels, fpr: float = 0.01) -> float:
    """The threshold that flags (score < threshold) as many answers as possible while flagging at most a share
    `fpr` of the CORRECT answers of the control split: the (floor(fpr * n_correct) + 1)-th lowest correct score
    (answers tying with it are not flagged); +inf when `fpr` allows every correct answer to be flagged."""
    s, y = _as(control_scores, control_labels)
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    c = np.sort(s[y == 1])
    if c.size == 0:
        raise ValueError("the control split has no correct answer to set a false-positive rate on")
    k = int(math.floor(fpr * c.size + 1e-9))
    return float(c[k]) if k < c.size else math.inf


@dataclass(frozen=True)
class FlagResult:
    """A fixed threshold applied to a split: recall of the wrong answers, false-positive rate on the correct ones,
    and their balanced accuracy ((recall + 1 - fpr) / 2; chance 0.5)."""
    threshold: float
    recall: float
    fpr: float
    balanced_accuracy: float
    n_wrong: int
    n_correct: int


def flag_at_threshold(scores, labels, threshold: float) -> FlagResult:
    """Flag every answer scoring below `threshold` as wrong and measure it (NaN for a class that is absent)."""
    s, y = _as(scores, labels)
    flagged = s < threshold
    wrong, right = y == 0, y == 1
    recall = float(flagged[wrong].mean()) if wrong.any() else math.nan
    fpr = float(flagged[right].mean()) if right.any() else math.nan
    return FlagResult(float(threshold), recall, fpr, (recall + 1 - fpr) / 2, int(wrong.sum()), int(right.sum()))


# ---- calibration ----

def _platt(x: np.ndarray, t: np.ndarray, max_iter: int = 200) -> tuple[float, float]:
    """(a, b) minimising the cross-entropy of sigmoid(a x + b) against targets t: Newton steps with backtracking,
    on standardised x (mapped back)."""
    mu, sd = x.mean(), x.std()
    sd = sd if sd > 0 else 1.0
    X = np.column_stack([(x - mu) / sd, np.ones_like(x)])

    def loss(w):
        m = X @ w
        return float((np.logaddexp(0, m) - t * m).sum())

    w = np.zeros(2)
    f = loss(w)
    for _ in range(max_iter):
        p = 1 / (1 + np.exp(-(X @ w)))
        g = X.T @ (p - t)
        if np.abs(g).max() < 1e-12 * x.size:
            break
        H = X.T @ (X * (p * (1 - p))[:, None]) + 1e-12 * np.eye(2)
        step = np.linalg.solve(H, g)
        lam = 1.0
        while lam > 1e-10 and loss(w - lam * step) > f - 1e-4 * lam * (g @ step):
            lam /= 2
        w_new = w - lam * step
        f_new = loss(w_new)
        if f - f_new < 1e-15 * max(1.0, abs(f)):
            w = w_new
            break
        w, f = w_new, f_new
    return float(w[0] / sd), float(w[1] - w[0] * mu / sd)


@dataclass
class Calibrator:
    """A map from detector scores to P(correct), fitted on a validation split: "platt" (sigmoid(a * score + b)) or
    "isotonic" (a non-decreasing step function, clipped to the fitted range)."""
    method: str
    a: float = math.nan
    b: float = math.nan
    isotonic: object = field(default=None, repr=False)

    def __call__(self, scores) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64).ravel()
        if self.method == "platt":
            return 1 / (1 + np.exp(-(self.a * s + self.b)))
        return np.asarray(self.isotonic.predict(s), dtype=np.float64)


def fit_calibrator(scores, labels, method: str = "platt", smooth: bool = True) -> Calibrator:
    """Fit a `Calibrator` on validation scores and labels. Platt scaling (Platt 1999) without regularisation;
    `smooth` uses Platt's targets (n+ + 1)/(n+ + 2) and 1/(n- + 2) for the correct and wrong answers, which keeps
    the fit finite when the split is separable (without it, it is scikit-learn's unpenalised logistic regression).
    Isotonic: `sklearn.isotonic.IsotonicRegression` on [0, 1], out-of-range scores clipped."""
    s, y = _as(scores, labels)
    if method == "platt":
        n_pos, n_neg = y.sum(), (1 - y).sum()
        t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)) if smooth else y
        return Calibrator("platt", *_platt(s, t))
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return Calibrator("isotonic", isotonic=IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y))
    raise ValueError(f"unknown calibration {method!r}; use platt or isotonic")


def _bin_ids(probs: np.ndarray, n_bins: int) -> np.ndarray:
    # scikit-learn's calibration_curve binning: equal widths on [0, 1], a value on an edge goes to the lower bin
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probs)


def reliability_bins(probs, labels, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(share correct, mean predicted probability, count) of each non-empty equal-width bin: a reliability
    diagram's points (the first two = `sklearn.calibration.calibration_curve(..., strategy="uniform")`)."""
    p, y = _as(probs, labels)
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must lie in [0, 1]")
    ids = _bin_ids(p, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    hit = np.bincount(ids, weights=y, minlength=n_bins)
    conf = np.bincount(ids, weights=p, minlength=n_bins)
    ok = count > 0
    return hit[ok] / count[ok], conf[ok] / count[ok], count[ok]


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean over equal-width bins of |share correct - mean predicted P(correct)|
    (Naeini et al. 2015; `reliability_bins`' binning). 0 is perfectly calibrated."""
    true, pred, count = reliability_bins(probs, labels, n_bins)
    return float((count * np.abs(true - pred)).sum() / count.sum())


def calibrated_ece(val_scores, val_labels, test_scores, test_labels, method: str = "platt",
                   n_bins: int = 10) -> float:
    """ECE on the test split of the scores calibrated on the validation split (`fit_calibrator`)."""
    cal = fit_calibrator(val_scores, val_labels, method)
    return expected_calibration_error(cal(test_scores), test_labels, n_bins)


# ---- selective answering: risk-coverage ----

def risk_coverage_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk): answering only the k most trusted answers (highest scores), k = 1..n, coverage k/n and
    risk the error rate among them; within a tie of scores, the expected risk over a random order."""
    s, y = _as(scores, labels)
    order = np.argsort(-s, kind="stable")
    ss, err = s[order], 1 - y[order]
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
    sizes = np.diff(np.r_[starts, s.size])
    group_err = np.add.reduceat(err, starts)
    before = np.cumsum(group_err) - group_err
    g = np.repeat(np.arange(starts.size), sizes)
    k = np.arange(1, s.size + 1)
    errors = before[g] + (k - starts[g]) * group_err[g] / sizes[g]
    return k / s.size, errors / k


def aurc(scores, labels) -> float:
    """Area under the risk-coverage curve (Geifman, Uziel & El-Yaniv, ICLR 2019): the mean of the risk over the
    coverages 1/n, ..., 1. Lower is better; a score carrying no information has the error rate
    (`random_aurc`), a perfect ranking `oracle_aurc`."""
    return float(risk_coverage_curve(scores, labels)[1].mean())


def random_aurc(labels) -> float:
    """AURC of a detector that ranks at random, in expectation: the error rate at every coverage."""
    y = np.asarray(labels, dtype=np.float64)
    return float(1 - y.mean())


def oracle_aurc(labels) -> float:
    """AURC of the perfect ranking (every correct answer first): risk max(0, k - n_correct) / k."""
    y = np.asarray(labels, dtype=np.float64)
    k = np.arange(1, y.size + 1)
    return float((np.maximum(0, k - y.sum()) / k).mean())


def prediction_rejection_ratio(scores, labels) -> float:
    """PRR (Malinin et al. 2017; Malinin & Gales, ICLR 2021; the LM-Polygraph benchmark): the share of the
    oracle's improvement over random rejection that the detector achieves, (AURC_random - AURC) /
    (AURC_random - AURC_oracle), rejection curves read as risk over coverage. 0 at chance, 1 perfect, negative
    worse than chance; NaN when every answer is correct or every one wrong."""
    _, y = _as(scores, labels)
    rnd, orc = random_aurc(y), oracle_aurc(y)
    return (rnd - aurc(scores, labels)) / (rnd - orc) if rnd - orc > 1e-12 else math.nan


def selective_accuracy(scores, labels, coverage: float) -> float:
    """Accuracy on the ceil(coverage * n) most trusted answers (the detector abstains on the rest); ties as
    `risk_coverage_curve`. Coverage 1 is plain accuracy."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must lie in (0, 1], got {coverage}")
    _, risk = risk_coverage_curve(scores, labels)
    k = max(1, math.ceil(coverage * risk.size - 1e-9))
    return float(1 - risk[k - 1])


def selective_at_threshold(scores, labels, threshold: float) -> tuple[float, float]:
    """(coverage, accuracy) when answering only where the score reaches `threshold` (abstaining below it);
    accuracy NaN when nothing is answered."""
    s, y = _as(scores, labels)
    keep = s >= threshold
    return float(keep.mean()), float(y[keep].mean()) if keep.any() else math.nan


# ---- using the signal: best-of-N ----

STRATEGIES = ("greedy", "detector", "max_logprob", "majority", "oracle")


def _mean_ci(X: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Column means of X [n, k] and their paired percentile bootstrap intervals over rows ([k], [k, 2])."""
    _check_boot(n_boot, level)
    boots = np.concatenate([w @ X / X.shape[0] for w in _bootstrap_counts(X.shape[0], n_boot, seed)])
    return X.mean(0), np.array([_percentiles(boots[:, j], level) for j in range(X.shape[1])])


@dataclass(frozen=True)
class BestOfN:
    """Accuracy of each way of choosing one of N sampled answers per question (`STRATEGIES`: the greedy answer; the
    sample the detector trusts most; the highest-log-prob sample; majority vote, i.e. self-consistency; the oracle,
    right when any sample is), with intervals over questions, and the detector's pick minus each other strategy
    (paired: one resample of questions serves every strategy)."""
    n_questions: int
    accuracy: dict  # strategy -> Interval
    detector_minus: dict  # strategy -> Interval of accuracy(detector) - accuracy(strategy)
    picks: dict  # strategy -> chosen sample index per question (-1: greedy, not a sample; oracle: a correct one)

    def metrics(self) -> dict:
        """{registered metric name: accuracy} (`veracity.metrics`, group "selective")."""
        return {f"best_of_n_{k}": v.value for k, v in self.accuracy.items()}


def majority_pick(cluster_ids: Sequence[int]) -> int:
    """The first sample of the largest cluster (self-consistency's vote); among equally large clusters, the one
    seen first."""
    ids = list(cluster_ids)
    counts = {c: ids.count(c) for c in ids}
    best = max(counts.values())
    return next(i for i, c in enumerate(ids) if counts[c] == best)


def best_of_n(detector_scores: Sequence[Sequence[float]], log_probs: Sequence[Sequence[float]],
              correct: Sequence[Sequence[int]], cluster_ids: Sequence[Sequence[int]],
              greedy_correct: Sequence[int], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> BestOfN:
    """Compare the `STRATEGIES` for choosing among each question's N samples (N may differ between questions).
    Per question and sample: the detector's score (belief correct), the sample's log-prob (summed or mean: the
    caller's choice), whether it is correct (0/1), its cluster (`semantic_entropy.cluster_answers`); per question,
    whether the greedy answer is correct. Ties pick the first sample; a cluster's vote is its first sample's
    correctness."""
    q = len(greedy_correct)
    if not (len(detector_scores) == len(log_probs) == len(correct) == len(cluster_ids) == q) or q == 0:
        raise ValueError("need one entry per question in every argument, and at least one question")
    picks: dict[str, list[int]] = {k: [] for k in STRATEGIES}
    X = np.zeros((q, len(STRATEGIES)))
    for i in range(q):
        d, lp = np.asarray(detector_scores[i], float), np.asarray(log_probs[i], float)
        c, ids = np.asarray(correct[i]), list(cluster_ids[i])
        if not (d.size == lp.size == c.size == len(ids) > 0):
            raise ValueError(f"question {i}: need the same number (> 0) of scores, log-probs, labels and clusters")
        chosen = {"greedy": -1, "detector": int(np.argmax(d)), "max_logprob": int(np.argmax(lp)),
                  "majority": majority_pick(ids), "oracle": int(np.argmax(c))}
        for j, k in enumerate(STRATEGIES):
            picks[k].append(chosen[k])
            X[i, j] = float(greedy_correct[i]) if k == "greedy" else float(c[chosen[k]])
    det = STRATEGIES.index("detector")
    D = X[:, [det]] - X  # detector minus each strategy
    mean, ci = _mean_ci(np.hstack([X, D]), n_boot, seed, level)
    k = len(STRATEGIES)
    acc = {s: Interval(float(mean[j]), *ci[j]) for j, s in enumerate(STRATEGIES)}
    diff = {s: Interval(float(mean[k + j]), *ci[k + j]) for j, s in enumerate(STRATEGIES) if s != "detector"}
    return BestOfN(q, acc, diff, picks)


# ---- baselines and checks ----

def logprob_scores(token_log_probs: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """The log-prob baselines, one score per answer (belief correct): the mean and the minimum of its token
    log-probs (nats; an answer of no tokens is refused)."""
    if any(len(t) == 0 for t in token_log_probs):
        raise ValueError("an answer with no tokens has no token log-prob")
    return (np.array([float(np.mean(t)) for t in token_log_probs]),
            np.array([float(np.min(t)) for t in token_log_probs]))


@dataclass(frozen=True)
class LayerSpike:
    """Whether the best layer stands alone: its score, the mean of its neighbours' (NaN when it has none), and the
    flag (best - neighbours' mean > margin)."""
    best_layer: int
    best: float
    neighbours_mean: float
    spike: bool


def layer_spike(scores_by_layer: Mapping[int, float] | Sequence[float], margin: float = 0.05,
                radius: int = 1) -> LayerSpike:
    """Flag a headline resting on a single-layer spike: the best layer's score (higher is better, e.g. AUROC)
    exceeds by more than `margin` (in the score's units: 0.05 = 5 AUROC points) the mean score of the layers
    within `radius` places of it in layer order. A genuine read-out is smooth across depth; a lone peak is more
    likely selection noise (the best of many layers picked on the same data)."""
    items = sorted(scores_by_layer.items() if isinstance(scores_by_layer, Mapping)
                   else enumerate(scores_by_layer))
    if not items:
        raise ValueError("no layer scores")
    vals = np.array([float(v) for _, v in items])
    b = int(np.argmax(vals))
    nb = [j for j in range(b - radius, b + radius + 1) if j != b and 0 <= j < len(items)]
    nmean = float(vals[nb].mean()) if nb else math.nan
    return LayerSpike(int(items[b][0]), float(vals[b]), nmean, bool(nb and vals[b] - nmean > margin))


# ---- everything a detector is judged by, in one call ----

COVERAGES = (0.5, 0.8, 1.0)


@dataclass(frozen=True)
class DetectorReport:
    """A detector's test-split figures (module doc for units): ranking with intervals, the control split's
    threshold applied to the test split, ECE after calibrating on the validation split, risk-coverage, and
    selective accuracy at `COVERAGES`. `flag` and `ece` are None without a control or validation split."""
    n: int
    accuracy: float  # share of correct answers: AUPRC's chance level
    auroc: Interval
    auprc: Interval  # correct answers as positives
    auprc_wrong: Interval  # wrong answers as positives (the detector's job)
    aurc: float
    prr: float
    selective: dict  # coverage -> accuracy
    fpr_target: float
    flag: FlagResult | None = None
    ece: float | None = None

    def metrics(self) -> dict:
        """{registered metric name: value} (`veracity.metrics`, groups "detect" and "selective")."""
        out = {"detect_auroc": self.auroc.value, "detect_auprc": self.auprc.value,
               "detect_auprc_wrong": self.auprc_wrong.value, "detect_aurc": self.aurc, "detect_prr": self.prr}
        if self.flag is not None:
            out.update({"detect_recall_at_fpr": self.flag.recall, "detect_balanced_accuracy": self.flag.balanced_accuracy,
                        "detect_test_fpr": self.flag.fpr})
        if self.ece is not None:
            out["detect_ece"] = self.ece
        out.update({f"selective_accuracy_{round(100 * c)}": v for c, v in self.selective.items()})
        return out


def detector_report(test_scores, test_labels, control: tuple | None = None, validation: tuple | None = None,
                    fpr: float = 0.01, coverages: Sequence[float] = COVERAGES, calibration: str = "platt",
                    n_bins: int = 10, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> DetectorReport:
    """Judge a detector on the test split. `control`: (scores, labels) on which the threshold at false-positive
    rate `fpr` is set; `validation`: (scores, labels) the calibration is fitted on. The three splits must be
    disjoint (the caller's job)."""
    s, y = _as(test_scores, test_labels)
    flag = flag_at_threshold(s, y, threshold_at_fpr(*control, fpr=fpr)) if control is not None else None
    ece = calibrated_ece(*validation, s, y, method=calibration, n_bins=n_bins) if validation is not None else None
    return DetectorReport(
        n=int(s.size), accuracy=float(y.mean()),
        auroc=auroc_ci(s, y, n_boot, seed, level), auprc=auprc_ci(s, y, 1, n_boot, seed, level),
        auprc_wrong=auprc_ci(s, y, 0, n_boot, seed, level), aurc=aurc(s, y), prr=prediction_rejection_ratio(s, y),
        selective={float(c): selective_accuracy(s, y, c) for c in coverages}, fpr_target=fpr, flag=flag, ece=ece)
