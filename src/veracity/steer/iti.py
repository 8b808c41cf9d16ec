"""Fit ITI (Li et al. 2023): per-head probes, top-K heads, a direction and a sigma per head.

Data: one row per (question, reference answer) of TruthfulQA as ``Q: {question} A: {answer}`` (data set
``truthfulqa-iti``), label = the answer is true, o_proj inputs (``heads.*``) at the last token, captured
once per model into a store and reused by every fold and configuration.

Per fold (the held-out questions are never seen):
1. the fold's training questions are split (seeded) into probe-train / validation questions;
2. one batched logistic probe per (layer, head) is fitted on probe-train rows and scored on validation
   rows; heads are ranked by validation accuracy;
3. each head's unit direction: ``com`` (mean true - mean false over the fold's training rows; the
   paper's best), ``probe`` (the probe weight), ``random`` (seeded), ``ccs`` (CCS on pairs of a true and
   a false answer to the same training question, sign fixed on their labels);
4. sigma = std of the activations projected on the direction over the fold's training rows (default)
   or over every question (``sigma_from="all"``, the original code's leak, to reproduce it).
Folds are question sets shuffled by seed (default) or contiguous (``contiguous=True``, the original).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .intervention import Intervention

DIRECTIONS = ("com", "probe", "random", "ccs")
SIGMA_FROM = ("train", "all")


@dataclass
class ITIConfig:
    """Fit options. `max_k` bounds how many ranked heads get a direction (all by default; CCS trains one
    probe per kept head, so it defaults to the top 96)."""

    direction: str = "com"
    sigma_from: str = "train"
    val_ratio: float = 0.2
    C: float = 1.0
    probe_max_iter: int = 25  # Newton steps: ranking heads needs accuracy, not machine precision
    seed: int = 0
    max_k: int | None = None
    ccs_restarts: int = 5
    ccs_epochs: int = 300
    device: str | None = None  # where probes are fitted (default: where the activations are)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.sigma_from not in SIGMA_FROM:
            raise ValueError(f"sigma_from must be one of {', '.join(SIGMA_FROM)}, got {self.sigma_from!r}")
        if not 0 < self.val_ratio < 1:
            raise ValueError("val_ratio must be in (0, 1)")


@dataclass
class ITIData:
    """Head activations for ITI: X [N, L, H, hd] (any float dtype; upcast per use), labels [N] (1 = true
    answer), question [N] (question id of each row)."""

    X: torch.Tensor
    labels: torch.Tensor
    question: np.ndarray
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = torch.as_tensor(self.labels).long().reshape(-1)
        self.question = np.asarray(self.question).reshape(-1)
        if not (len(self.X) == len(self.labels) == len(self.question)):
            raise ValueError("X, labels and question must have one entry per row")
        if self.X.dim() != 4:
            raise ValueError(f"X must be [N, layers, heads, head_dim], got {tuple(self.X.shape)}")

    @property
    def questions(self) -> np.ndarray:
        """Distinct question ids in first-appearance order."""
        _, first = np.unique(self.question, return_index=True)
        return self.question[np.sort(first)]

    def rows(self, questions: Sequence[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.question, np.asarray(questions)))


def make_folds(questions: Sequence[int], n_folds: int, seed: int = 0, contiguous: bool = False) -> list[np.ndarray]:
    """Test questions of each fold: a seeded shuffle split into n_folds near-equal parts, or (contiguous)
    consecutive blocks in the given order as the original code did."""
    q = np.asarray(list(questions))
    if n_folds < 2 or n_folds > len(q):
        raise ValueError(f"need 2 <= folds <= {len(q)} questions, got {n_folds}")
    if not contiguous:
        q = q[np.random.default_rng(seed).permutation(len(q))]
    return [np.sort(p) for p in np.array_split(q, n_folds)]


def load_iti_data(lm, data_dir: str | Path | None = None, limit: int | None = None, acts: str | Path | None = None,
                  batch_size: int = 32, progress: bool = True) -> ITIData:
    """Capture (or reopen) heads.* at the last token of every `truthfulqa-iti` row for this model.

    `limit`: only the first `limit` questions (CSV order, as the evaluation driver's --limit).
    The store defaults to the veracity cache, keyed by model fingerprint and data hash, so every fold,
    configuration and command reuses one capture per model."""
    from ..capture import capture_dataset
    from ..data import get_dataset
    from ..data.registry import TextDataset
    from ..models import cache_dir

    ds = get_dataset("truthfulqa-iti", data_dir=data_dir)
    if limit is not None:
        keep = [i for i, m in enumerate(ds.meta) if m["question_index"] < limit]
        ds = TextDataset(f"{ds.name}:first{limit}", [ds.texts[i] for i in keep], [ds.labels[i] for i in keep],
                         [ds.groups[i] for i in keep], [ds.meta[i] for i in keep])
    out = Path(acts) if acts else cache_dir() / "iti-acts" / f"{lm.fingerprint}-{ds.content_hash}"
    store = capture_dataset(lm, ds, "heads", positions="last", out=out, batch_size=batch_size,
                            dtype=torch.float16, progress=progress)
    X = store.stack("heads")
    q = [m["question_index"] for m in ds.meta]
    return ITIData(X=X, labels=torch.tensor(ds.labels), question=np.asarray(q),
                   source={"store": str(out), "dataset": ds.name, "content_hash": ds.content_hash,
                           "limit": limit, "model": lm.name, "fingerprint": lm.fingerprint})


@dataclass
class FoldFit:
    """One fold's fit: every kept head ranked (best first) with its direction and sigma; interventions
    for any K <= len(heads) and any alpha come from `intervention(k, alpha)` without refitting."""

    fold: int
    train_questions: np.ndarray
    test_questions: np.ndarray
    head_scores: torch.Tensor  # [L, H] validation accuracy
    heads: list[tuple[int, int]]  # ranked, best first
    directions: torch.Tensor  # [len(heads), hd]
    sigmas: torch.Tensor  # [len(heads)]
    config: ITIConfig
    shape: tuple[int, int, int]  # (layers, heads, head_dim)
    source: dict = field(default_factory=dict)

    def intervention(self, k: int, alpha: float) -> Intervention:
        if k > len(self.heads):
            raise ValueError(f"K={k} > {len(self.heads)} heads fitted (raise max_k)")
        L, H, hd = self.shape
        prov = {"method": "iti", **asdict(self.config), "fold": self.fold, "k": k,
                "train_questions": self.train_questions.tolist(), "test_questions": self.test_questions.tolist(),
                "head_val_acc": [float(self.head_scores[l, h]) for l, h in self.heads[:k]], **self.source}
        return Intervention(self.heads[:k], self.directions[:k], self.sigmas[:k], alpha, L, H, hd,
                            provenance=prov, head_scores=self.head_scores)


def _rank(scores: torch.Tensor) -> list[tuple[int, int]]:
    """Heads by descending score; ties broken by (layer, head) order (stable)."""
    L, H = scores.shape
    order = np.argsort(-scores.reshape(-1).double().numpy(), kind="stable")
    return [(int(i) // H, int(i) % H) for i in order]


def _ccs_directions(Xh: torch.Tensor, y: torch.Tensor, q: np.ndarray, cfg: ITIConfig) -> torch.Tensor:
    """CCS per head on (true, false) answer pairs of the same question, sides randomly swapped (seeded)
    so the unsupervised fit cannot key on position; the sign is fixed with the pair labels.
    Xh: [N, G, hd] -> unit directions [G, hd] in raw activation space (pointing to "true")."""
    from ..probes.ccs import CCSProbe

    rng = np.random.default_rng(cfg.seed)
    pos, neg, lab = [], [], []
    for qid in np.unique(q):
        idx = np.flatnonzero(q == qid)
        t = idx[y[idx].numpy() == 1]
        f = idx[y[idx].numpy() == 0]
        if len(t) == 0 or len(f) == 0:
            continue
        for a in t:
            b = f[rng.integers(len(f))]
            if rng.random() < 0.5:
                pos.append(a), neg.append(b), lab.append(1)
            else:
                pos.append(b), neg.append(a), lab.append(0)
    if len(set(lab)) < 2:
        raise ValueError("CCS needs training questions with both true and false answers")
    P, N_ = Xh[pos].float(), Xh[neg].float()
    probe = CCSProbe(n_restarts=cfg.ccs_restarts, epochs=cfg.ccs_epochs, seed=cfg.seed).fit(P, N_, lab)
    coef = probe.coef_.reshape(Xh.shape[1], -1)
    scale = 0.5 * (probe.scale_pos_ + probe.scale_neg_).reshape(coef.shape)
    raw = coef / scale  # the probe acts on normalised inputs: map its weight back to raw activations
    sign = torch.where(torch.as_tensor(probe.flipped_).reshape(-1).to(raw.device), -1.0, 1.0)
    return F.normalize(raw * sign[:, None], dim=-1).cpu()


def fit_fold(data: ITIData, train_questions: Sequence[int], cfg: ITIConfig, fold: int = 0,
             test_questions: Sequence[int] = ()) -> FoldFit:
    """Fit on `train_questions` only (sigma over every question if cfg.sigma_from == "all")."""
    from ..probes import LogisticProbe

    N, L, H, hd = data.X.shape
    train_q = np.asarray(list(train_questions))
    rng = np.random.default_rng(cfg.seed)
    perm = train_q[rng.permutation(len(train_q))]
    n_val = max(1, int(round(cfg.val_ratio * len(perm))))
    val_q, fit_q = perm[:n_val], perm[n_val:]
    fit_rows, val_rows, train_rows = data.rows(fit_q), data.rows(val_q), data.rows(train_q)
    y = data.labels
    dev = cfg.device or data.X.device
    X_fit = data.X[fit_rows].reshape(len(fit_rows), L * H, hd).to(dev, torch.float32)
    probe = LogisticProbe(C=cfg.C, standardize=False, max_iter=cfg.probe_max_iter, tol=1e-5).fit(X_fit, y[fit_rows])
    del X_fit
    X_val = data.X[val_rows].reshape(len(val_rows), L * H, hd).to(dev, torch.float32)
    scores = torch.as_tensor(probe.score(X_val, y[val_rows])).reshape(L, H).float()
    del X_val
    ranked = _rank(scores)
    kmax = cfg.max_k or (96 if cfg.direction == "ccs" else L * H)
    heads = ranked[:min(kmax, L * H)]
    li = torch.tensor([l for l, _ in heads])
    hi = torch.tensor([h for _, h in heads])
    Xt = data.X[train_rows][:, li, hi].float()  # [n, K, hd]
    yt = y[train_rows]
    if cfg.direction == "com":
        d = Xt[yt == 1].mean(0) - Xt[yt == 0].mean(0)
    elif cfg.direction == "probe":
        d = probe.coef_.reshape(L, H, hd)[li.to(probe.coef_.device), hi.to(probe.coef_.device)].float().cpu()
    elif cfg.direction == "random":
        g = torch.Generator().manual_seed(cfg.seed)
        d = torch.randn(L, H, hd, generator=g)[li, hi]
    else:
        d = _ccs_directions(Xt, yt, data.question[train_rows], cfg)
    d = F.normalize(d.float(), dim=-1)
    Xs = Xt if cfg.sigma_from == "train" else data.X[:, li, hi].float()
    sigmas = torch.einsum("nkd,kd->nk", Xs, d).std(0, unbiased=False)
    test_q = np.asarray(list(test_questions))
    return FoldFit(fold=fold, train_questions=np.sort(train_q), test_questions=np.sort(test_q),
                   head_scores=scores, heads=heads, directions=d, sigmas=sigmas, config=cfg,
                   shape=(L, H, hd), source=dict(data.source))


def fit_folds(data: ITIData, cfg: ITIConfig, n_folds: int = 2, contiguous: bool = False) -> list[FoldFit]:
    """One `FoldFit` per fold: fitted on the other folds' questions, held-out questions recorded."""
    folds = make_folds(data.questions, n_folds, seed=cfg.seed, contiguous=contiguous)
    out = []
    for i, test_q in enumerate(folds):
        train_q = np.concatenate([f for j, f in enumerate(folds) if j != i])
        out.append(fit_fold(data, train_q, cfg, fold=i, test_questions=test_q))
    return out


def fit(data: ITIData, cfg: ITIConfig | None = None, k: int = 48, alpha: float = 15.0,
        questions: Sequence[int] | None = None) -> Intervention:
    """An intervention fitted on `questions` (default: every question; nothing held out)."""
    cfg = cfg or ITIConfig()
    q = data.questions if questions is None else np.asarray(list(questions))
    ff = fit_fold(data, q, cfg, fold=-1)
    return ff.intervention(min(k, len(ff.heads)), alpha)
