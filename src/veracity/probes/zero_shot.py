"""Zero-shot baseline for contrast pairs: the model's own preference between x+ and x-.

For a pair that differs only in its answer ("... Answer: Yes" / "... Answer: No") this is
log P(" Yes" | stem) - log P(" No" | stem). Pairs whose answers span several tokens are scored by the
summed log-probability of each answer's tokens after the shared prefix. No training, no labels: the
number CCS has to beat to show it found something the model's outputs do not already say.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..models import LoadedModel
from ..models.adapter import ModelAdapter


def _ids(tok, text: str) -> list[int]:
    return list(tok(text)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


@torch.inference_mode()
def contrast_scores(lm: LoadedModel, x_plus: Sequence[str], x_minus: Sequence[str], batch_size: int = 8) -> torch.Tensor:
    """log P(x+ answer) - log P(x- answer) per pair, [N]; > 0 means the model prefers the "Yes" side."""
    if len(x_plus) != len(x_minus):
        raise ValueError("x_plus and x_minus differ in length")
    tok = lm.tokenizer
    P = [_ids(tok, t) for t in x_plus]
    Q = [_ids(tok, t) for t in x_minus]
    ks = [_common_prefix(a, b) for a, b in zip(P, Q)]
    if any(k == 0 for k in ks):
        raise ValueError("a contrast pair shares no prefix tokens; cannot score it zero-shot")
    single = all(len(a) - k == 1 and len(b) - k == 1 for a, b, k in zip(P, Q, ks))
    scores = torch.empty(len(P))
    if single:  # one forward of the shared stem; compare the two next-token log-probs
        lps = ModelAdapter(lm.model, tok).position_logprobs([a[:k] for a, k in zip(P, ks)], ks, batch_size=batch_size)
        for i, (a, b, k) in enumerate(zip(P, Q, ks)):
            scores[i] = lps[i][-1, a[k]] - lps[i][-1, b[k]]
        return scores
    lps = ModelAdapter(lm.model, tok).position_logprobs(P + Q, ks + ks, batch_size=batch_size)
    n = len(P)
    for i, (a, b, k) in enumerate(zip(P, Q, ks)):
        # lps[i][r] is the distribution at position k - 1 + r, i.e. of token k + r
        la = sum(float(lps[i][t - k, a[t]]) for t in range(k, len(a)))
        lb = sum(float(lps[n + i][t - k, b[t]]) for t in range(k, len(b)))
        scores[i] = la - lb
    return scores


def zero_shot_accuracy(scores: torch.Tensor, labels: Sequence[int]) -> dict[str, float]:
    """Accuracy of "prefer the Yes side" against labels (1 = yes is true), and the calibrated variant
    of Burns et al. (threshold at the median score, so a model that always says "Yes" is not rewarded
    or punished for the class balance)."""
    y = torch.as_tensor(list(labels)).long()
    raw = float(((scores > 0).long() == y).double().mean())
    calibrated = float(((scores > scores.median()).long() == y).double().mean())
    return {"accuracy": raw, "accuracy_calibrated": calibrated}
