"""The detect study (`veracity detect`): does the model know when its own answer is wrong?

The model answers short factual questions (`data.qa` tables, or a JSON file of the user's own) greedily and with
N seeded samples; hidden states are read by hooks on the generation's own forwards (`capture.generation`) at
every `POSITIONS` entry and the chosen layers, and every answer is labelled by the normalised-match rule.

Questions (never answers) are split, stratified by whether the greedy answer is right, into train / validation
/ control / test. Probes are fitted on EVERY answer (greedy and samples) of the train questions; every other
split is judged on the greedy answer of each question, the answer a deployed model gives. Detectors: each
registered probe per layer x position; a stacked ensemble (logistic on cross-fitted logits of the best
position's top layers); a semantic-entropy probe (logistic at the pre-generation token on binarised semantic
entropy). Baselines: mean and minimum token log-prob, P(True), semantic entropy, a text-only bag of words. The
detector and layer of each method are chosen on validation AUROC, ties broken by the validation d'
(`selection_key`), never on test. Every row is judged as a deployed detector
(`evaluate.detection.detector_report`): threshold at `fpr` on control, calibration on validation, AUROC/AUPRC
with bootstrap intervals, AURC, PRR, selective accuracy; best-of-N on the test questions' samples; the best
linear detector is kept (`evaluate.detector`).

Sources (`--data`, `SOURCES`): the first is the study's own (everything above); a second (e.g. TruthfulQA, whose
sentence answers the truth judge grades) is split in a train and a test half for TRANSFER: the best cell of the
first linear probe method and the text-only baseline, each fitted on one source's train answers, are tested on
both sources' test answers.

Resumable: the generations, their features and P(True) are cached in the run folder (generations.json +
features.safetensors) under a key of the settings that produce them; a rerun with the same settings skips them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
if TYPE_CHECKING:
    import torch

from ..capture.generation import POSITIONS
from ..constraints import Checked, ListOf, Options, Registered, Text
from ..data.qa import TABLES
from ..methods import options as o
from ..runs import schema_version

SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "control", "test")
# the QA tables (or --qa-file) and TriviaQA from the hub (validation split), labelled by alias match; TruthfulQA,
# by the truth judge
SOURCES = ("qa", "truthfulqa", "triviaqa")
HEADLINE = ("best_detector", "detect_auroc", "text_auroc", "n_correct", "n_wrong", "spike")


def _probe_names():
    from ..probes.registry import PROBES

    return [n for n, s in PROBES.items() if not s.needs_polarity]


@dataclass
class DetectConfig(Checked):
    """Every option of `veracity detect`."""

    _constraints = {"model": o.MODEL, "data": [ListOf([Options(SOURCES)], unique=True)],
                    "tables": [None, ListOf([Options(TABLES)], unique=True)],
                    "qa_file": o.OPTIONAL_TEXT, "n_questions": o.LIMIT, "n_truthfulqa": o.LIMIT, "judge": o.JUDGE,
                    "data_dir": o.OPTIONAL_TEXT, "n_samples": [o.Count(2)], "seed": o.SEED,
                    "temperature": o.POSITIVE, "max_new_tokens": o.COUNT, "layers": o.LAYERS,
                    "positions": [ListOf([Options(POSITIONS)], unique=True)],
                    "probes": [ListOf([Registered(_probe_names, "probe method")], unique=True)],
                    "splits": [ListOf(o.FRACTION, min_len=4)], "fpr": o.FRACTION, "n_boot": o.COUNT,
                    "ensemble_layers": o.COUNT, "p_true": o.BOOL, "batch_size": o.BATCH, "device": o.DEVICE}
    _commands = ("detect",)

    model: str = "smollm2"
    # the first source is the study's own (splits, every detector and baseline); a second one is the transfer
    # target: probes fitted on one source are tested on the other, and back
    data: list[str] = field(default_factory=lambda: ["qa"])
    tables: list[str] | None = None  # QA tables (None: every table; [] is refused)
    qa_file: str | None = None  # {"questions": [{"question", "answer", "aliases"?}]}, instead of the tables
    n_questions: int | None = None  # a seeded draw of this many QA questions (None: all)
    n_truthfulqa: int | None = None  # a seeded draw of this many TruthfulQA questions (None: all 817)
    judge: str = "local"  # the truth judge that labels TruthfulQA answers (`evaluate.judges.get_judge`)
    data_dir: str | None = None  # the data folder TruthfulQA is read from (default: $VERACITY_DATA)
    n_samples: int = 5
    seed: int = 0
    temperature: float = 1.0
    max_new_tokens: int = 24
    layers: list[int] | None = None  # None: every layer
    positions: list[str] = field(default_factory=lambda: list(POSITIONS))
    probes: list[str] = field(default_factory=lambda: ["logistic", "mass-mean", "mlp-tiny"])
    splits: list[float] = field(default_factory=lambda: [0.5, 0.15, 0.15, 0.2])  # train, validation, control, test
    fpr: float = 0.01
    n_boot: int = 1000
    ensemble_layers: int = 3
    p_true: bool = True
    batch_size: int = 16
    device: str | None = None


@dataclass
class DetectScoreConfig(Checked):
    """Every option of `veracity detect-score`: a kept detector scoring a model's answers to QA questions."""

    _constraints = {"detector": [Text()], "model": o.MODEL, "tables": [None, ListOf([Options(TABLES)], unique=True)],
                    "n_questions": o.LIMIT, "seed": o.SEED, "max_new_tokens": o.COUNT, "device": o.DEVICE}
    _commands = ("detect-score",)

    detector: str  # PATH of PATH.json + PATH.safetensors, or a detect run folder (required)
    model: str = "smollm2"
    tables: list[str] | None = None
    n_questions: int | None = None
    seed: int = 0
    max_new_tokens: int = 24
    device: str | None = None


def score_with_detector(cfg: DetectScoreConfig) -> list:
    """`veracity detect-score`: the kept detector's score, P(correct) and flag for each answer
    (`evaluate.detector.score_questions`)."""
    from ..evaluate.detector import score_questions

    return score_questions(cfg.detector, cfg.model, tables=cfg.tables, n_questions=cfg.n_questions, seed=cfg.seed,
                           max_new_tokens=cfg.max_new_tokens, device=cfg.device)


# ------------------------------------------------------------------------------------------ the result

@dataclass
class DetectResult:
    """The typed result of `veracity detect` (docs/reference/results.md). `detectors`: one flat row per detector
    and baseline (registered metric names, plus `detect_auroc_low/high` for the interval); `grid`: validation and
    test AUROC per probe method x position x layer; `curves`: ROC, risk-coverage and reliability points per row;
    `transfer`: with a second data source, the best probe cell and the text-only baseline fitted on each source's
    train questions and tested on each source's test questions (greedy answers)."""

    model: str
    counts: dict  # greedy_correct, greedy_wrong, sample_correct, sample_wrong
    splits: dict  # split -> {"questions", "correct", "wrong"}
    detectors: list
    grid: list
    spike: dict
    best_of_n: dict
    curves: dict
    detector: dict | None  # the kept detector: {"path", "name", "validation_auroc"}
    notes: list
    elapsed_s: float = 0.0
    sources: dict = field(default_factory=dict)  # source -> {"questions", "correct", "wrong"} (greedy answers)
    transfer: list = field(default_factory=list)  # {"detector", "fitted_on", "tested_on", counts, AUROC + interval}
    schema_version: int = SCHEMA_VERSION

    def best(self) -> dict | None:
        """The detector row (not a baseline) chosen on validation (`selection_key`): the study's headline."""
        rows = [r for r in self.detectors if r["kind"] != "baseline" and _finite(r.get("validation_auroc"))]
        return max(rows, key=selection_key) if rows else None

    def headline(self) -> dict:
        """What `veracity runs list` shows: the best detector's test AUROC against the text-only baseline's."""
        b = self.best()
        text = next((r for r in self.detectors if r["name"] == "text only"), None)
        return {"best_detector": b["name"] if b else None, "detect_auroc": b["detect_auroc"] if b else None,
                "text_auroc": text["detect_auroc"] if text else None, "n_correct": self.counts["greedy_correct"],
                "n_wrong": self.counts["greedy_wrong"], "spike": self.spike.get("spike")}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables: every detector against every baseline on the test split, and best-of-N."""
        t = self.splits.get("test", {})
        # two tables of a few columns each, not one of eleven (about 160 characters wide): how well each detector
        # separates wrong answers, then what it does as a deployed filter (calibration, abstaining)
        out = [(f"{self.model}: test split, {t.get('questions', 0)} greedy answers ({t.get('correct', 0)} right / "
                f"{t.get('wrong', 0)} wrong): detecting the wrong ones",
                ["detector", "AUROC [95% CI]", "AUPRC wrong", "recall@FPR", "bal. acc@FPR"],
                [[r["name"], _ci(r), r.get("detect_auprc_wrong"), r.get("detect_recall_at_fpr"),
                  r.get("detect_balanced_accuracy")] for r in self.detectors]),
               ("as a filter: calibration (ECE), risk-coverage (AURC, PRR), accuracy of the answers kept",
                ["detector", "ECE", "AURC", "PRR", "acc@50%", "acc@80%", "acc@100%"],
                [[r["name"], r.get("detect_ece"), r.get("detect_aurc"), r.get("detect_prr"),
                  r.get("selective_accuracy_50"), r.get("selective_accuracy_80"), r.get("selective_accuracy_100")]
                 for r in self.detectors])]
        if self.best_of_n:
            acc, diff = self.best_of_n["accuracy"], self.best_of_n["detector_minus"]
            out.append((f"best-of-N on {self.best_of_n['n_questions']} test questions (accuracy [95% CI])",
                        ["strategy", "accuracy", "detector minus it"],
                        [[k, _iv(v), _iv(diff[k]) if k in diff else ""] for k, v in acc.items()]))
        if self.transfer:
            out.append(("transfer: fitted on one source's train questions, tested on each source's test questions "
                        "(greedy answers)", ["detector", "fitted on", "tested on", "right / wrong", "AUROC [95% CI]"],
                        [[r["detector"], r["fitted_on"], r["tested_on"], f"{r['correct']} / {r['wrong']}", _ci(r)]
                         for r in self.transfer]))
        return out

    def lines(self) -> list[str]:
        """Summary lines printed under the tables."""
        c = self.counts
        out = [f"greedy answers: {c['greedy_correct']} right / {c['greedy_wrong']} wrong; samples: "
               f"{c['sample_correct']} right / {c['sample_wrong']} wrong"]
        if len(self.sources) > 1:
            out.append("greedy answers per source: " + "; ".join(
                f"{k} {v['correct']} right / {v['wrong']} wrong" for k, v in self.sources.items()))
        if self.spike:
            out.append(f"best layer {self.spike['best_layer']}: test AUROC {_f(self.spike['best'])}, neighbours "
                       f"{_f(self.spike['neighbours_mean'])}" + (" -- a single-layer SPIKE" if self.spike["spike"] else ""))
        if self.detector:
            out.append(f"kept detector: {self.detector['name']} -> {self.detector['path']}.json/.safetensors")
        return out + list(self.notes)

    def to_json(self) -> dict:
        """The results.json payload."""
        return {"schema_version": self.schema_version, "model": self.model, "counts": self.counts,
                "splits": self.splits, "detectors": self.detectors, "grid": self.grid, "spike": self.spike,
                "best_of_n": self.best_of_n, "curves": self.curves, "detector": self.detector, "notes": self.notes,
                "elapsed_s": self.elapsed_s, "sources": self.sources, "transfer": self.transfer}

    @classmethod
    def from_json(cls, d: dict) -> "DetectResult":
        """Read a results.json payload back; a newer schema_version is refused."""
        v = schema_version(d, "detect", SCHEMA_VERSION)
        return cls(d["model"], d["counts"], d["splits"], d["detectors"], d["grid"], d["spike"], d["best_of_n"],
                   d["curves"], d.get("detector"), d.get("notes", []), d.get("elapsed_s", 0.0),
                   d.get("sources", {}), d.get("transfer", []), schema_version=v)

    def write(self, run) -> None:
        """detectors.csv, layers.csv, risk_coverage.csv, the plots, then results.json."""
        run.write_csv("detectors.csv", self.detectors)
        run.write_csv("layers.csv", self.grid)
        if self.transfer:
            run.write_csv("transfer.csv", self.transfer)
        run.write_csv("risk_coverage.csv", [{"detector": n, "coverage": x, "risk": y} for n, c in self.curves.items()
                                            for x, y in zip(*c["risk_coverage"])])
        _plots(run, self.curves)
        run.finish(self.to_json(), headline=self.headline())


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _f(v) -> str:
    return f"{v:.3f}" if _finite(v) else "n/a"


def _iv(v) -> str:
    return f"{_f(v[0])} [{_f(v[1])}, {_f(v[2])}]"


def _ci(r: dict) -> str:
    return _iv((r.get("detect_auroc"), r.get("detect_auroc_low"), r.get("detect_auroc_high")))


def _plots(run, curves: dict) -> None:
    """roc.png, risk_coverage.png and reliability.png of every row with curves."""
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, key, xl, yl, diag in (("roc.png", "roc", "false-positive rate (correct answers flagged)",
                                     "recall (wrong answers flagged)", True),
                                    ("risk_coverage.png", "risk_coverage", "coverage (share answered)",
                                     "risk (error rate among answered)", False),
                                    ("reliability.png", "reliability", "calibrated P(correct)", "share correct", True)):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for det, c in curves.items():
            if c.get(key) and len(c[key][0]):
                ax.plot(c[key][0], c[key][1], "-" if key != "reliability" else "o-", label=det, linewidth=1.2,
                        markersize=3)
        if diag:
            ax.plot([0, 1], [0, 1], ":", color="grey", label="chance" if key == "roc" else "perfect calibration")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=7)
        run.save_figure(fig, name)


# ------------------------------------------------------------------------------------------ pieces

def source_of(item) -> str:
    """The `SOURCES` entry a question comes from (TruthfulQA and TriviaQA questions carry their name as table)."""
    return item.table if item.table in ("truthfulqa", "triviaqa") else "qa"


def load_questions(cfg: DetectConfig) -> list:
    """The study's questions, source by source in `cfg.data` order: for "qa", `cfg.qa_file` ({"questions":
    [{"question", "answer", "aliases"?, "id"?}, ...]}) or the QA tables, then a seeded draw of `cfg.n_questions`
    (kept in order); for "truthfulqa", a seeded draw of `cfg.n_truthfulqa` TruthfulQA questions; for "triviaqa",
    a seeded draw of `cfg.n_questions` of TriviaQA's validation questions from the hub (`data.qa.load_triviaqa`)."""
    from ..data.qa import load_triviaqa, load_truthfulqa_qa
    from ..validation import BadInput

    if len(cfg.data) > 2:
        raise BadInput(f"--data takes one source, or two (the study's own, then the transfer target), got {cfg.data}")
    items: list = []
    for src in cfg.data:
        if src == "qa":
            part = _qa_questions(cfg)
        elif src == "triviaqa":
            part = load_triviaqa("validation", limit=cfg.n_questions, seed=cfg.seed)
        else:
            part = load_truthfulqa_qa(cfg.data_dir, limit=cfg.n_truthfulqa, seed=cfg.seed)
        need = 4 if src == cfg.data[0] else 2
        if len(part) < need:
            raise BadInput(f"the detect study needs at least {need} {src} questions ("
                           f"{'one per split' if need == 4 else 'a train and a test half'}), got {len(part)}")
        items += part
    return items


def _qa_questions(cfg: DetectConfig) -> list:
    from ..data.qa import QAItem, load_qa
    from ..validation import BadInput

    if cfg.qa_file is not None:
        from ..artifacts import read_json

        rows = read_json(cfg.qa_file, {"questions": "list"}, "QA file")["questions"]
        if not rows or not all(
                isinstance(r, dict) and isinstance(r.get("question"), str) and isinstance(r.get("answer"), str)
                for r in rows):
            raise BadInput(f"--qa-file {cfg.qa_file}: expected {{\"questions\": [{{\"question\", \"answer\", "
                           "\"aliases\"}}, ...]}}")
        items = [QAItem(str(r.get("id", f"file-{i:03d}")), r["question"], r["answer"],
                        tuple(dict.fromkeys([r["answer"], *[str(a) for a in r.get("aliases", [])]])), "file")
                 for i, r in enumerate(rows)]
    else:
        items = load_qa(cfg.tables)
    if cfg.n_questions is not None and cfg.n_questions < len(items):
        keep = sorted(random.Random(f"detect:{cfg.seed}").sample(range(len(items)), cfg.n_questions))
        items = [items[i] for i in keep]
    return items


def split_questions(greedy_correct, fractions, seed: int) -> dict[str, np.ndarray]:
    """Question indices per split (`SPLITS`), stratified by the greedy answer's correctness: each class is shuffled
    (seeded) and cut by the cumulative fractions, so every split gets its share of right and wrong answers."""
    y = np.asarray(greedy_correct, dtype=bool)
    frac = np.asarray(fractions, dtype=np.float64)
    frac = frac / frac.sum()
    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {s: [] for s in SPLITS}
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(y == cls))
        cuts = np.round(np.cumsum(frac)[:-1] * idx.size).astype(int)
        for s, chunk in zip(SPLITS, np.split(idx, cuts)):
            parts[s] += chunk.tolist()
    return {s: np.array(sorted(v), dtype=np.int64) for s, v in parts.items()}


def linear_parts(probe, G: int) -> tuple[np.ndarray, ...]:
    """(means, scales, weights, biases) [G, d] x3 and [G] of a fitted linear probe, such that its logit is
    ((x - mean) / scale) . w + b: logistic's standardisation and standardised weights, a scaled probe's
    temperature folded into w and b (the same logit as `decision_function`: tested)."""
    t = lambda a: a.detach().double().cpu().reshape(G, -1).numpy()  # noqa: E731
    if getattr(probe, "mean_", None) is not None and getattr(probe, "coef_std_", None) is not None:
        return t(probe.mean_), t(probe.scale_), t(probe.coef_std_), t(probe.intercept_std_).reshape(G)
    w, b = t(probe.coef_), t(probe.intercept_).reshape(G)
    temp = t(probe.temperature_).reshape(G) if getattr(probe, "temperature_", None) is not None else np.ones(G)
    return np.zeros_like(w), np.ones_like(w), w / temp[:, None], b / temp


def _cache_key(cfg: DetectConfig, fingerprint: str, ids: list[str], layers: list[int]) -> str:
    key = {"fingerprint": fingerprint, "ids": ids, "n_samples": cfg.n_samples, "seed": cfg.seed,
           "temperature": cfg.temperature, "max_new_tokens": cfg.max_new_tokens, "layers": layers, "p_true": cfg.p_true}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _generate(lm, items, cfg: DetectConfig, layers: list[int], run, log) -> tuple[list[dict], torch.Tensor]:
    """Every answer (greedy + samples) as a record and its features [n, positions, layers, d], from the run
    folder's cache when it holds the same settings' generations, else generated (in chunks, with progress)."""
    import torch
    from ..capture.generation import answer_questions

    key = _cache_key(cfg, lm.fingerprint, [it.id for it in items], layers)
    gpath, fpath = run.path / "generations.json", run.path / "features.safetensors"
    if gpath.exists() and fpath.exists():
        from ..artifacts import ArtifactError, read_json, read_safetensors

        try:
            cached = read_json(gpath, {"key": "str", "answers": "list"}, "generation cache")
            if cached["key"] == key:
                log(f"reusing the {len(cached['answers'])} cached answers in {gpath}")
                return cached["answers"], read_safetensors(fpath, what="feature cache")["features"]
        except ArtifactError as e:
            log(f"ignoring the damaged generation cache ({e}); generating again")
    t0 = time.time()
    recs, feats = [], []
    step = max(1, 64 // (cfg.n_samples + 1))
    for start in range(0, len(items), step):
        chunk = items[start:start + step]
        ans = answer_questions(lm, chunk, n_samples=cfg.n_samples, seed=cfg.seed, temperature=cfg.temperature,
                               max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size, layers=layers)
        q = {it.id: it for it in chunk}
        for a in ans:
            recs.append({"item_id": a.item_id, "question": q[a.item_id].question, "aliases": list(q[a.item_id].aliases),
                         "sample": a.sample, "text": a.text, "answer": a.answer, "correct": bool(a.correct),
                         "logprobs": [float(x) for x in a.logprobs]})
            feats.append(a.features[:, layers].clone())
        log(f"generated {min(start + step, len(items))}/{len(items)} questions x {cfg.n_samples + 1} answers "
            f"({time.time() - t0:.0f}s)")
    if cfg.p_true:
        from ..evaluate.p_true import p_true_scores

        g = [r for r in recs if r["sample"] < 0]
        for r, p in zip(g, p_true_scores(lm, [r["question"] for r in g], [r["text"] for r in g],
                                         batch_size=cfg.batch_size)):
            r["p_true"] = p.score
        log("scored P(True) of the greedy answers")
    F = torch.stack(feats).contiguous()
    from safetensors.torch import save_file

    save_file({"features": F}, str(run.file("features.safetensors")))
    run.write_json("generations.json", {"key": key, "answers": recs})
    return recs, F


def _report_row(name: str, kind: str, scores: np.ndarray, y: np.ndarray, rows: dict, cfg: DetectConfig,
                extra: dict) -> tuple[dict, dict]:
    """One detector's row (registered metric names) and its curves, from its scores on every question's greedy
    answer (`rows[split]`: indices into them)."""
    from sklearn.metrics import roc_curve

    from ..evaluate.detection import (auroc, detector_report, fit_calibrator, reliability_bins, risk_coverage_curve,
                                      separation)

    def part(s):
        return scores[rows[s]], y[rows[s]]

    te_s, te_y = part("test")
    ctrl = part("control") if y[rows["control"]].sum() > 0 else None
    val = part("validation") if 0 < y[rows["validation"]].sum() < rows["validation"].size else None
    row = {"name": name, "kind": kind, **extra,
           "validation_auroc": auroc(*val) if val is not None else math.nan,
           "validation_separation": separation(*val) if val is not None else math.nan}
    curves: dict = {}
    if te_s.size == 0:
        return row, curves
    rep = detector_report(te_s, te_y, control=ctrl, validation=val, fpr=cfg.fpr, n_boot=cfg.n_boot, seed=cfg.seed)
    row.update(rep.metrics())
    row.update({"detect_auroc_low": rep.auroc.low, "detect_auroc_high": rep.auroc.high,
                "threshold": rep.flag.threshold if rep.flag else math.nan})
    cov, risk = risk_coverage_curve(te_s, te_y)
    curves["risk_coverage"] = [cov.tolist(), risk.tolist()]
    if 0 < te_y.sum() < te_y.size:
        fpr_, tpr_, _ = roc_curve(1 - te_y, -te_s)  # flagging wrong answers: positives are the wrong ones
        curves["roc"] = [fpr_.tolist(), tpr_.tolist()]
    if val is not None:
        t, p, n = reliability_bins(fit_calibrator(*val)(te_s), te_y)
        curves["reliability"] = [p.tolist(), t.tolist(), n.tolist()]
    return row, curves


def _transfer_row(detector: str, fit_on: str, test_on: str, scores, labels, cfg: DetectConfig) -> dict:
    """One transfer cell: AUROC (with its bootstrap interval) of `scores` on the test answers' labels."""
    from ..evaluate.detection import auroc_ci

    y = np.asarray(labels)
    row = {"detector": detector, "fitted_on": fit_on, "tested_on": test_on, "n_test": int(y.size),
           "correct": int(y.sum()), "wrong": int((1 - y).sum()), "detect_auroc": math.nan,
           "detect_auroc_low": math.nan, "detect_auroc_high": math.nan}
    if 0 < y.sum() < y.size:
        iv = auroc_ci(scores, y, n_boot=cfg.n_boot, seed=cfg.seed)
        row.update({"detect_auroc": iv.value, "detect_auroc_low": iv.low, "detect_auroc_high": iv.high})
    return row


def _auroc_safe(s, y) -> float:
    from ..evaluate.detection import auroc

    return auroc(s, y) if 0 < np.sum(y) < np.size(y) else math.nan


def _validation(s, y) -> dict:
    """What `selection_key` reads of scores `s` on validation labels `y`: their AUROC and separation (d'), NaN
    where one class is absent."""
    from ..evaluate.detection import separation

    both = 0 < np.sum(y) < np.size(y)
    return {"validation_auroc": _auroc_safe(s, y), "validation_separation": separation(s, y) if both else math.nan}


def selection_key(row: dict) -> tuple[float, float]:
    """How a cell or detector is chosen on validation, everywhere in this study: the highest validation AUROC,
    ties broken by the validation separation (d'), never by grid order; unjudged rows last."""
    v, d = row.get("validation_auroc", math.nan), row.get("validation_separation", math.nan)
    return (v if _finite(v) else -1.0, d if (isinstance(d, float) and not math.isnan(d)) else -math.inf)


# ------------------------------------------------------------------------------------------ the study

def run_detect(cfg: DetectConfig, out, overwrite: bool = False, log: Callable[[str], None] = print, *,
               truth_judge=None) -> DetectResult:
    """`veracity detect`: generate and label the model's own answers, fit and judge every detector against every
    baseline, use the signal (selective answering, best-of-N), transfer between the sources, keep the best linear
    detector (module doc). `truth_judge`: a `Judge` or callable for TruthfulQA answers instead of `cfg.judge`."""
    import torch
    from ..runs import check_out_folder

    check_out_folder(out, "detect", overwrite=overwrite)  # before reading any input or loading a model
    from ..evaluate.detection import best_of_n, fit_calibrator, layer_spike, logprob_scores, threshold_at_fpr
    from ..evaluate.answer_match import match_rule
    from ..evaluate.semantic_entropy import binarise_entropy, cluster_answers, semantic_entropies
    from ..evaluate.text_baseline import fit_text_baseline, text_baseline_scores
    from ..models import load_checked
    from ..probes.registry import make_probe
    from ..runs import RunFolder
    from ..validation import BadInput
    from ..evaluate.detector import Detector

    t0 = time.time()
    if len(cfg.splits) != 4 or abs(sum(cfg.splits) - 1) > 1e-6:
        raise BadInput(f"--splits must be four fractions (train, validation, control, test) summing to 1, got "
                       f"{cfg.splits}")
    items = load_questions(cfg)
    judge = None
    if "truthfulqa" in cfg.data:  # the judge is built (and refused) before any model is loaded
        from ..evaluate.judges import get_judge

        try:
            judge = get_judge(truth_judge if truth_judge is not None else cfg.judge, "truth")
        except (FileNotFoundError, ValueError) as e:
            raise BadInput(f"{e} (TruthfulQA answers need a truth judge: train one with `veracity judge train "
                           "--kind truth`, or pass --judge)") from None
        if judge is None:
            raise BadInput("--data truthfulqa needs a truth judge to label the answers; --judge none gives none")
    run = RunFolder(out, "detect", {k: getattr(cfg, k) if k != "judge" or isinstance(cfg.judge, str) else "object"
                                    for k in cfg.__dataclass_fields__}, overwrite=overwrite,
                    seed=cfg.seed, defer=True)
    lm = load_checked(cfg.model, cfg.device, cfg.layers)
    n_layers = lm.arch.n_layers
    layers = sorted({l % n_layers for l in cfg.layers}) if cfg.layers else list(range(n_layers))
    run.start()
    recs, F = _generate(lm, items, cfg, layers, run, log)
    notes: list[str] = []

    # ---- labels, questions, semantic entropy
    qids = [it.id for it in items]
    qpos = {q: i for i, q in enumerate(qids)}
    src = np.array([source_of(it) for it in items])
    if judge is not None:  # TruthfulQA answers are sentences: the truth judge grades each one's first line
        from ..data.qa import first_line
        from ..evaluate.judges import THRESHOLD

        tq = [r for r in recs if src[qpos[r["item_id"]]] == "truthfulqa"]
        lines = [r["text"][slice(*first_line(r["text"]))] for r in tq]
        for r, p in zip(tq, judge.score([r["question"] for r in tq], lines)):
            r["judge_score"], r["correct"] = float(p), bool(p >= THRESHOLD)
        log(f"judged {len(tq)} TruthfulQA answers with {judge.describe().get('name', 'the truth judge')}")
    y_all = np.array([int(r["correct"]) for r in recs])
    q_of = np.array([qpos[r["item_id"]] for r in recs])
    greedy = np.array([next(j for j, r in enumerate(recs) if r["item_id"] == q and r["sample"] < 0) for q in qids])
    samples = [[j for j, r in enumerate(recs) if r["item_id"] == q and r["sample"] >= 0] for q in qids]
    y = y_all[greedy]
    primary = np.flatnonzero(src == cfg.data[0])  # the study's own questions; the rest are the transfer target
    second = np.flatnonzero(src != cfg.data[0])
    mean_lp = [float(np.mean(r["logprobs"])) if r["logprobs"] else -100.0 for r in recs]  # empty: least trusted
    se = semantic_entropies([[recs[j]["answer"] for j in s] for s in samples],
                            [[mean_lp[j] for j in s] for s in samples], [it.aliases for it in items])
    counts = {"greedy_correct": int(y[primary].sum()), "greedy_wrong": int((1 - y[primary]).sum()),
              "sample_correct": int(sum(y_all[j] for q in primary for j in samples[q])),
              "sample_wrong": int(sum(1 - y_all[j] for q in primary for j in samples[q]))}
    sources = {d: {"questions": int((src == d).sum()), "correct": int(y[src == d].sum()),
                   "wrong": int((1 - y[src == d]).sum())} for d in cfg.data}
    log(f"greedy answers: {counts['greedy_correct']} right / {counts['greedy_wrong']} wrong")
    sp = {s: primary[v] for s, v in split_questions(y[primary], cfg.splits, cfg.seed).items()}
    sp2 = {s: second[v] for s, v in split_questions(y[second], [0.5, 0, 0, 0.5], cfg.seed).items()
           if s in ("train", "test")} if second.size else {}
    split_info = {s: {"questions": int(v.size), "correct": int(y[v].sum()), "wrong": int((1 - y[v]).sum())}
                  for s, v in sp.items()}
    train_rows = np.flatnonzero(np.isin(q_of, sp["train"]))
    ytr = y_all[train_rows]

    # ---- probes per method x position x layer; scores of every answer
    P = {p: POSITIONS.index(p) for p in cfg.positions}
    S: dict[tuple[str, str], np.ndarray] = {}  # (method, position) -> [n_answers, L]
    probes: dict[tuple[str, str], object] = {}
    grid = []
    if 0 < ytr.sum() < ytr.size:
        for m in cfg.probes:
            for p, pi in P.items():
                pr = make_probe(m, seed=cfg.seed).fit(F[train_rows, pi], torch.as_tensor(ytr))
                S[(m, p)] = pr.decision_function(F[:, pi]).detach().double().cpu().reshape(len(recs), -1).numpy()
                probes[(m, p)] = pr
                for li, l in enumerate(layers):
                    sc = S[(m, p)][greedy, li]
                    grid.append({"method": m, "position": p, "layer": l,
                                 **_validation(sc[sp["validation"]], y[sp["validation"]]),
                                 "test_auroc": _auroc_safe(sc[sp["test"]], y[sp["test"]])})
            log(f"fitted {m} on {train_rows.size} train answers at {len(P)} positions x {len(layers)} layers")
    else:
        notes.append("the train split's answers are all right or all wrong: no probe could be fitted")

    rows_g = {s: sp[s] for s in SPLITS}
    det_rows, curves, scored = [], {}, {}  # scored: name -> score of every answer (for best-of-N / keeping)

    def add(name, kind, all_scores, extra):
        row, c = _report_row(name, kind, all_scores[greedy], y, rows_g, cfg, extra)
        det_rows.append(row)
        curves[name] = c
        scored[name] = all_scores

    for m in cfg.probes:
        cells = [g for g in grid if g["method"] == m]
        if cells:
            b = max(cells, key=selection_key)
            add(f"{m} L{b['layer']} {b['position']}", "probe", S[(m, b["position"])][:, layers.index(b["layer"])],
                {"method": m, "layers": [b["layer"]], "position": b["position"]})
    spike = {}
    best_cells = [g for g in grid if g["method"] == cfg.probes[0]]
    if best_cells:
        b = max(grid, key=selection_key)
        by_layer = {g["layer"]: g["test_auroc"] for g in grid if g["method"] == b["method"]
                    and g["position"] == b["position"] and _finite(g["test_auroc"])}
        if by_layer:
            ls = layer_spike(by_layer)
            spike = {"method": b["method"], "position": b["position"], "best_layer": ls.best_layer, "best": ls.best,
                     "neighbours_mean": ls.neighbours_mean, "spike": ls.spike}

    # ---- stacked ensemble: logistic on cross-fitted logits of the best linear position's top layers
    lin = [m for m in cfg.probes if m in ("logistic", "mass-mean", "mass-mean-cov")]
    kept_parts: dict[str, tuple] = {}
    if lin and S:
        from sklearn.linear_model import LogisticRegression

        m = lin[0]
        cells = sorted([g for g in grid if g["method"] == m], key=selection_key, reverse=True)
        pos = cells[0]["position"]
        top = [g["layer"] for g in cells if g["position"] == pos][:cfg.ensemble_layers]
        li = [layers.index(l) for l in top]
        pi = P[pos]
        folds = np.arange(sp["train"].size) % 3
        rng = np.random.default_rng(cfg.seed)
        fold_of_q = dict(zip(rng.permutation(sp["train"]).tolist(), folds.tolist()))
        f_rows = np.array([fold_of_q[q] for q in q_of[train_rows]])
        oof = np.zeros((train_rows.size, len(li)))
        ok = True
        for k in range(3):
            tr, te = train_rows[f_rows != k], train_rows[f_rows == k]
            if not (0 < y_all[tr].sum() < tr.size) or te.size == 0:
                ok = False
                break
            pr = make_probe(m, seed=cfg.seed).fit(F[tr][:, pi][:, li], torch.as_tensor(y_all[tr]))
            oof[f_rows == k] = pr.decision_function(F[te][:, pi][:, li]).detach().double().cpu().reshape(te.size, -1).numpy()
        if ok and len(li) > 1:
            stack = LogisticRegression(C=1.0, random_state=cfg.seed, max_iter=1000).fit(oof, ytr)
            ens = S[(m, pos)][:, li] @ stack.coef_[0] + stack.intercept_[0]
            name = f"ensemble {m} L{','.join(map(str, top))} {pos}"
            add(name, "ensemble", ens, {"method": m, "layers": top, "position": pos})
            kept_parts[name] = (m, pos, top, stack.coef_[0], float(stack.intercept_[0]))
        for r in det_rows:
            if r["kind"] == "probe" and r["method"] in lin:
                kept_parts[r["name"]] = (r["method"], r["position"], r["layers"], np.ones(1), 0.0)

    # ---- semantic-entropy probe at the pre-generation token
    try:
        thr, _ = binarise_entropy(se[sp["train"]])
        se_lab = (se < thr).astype(int)
        if "pre" in P and 0 < se_lab[sp["train"]].sum() < sp["train"].size:
            pr = make_probe("logistic", seed=cfg.seed).fit(F[greedy[sp["train"]], P["pre"]],
                                                            torch.as_tensor(se_lab[sp["train"]]))
            sc = pr.decision_function(F[:, P["pre"]]).detach().double().cpu().reshape(len(recs), -1).numpy()
            vs, vl = sc[greedy[sp["validation"]]], se_lab[sp["validation"]]
            k = max(range(len(layers)), key=lambda i: selection_key(_validation(vs[:, i], vl)))
            add(f"SE probe L{layers[k]} pre", "se-probe", sc[:, k],
                {"method": "logistic", "layers": [layers[k]], "position": "pre", "entropy_threshold": thr})
    except ValueError as e:
        notes.append(f"no semantic-entropy probe: {e}")

    # ---- baselines
    mean_b, min_b = logprob_scores([r["logprobs"] or [-100.0] for r in recs])
    add("mean log-prob", "baseline", mean_b, {})
    add("min log-prob", "baseline", min_b, {})
    if cfg.p_true:
        pt = np.array([r.get("p_true", 0.0) for r in recs])
        add("P(True)", "baseline", pt, {})
    add("semantic entropy", "baseline", -se[q_of], {})
    if 0 < ytr.sum() < ytr.size:
        tb = fit_text_baseline([recs[j]["question"] for j in train_rows], [recs[j]["text"] for j in train_rows], ytr,
                               seed=cfg.seed)
        add("text only", "baseline", text_baseline_scores(tb, [r["question"] for r in recs], [r["text"] for r in recs]),
            {})

    # ---- transfer: the best cell of the first linear method, and the text-only baseline, fitted on one source's
    # train questions and tested on each source's test questions
    transfer = []
    if sp2:
        lm_ = [m for m in cfg.probes if m in ("logistic", "mass-mean", "mass-mean-cov")] or list(cfg.probes)
        cells = [g for g in grid if g["method"] == lm_[0]]
        cell = max(cells, key=selection_key) if cells else None
        train = {cfg.data[0]: sp["train"], "other": sp2["train"]}
        test = {cfg.data[0]: sp["test"], "other": sp2["test"]}
        other = cfg.data[1]
        name = {cfg.data[0]: cfg.data[0], "other": other}
        for fit_on in train:
            rows_fit = np.flatnonzero(np.isin(q_of, train[fit_on]))
            yf = y_all[rows_fit]
            scorers = {}
            if 0 < yf.sum() < yf.size:
                if cell is not None:
                    li, pi = layers.index(cell["layer"]), P[cell["position"]]
                    pr = make_probe(cell["method"], seed=cfg.seed).fit(F[rows_fit, pi][:, li:li + 1],
                                                                        torch.as_tensor(yf))
                    scorers[f"{cell['method']} L{cell['layer']} {cell['position']}"] = \
                        pr.decision_function(F[:, pi][:, li:li + 1]).detach().double().cpu().reshape(-1).numpy()
                tb2 = fit_text_baseline([recs[j]["question"] for j in rows_fit], [recs[j]["text"] for j in rows_fit],
                                        yf, seed=cfg.seed)
                scorers["text only"] = text_baseline_scores(tb2, [r["question"] for r in recs],
                                                            [r["text"] for r in recs])
            else:
                notes.append(f"transfer: the {name[fit_on]} train answers are all right or all wrong; nothing fitted")
            for det_name, sc in scorers.items():
                for test_on, qs in test.items():
                    transfer.append(_transfer_row(det_name, name[fit_on], name[test_on], sc[greedy[qs]], y[qs], cfg))
        log(f"transfer between {cfg.data[0]} and {other}: {len(transfer)} cells")

    # ---- the kept detector and best-of-N with it
    res = DetectResult(lm.name, counts, split_info, det_rows, grid, spike, {}, curves, None, notes,
                       sources=sources, transfer=transfer)
    keepable = [r for r in det_rows if r["name"] in kept_parts and _finite(r.get("validation_auroc"))]
    if keepable:
        best = max(keepable, key=selection_key)
        m, pos, top, sw, sb = kept_parts[best["name"]]
        pr = probes[(m, pos)]
        mu, sc_, w, b = linear_parts(pr, len(layers))
        idx = [layers.index(l) for l in top]
        s_all = scored[best["name"]]
        ctrl = sp["control"] if y[sp["control"]].sum() > 0 else sp["validation"]
        threshold = threshold_at_fpr(s_all[greedy[ctrl]], y[ctrl], cfg.fpr)
        val = sp["validation"]
        cal = fit_calibrator(s_all[greedy[val]], y[val]) if 0 < y[val].sum() < val.size else None
        det = Detector(list(top), [pos] * len(top), w[idx], b[idx], mu[idx], sc_[idx], np.asarray(sw, float),
                       float(sb), float(threshold) if math.isfinite(threshold) else float(s_all.max() + 1),
                       {"method": "platt", "a": cal.a if cal else 1.0, "b": cal.b if cal else 0.0},
                       lm.fingerprint, best["name"],
                       {"model": lm.name, "fpr": cfg.fpr, "seed": cfg.seed, "study": "detect"})
        det.write_files(run.file("detector"))
        res.detector = {"path": "detector", "name": best["name"], "validation_auroc": best["validation_auroc"]}
        te = sp["test"]
        if te.size:
            bon = best_of_n([[s_all[j] for j in samples[q]] for q in te], [[mean_lp[j] for j in samples[q]] for q in te],
                            [[int(y_all[j]) for j in samples[q]] for q in te],
                            [cluster_answers([recs[j]["answer"] for j in samples[q]], match_rule(items[q].aliases))
                             for q in te], y[te].tolist(), n_boot=cfg.n_boot, seed=cfg.seed)
            res.best_of_n = {"n_questions": bon.n_questions, "detector": best["name"],
                             "accuracy": {k: list(v) for k, v in bon.accuracy.items()},
                             "detector_minus": {k: list(v) for k, v in bon.detector_minus.items()}}
    else:
        notes.append("no linear detector could be fitted and judged on validation: nothing kept")

    split_of = {int(q): s for s in SPLITS for q in sp[s]}
    split_of.update({int(q): f"{cfg.data[1]}-{s}" for s, v in sp2.items() for q in v})
    run.write_csv("answers.csv", [{"item_id": r["item_id"], "sample": r["sample"], "source": src[qpos[r["item_id"]]],
                                   "split": split_of.get(qpos[r["item_id"]], ""), "text": r["text"],
        "answer": r["answer"], "correct": r["correct"], "judge_score": r.get("judge_score", ""), "mean_logprob": mean_lp[j],
        **{n: float(v[j]) for n, v in scored.items()}} for j, r in enumerate(recs)])
    res.elapsed_s = time.time() - t0
    res.write(run)
    return res
