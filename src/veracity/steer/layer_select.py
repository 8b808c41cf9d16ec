"""Choosing a residual steer's layer without generating (COSMIC-style, Siu et al. 2025): steer the rows of one
class and ask how much their activations at later layers come to look like the other class's.

The score, exactly. Rows: texts of the true class T and the false class F; h_m(x) is decoder layer m's output at
the last real token of x; mu_T,m and mu_F,m the plain class means. Evaluation layers M: COSMIC's L_low, the
ceil(frac * n_layers) layers (at least one) whose plain class means are least alike, lowest cos(mu_T,m, mu_F,m).
For a candidate layer l with vector v_l (alpha * v_l added at layer l, every position):

    S(l) = 1/2 [ mean_{m in M} cos( mean_{x in F} h_m(x; +alpha v_l), mu_T,m )
               + mean_{m in M} cos( mean_{x in T} h_m(x; -alpha v_l), mu_F,m ) ]

(steering the false rows towards truth should make them look true, steering the true rows away should make
them look false: COSMIC's refusal and compliance terms). The chosen layer maximises S. `baseline` is the same
score with nothing added, the same for every l: a candidate whose layer lies after all of M scores exactly it.
Works on any steer fitted at several layers with `select` (caa, lat, ace, angular), or one fitted per candidate
(`cosmic_select`: bipo); `methods.steers` offers it as every residual family's ``layer_select`` option.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .residual.vectors import ResidualSteer


@dataclass(frozen=True)
class LayerScores:
    """scores: {candidate layer: S(l)}; layer: the argmax (the lowest layer on a tie); eval_layers: M;
    baseline: S with no steer; mean_cosines: {m: cos(mu_T,m, mu_F,m)} of every layer (what picked M)."""

    scores: dict
    layer: int
    eval_layers: list
    baseline: float
    mean_cosines: dict

    def rank(self, layer: int) -> int | None:
        """1-based rank of `layer` by score (1 = the chosen one): how another choice (the sweep's) fares here;
        None where `layer` was not a candidate."""
        if int(layer) not in self.scores:
            return None
        order = sorted(self.scores, key=lambda l: (-self.scores[l], l))
        return order.index(int(layer)) + 1

    def to_json(self) -> dict:
        """The scores as plain JSON (layer keys as strings): what a fit's provenance records."""
        return {"method": "cosmic", "layer": int(self.layer), "scores": {str(l): float(v) for l, v in self.scores.items()},
                "eval_layers": [int(m) for m in self.eval_layers], "baseline": float(self.baseline),
                "mean_cosines": {str(m): float(v) for m, v in self.mean_cosines.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "LayerScores":
        """Read `to_json`'s payload back (a fit's provenance["layer_select"])."""
        return cls({int(l): float(v) for l, v in d["scores"].items()}, int(d["layer"]), list(d["eval_layers"]),
                   float(d["baseline"]), {int(m): float(v) for m, v in d.get("mean_cosines", {}).items()})

    def compare(self, sweep_layer: int) -> dict:
        """This choice beside the sweep's: both layers, whether they agree, and the sweep layer's rank here."""
        return {"cosmic_layer": self.layer, "sweep_layer": int(sweep_layer), "agree": self.layer == int(sweep_layer),
                "sweep_rank": self.rank(sweep_layer), "n_candidates": len(self.scores)}


@torch.no_grad()
def last_token_outputs(lm, texts: Sequence[str], layers: Sequence[int], steer: ResidualSteer | None = None,
                       batch_size: int = 16) -> dict[int, torch.Tensor]:
    """{m: [N, D] float64} decoder layer m's output at each text's last token, with `steer` hooked (every
    position). The capture hooks are registered after the steer's, so a steered layer's own output is seen
    shifted."""
    from ..models.padding import pad_token_id

    model, arch = lm.model, lm.arch
    dev = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {m: [] for m in layers}
    tok = lm.tokenizer
    pad = pad_token_id(tok)
    for s in range(0, len(texts), batch_size):
        enc = [list(tok(t)["input_ids"]) for t in texts[s:s + batch_size]]
        n = max(len(e) for e in enc)
        ids = torch.full((len(enc), n), pad, dtype=torch.long)
        mask = torch.zeros((len(enc), n), dtype=torch.long)
        for i, e in enumerate(enc):  # right padding: the last real token is at len - 1
            ids[i, :len(e)] = torch.tensor(e)
            mask[i, :len(e)] = 1
        last = torch.tensor([len(e) - 1 for e in enc])
        got: dict[int, torch.Tensor] = {}

        def hook_for(m):
            def hook(module, args, o):
                got[m] = (o[0] if isinstance(o, tuple) else o).detach()
            return hook

        with contextlib.ExitStack() as stack:
            if steer is not None:
                stack.enter_context(steer.apply(lm, positions="all"))
            handles = [arch.layer(model, m).register_forward_hook(hook_for(m)) for m in layers]
            stack.callback(lambda: [h.remove() for h in handles])
            model(input_ids=ids.to(dev), attention_mask=mask.to(dev))
        for m in layers:
            out[m].append(got[m][torch.arange(len(enc)), last.to(got[m].device)].double().cpu())
    return {m: torch.cat(v) for m, v in out.items()}


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def cosmic_scores(lm, texts: Sequence[str], labels: Sequence[int], steer,
                  candidates: Sequence[int] | None = None, eval_layers: Sequence[int] | None = None,
                  frac: float = 0.1, batch_size: int = 16, opposite: Callable | None = None) -> LayerScores:
    """S(l) for each candidate layer of `steer` (default: every layer it was fitted at) on these rows (labels
    1 = true, 0 = false), at the steer's own alpha; `eval_layers` overrides M (default: COSMIC's L_low with `frac`).
    `steer` is any steer with `layers` and `select` (caa, lat, ace, angular); `opposite(one)`: the steer that
    pushes towards false (default: the same steer at -alpha)."""
    steer.check_model(lm.arch)
    cands = list(steer.layers) if candidates is None else [int(l) for l in candidates]
    return cosmic_select(lm, texts, labels, cands, lambda l: steer.select([l]), eval_layers, frac, batch_size,
                         opposite)


def cosmic_select(lm, texts: Sequence[str], labels: Sequence[int], candidates: Sequence[int],
                  steer_at: Callable[[int], object], eval_layers: Sequence[int] | None = None, frac: float = 0.1,
                  batch_size: int = 16, opposite: Callable | None = None) -> LayerScores:
    """`cosmic_scores` with the one-layer steer of each candidate given by `steer_at(layer)` (called once per
    candidate): how a family that fits one layer at a time (bipo) is scored. The plain passes run once."""
    y = [int(v) for v in labels]
    if len(y) != len(texts):
        raise ValueError(f"{len(y)} labels for {len(texts)} texts")
    if set(y) != {0, 1}:
        raise ValueError("both classes (labels 1 and 0) are needed")
    if not 0 < frac <= 1:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    cands = [int(l) for l in candidates]
    if not cands:
        raise ValueError("no candidate layers")
    opposite = opposite or (lambda one: one.with_alpha(-one.alpha))
    n_layers = lm.arch.n_layers
    true_t = [t for t, v in zip(texts, y) if v == 1]
    false_t = [t for t, v in zip(texts, y) if v == 0]
    plain_t = last_token_outputs(lm, true_t, range(n_layers), batch_size=batch_size)
    plain_f = last_token_outputs(lm, false_t, range(n_layers), batch_size=batch_size)
    mu_t = {m: x.mean(0) for m, x in plain_t.items()}
    mu_f = {m: x.mean(0) for m, x in plain_f.items()}
    mean_cos = {m: _cos(mu_t[m], mu_f[m]) for m in range(n_layers)}
    if eval_layers is None:
        k = max(1, math.ceil(frac * n_layers))
        M = sorted(sorted(range(n_layers), key=lambda m: (mean_cos[m], m))[:k])
    else:
        M = sorted(int(m) for m in eval_layers)

    def score(h_f: dict, h_t: dict) -> float:
        a = sum(_cos(h_f[m].mean(0), mu_t[m]) for m in M) / len(M)
        b = sum(_cos(h_t[m].mean(0), mu_f[m]) for m in M) / len(M)
        return (a + b) / 2

    baseline = score(plain_f, plain_t)
    scores = {}
    for l in cands:
        one = steer_at(l)
        h_f = last_token_outputs(lm, false_t, M, one, batch_size)
        h_t = last_token_outputs(lm, true_t, M, opposite(one), batch_size)
        scores[l] = score(h_f, h_t)
    best = max(cands, key=lambda l: (scores[l], -l))
    return LayerScores(scores, best, M, baseline, mean_cos)


def default_candidates(n_layers: int) -> list[int]:
    """Every third layer of the middle half (the steer sweep's default layers): COSMIC's candidates when a fit
    names none."""
    return list(range(n_layers // 4, 3 * n_layers // 4, 3)) or [n_layers // 2]


def training_texts(data_dir, revision: str, limit: int | None, train_questions: Sequence[int]
                   ) -> tuple[list[str], list[int]]:
    """(texts, labels) of the training questions' rows of the residual steers' data set (the rows caa fits
    on, `residual_tqa.default_dataset`): what COSMIC scores a fit's layers on, never a held-out question."""
    from ..data import get_dataset
    from ..data.registry import first_questions
    from .residual_tqa import default_dataset

    ds = first_questions(get_dataset(default_dataset(revision), data_dir=data_dir), limit)
    keep = {int(q) for q in train_questions}
    rows = [i for i, m in enumerate(ds.meta) if int(m["question_index"]) in keep]
    return [ds.texts[i] for i in rows], [int(ds.labels[i]) for i in rows]
