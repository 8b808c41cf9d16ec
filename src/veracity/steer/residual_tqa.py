"""CAA and LAT fitted on one fold of TruthfulQA, on the rows ITI probes.

Rows: the ITI data set (``truthfulqa-iti-mc2`` where registered, else ``truthfulqa-iti``: ``Q: {question}
A: {answer}``, label = the answer is true), the output of every decoder layer (``resid.*``) at the last
token, captured once per model into a store (default: the veracity cache, keyed by the weights'
fingerprint and the rows' content hash) and reused by every fold and method. Per fold only the training questions' rows are used:
- ``caa``: mean(true rows) - mean(false rows) (`fit_diff_means`);
- ``lat``: contrast pairs of a true and a false answer to the same training question (`pair_by_group`,
  seeded), then the first principal component of their differences (`fit_lat`).
Layers: by default the middle decoder layer (n_layers // 2), a common single-layer choice for
residual steering; any list can be given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .residual.fit import fit_diff_means, fit_lat, pair_by_group
from .residual.vectors import ResidualSteer

RESIDUAL_METHODS = ("caa", "lat")


@dataclass
class ResidualData:
    """X [N, L, D] (store dtype, every decoder layer), labels [N] (1 = true answer), question [N]."""

    X: torch.Tensor
    labels: torch.Tensor
    question: np.ndarray
    source: dict = field(default_factory=dict)


def default_dataset(revision: str = "2021") -> str:
    """ITI's probe rows: ``truthfulqa-iti-mc2`` (the original's tqa_mc2) where registered, else ``truthfulqa-iti``;
    on the 2025 revision the ``truthfulqa-2025-`` version of the same rows."""
    from ..data.registry import list_datasets

    if revision not in ("2021", "2025"):
        raise ValueError(f"revision must be 2021 or 2025, got {revision!r}")
    names = {n for n, _ in list_datasets()}
    name = "truthfulqa-iti-mc2" if "truthfulqa-iti-mc2" in names else "truthfulqa-iti"
    return name if revision == "2021" else name.replace("truthfulqa-", "truthfulqa-2025-")


def load_residual_data(lm, data_dir: str | Path | None = None, limit: int | None = None,
                       acts: str | Path | None = None, batch_size: int = 32, progress: bool = False,
                       dataset: str | None = None) -> ResidualData:
    """Capture (or reopen) resid.* at the last token of every row of `dataset` (default: ITI's rows,
    `default_dataset`; any data set whose rows carry a ``question_index`` in their meta) for this model.
    `limit`: only questions with CSV index < limit (the evaluation driver's --limit)."""
    from ..capture import capture_dataset
    from ..data import get_dataset
    from ..data.registry import first_questions
    from ..models import cache_dir

    ds = get_dataset(dataset or default_dataset(), data_dir=data_dir)
    if not ds.meta or "question_index" not in ds.meta[0]:
        raise ValueError(f"{ds.name}: rows need a question_index (TruthfulQA answer rows)")
    ds = first_questions(ds, limit)
    out = Path(acts) if acts else cache_dir() / "resid-acts" / f"{lm.fingerprint}-{ds.content_hash}"
    store = capture_dataset(lm, ds, "resid", positions="last", out=out, batch_size=batch_size,
                            dtype=torch.float16, progress=progress)
    return ResidualData(X=store.stack("resid"), labels=torch.as_tensor(ds.labels).long(),
                        question=np.asarray([m["question_index"] for m in ds.meta]),
                        source={"store": str(out), "dataset": ds.name, "content_hash": ds.content_hash,
                                "limit": limit, "model": lm.name, "model_fingerprint": lm.fingerprint})


def fold_rows(data: ResidualData, train_questions: Sequence[int], layers: Sequence[int] | None, seed: int = 0,
              fold: int | None = None) -> tuple[np.ndarray, list[int], dict]:
    """(indices of the rows of `train_questions` in `data`, the resolved layers, the fit's provenance): what every
    steer fitted on one fold starts from (caa, lat, and the layerwise steers' `training_rows`). layers None = the
    middle layer; negatives count from the end."""
    n_layers = data.X.shape[1]
    layers = [n_layers // 2] if layers is None else [int(l) + n_layers if int(l) < 0 else int(l) for l in layers]
    bad = [l for l in layers if not 0 <= l < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range for a {n_layers}-layer model")
    rows = np.flatnonzero(np.isin(data.question, np.asarray(list(train_questions))))
    if len(rows) == 0:
        raise ValueError("no rows for the training questions")
    prov = {**data.source, "train_questions": sorted(int(q) for q in set(data.question[rows].tolist())),
            "seed": int(seed)}
    if fold is not None:
        prov["fold"] = int(fold)
    return rows, layers, prov


def fit_residual(data: ResidualData, train_questions: Sequence[int], method: str, layers: Sequence[int] | None = None,
                 alpha: float = 1.0, normalize: str = "raw", seed: int = 0, fold: int | None = None) -> ResidualSteer:
    """A `method` ("caa" | "lat") steer fitted on the rows of `train_questions` only."""
    if method not in RESIDUAL_METHODS:
        raise ValueError(f"residual method must be one of {', '.join(RESIDUAL_METHODS)}, got {method!r}")
    rows, layers, prov = fold_rows(data, train_questions, layers, seed, fold)
    X = data.X[torch.as_tensor(rows)][:, layers].float()  # [n, len(layers), D]
    y = data.labels[torch.as_tensor(rows)]
    if method == "caa":
        return fit_diff_means(X, y, normalize=normalize, act_layers=layers, alpha=alpha, provenance=prov,
                              groups=data.question[rows].tolist(), seed=seed)
    pos, neg = pair_by_group(y, data.question[rows].tolist(), seed=seed)
    return fit_lat(X[pos], X[neg], seed=seed, normalize=normalize, act_layers=layers, alpha=alpha, provenance=prov)


def fit_residual_for_fold(lm, train_questions: Sequence[int], method: str, layers: Sequence[int] | None = None,
                          alpha: float = 1.0, normalize: str = "raw", seed: int = 0, data_dir=None,
                          limit: int | None = None, acts: str | Path | None = None, fold: int = 0,
                          revision: str = "2021") -> ResidualSteer:
    """`fit_residual` on this model's (cached) resid activations of the ITI rows of `revision`."""
    data = load_residual_data(lm, data_dir=data_dir, limit=limit, acts=acts, dataset=default_dataset(revision))
    return fit_residual(data, train_questions, method, layers, alpha, normalize, seed, fold)
