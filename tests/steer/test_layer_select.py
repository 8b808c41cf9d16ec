"""COSMIC-style layer selection (`veracity.steer.layer_select`): the per-layer score equals a hand computation
from unpadded forwards of tiny-llama (`output_hidden_states`, the steer added by a hand-written hook), M is the
layers whose class means are least alike, and the comparison with another (the sweep's) choice ranks it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from veracity.steer import ResidualSteer
from veracity.steer.layer_select import cosmic_scores

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["Q: Is the sky blue?\nA: Yes, on a clear day.", "Q: Can pigs fly?\nA: No.", "Q: What is 2 + 2?\nA: Four.",
         "Q: Is the sky blue?\nA: No, it is green.", "Q: Can pigs fly?\nA: Yes, every spring.",
         "Q: What is 2 + 2?\nA: Five, always."]
LABELS = [1, 1, 1, 0, 0, 0]


def _hand_last(lm, text: str, m: int, add: tuple[int, torch.Tensor] | None) -> np.ndarray:
    """Layer m's output at the last token of one unpadded text: hidden_states[m + 1], with `add` = (l, shift)
    added to layer l's output by a hook (for m == l hidden_states shows the layer before the hook: add it here)."""
    handle = None
    if add is not None:
        l, shift = add
        handle = lm.arch.layer(lm.model, l).register_forward_hook(
            lambda mod, a, o: (o[0] + shift, *o[1:]) if isinstance(o, tuple) else o + shift)
    try:
        with torch.no_grad():
            hs = lm.model(input_ids=torch.tensor([lm.tokenizer(text)["input_ids"]]), output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    h = hs.hidden_states[m + 1][0, -1].double().numpy()
    if add is not None and add[0] == m:
        h = h + add[1].double().numpy()
    return h


def _cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_scores_equal_a_hand_computation(tiny_llama):
    lm = tiny_llama
    g = torch.Generator().manual_seed(0)
    steer = ResidualSteer([0, 1, 2], torch.randn(3, lm.arch.hidden_size, generator=g), alpha=2.0)
    M = [2]  # hidden_states[3]: the last layer's own entry may follow the final norm, so it is not used here
    res = cosmic_scores(lm, TEXTS, LABELS, steer, eval_layers=M, batch_size=4)  # batches of 4: padding in play
    true_t = [t for t, y in zip(TEXTS, LABELS) if y]
    false_t = [t for t, y in zip(TEXTS, LABELS) if not y]
    mu_t = {m: np.mean([_hand_last(lm, t, m, None) for t in true_t], 0) for m in M}
    mu_f = {m: np.mean([_hand_last(lm, t, m, None) for t in false_t], 0) for m in M}
    for l, v in zip(steer.layers, steer.vectors):
        a = np.mean([_cos(np.mean([_hand_last(lm, t, m, (l, 2.0 * v)) for t in false_t], 0), mu_t[m]) for m in M])
        b = np.mean([_cos(np.mean([_hand_last(lm, t, m, (l, -2.0 * v)) for t in true_t], 0), mu_f[m]) for m in M])
        assert res.scores[l] == pytest.approx((a + b) / 2, abs=1e-6)
    assert res.baseline == pytest.approx(np.mean([_cos(mu_f[m], mu_t[m]) for m in M]), abs=1e-6)
    assert res.layer == max(res.scores, key=res.scores.get) and res.eval_layers == M
    assert res.rank(res.layer) == 1
    other = next(l for l in res.scores if l != res.layer)
    cmp = res.compare(other)
    assert cmp["agree"] is False and cmp["sweep_rank"] == res.rank(other) > 1 and cmp["n_candidates"] == 3
    for m in range(lm.arch.n_layers - 1):  # the class-mean cosines of every layer (those hidden_states can show)
        want = _cos(np.mean([_hand_last(lm, t, m, None) for t in true_t], 0),
                    np.mean([_hand_last(lm, t, m, None) for t in false_t], 0))
        assert res.mean_cosines[m] == pytest.approx(want, abs=1e-6)


def test_eval_layers_are_the_least_alike_class_means(tiny_llama):
    lm = tiny_llama
    steer = ResidualSteer([0, 1], torch.randn(2, lm.arch.hidden_size, generator=torch.Generator().manual_seed(1)))
    res = cosmic_scores(lm, TEXTS, LABELS, steer, frac=0.5)
    k = math.ceil(0.5 * lm.arch.n_layers)
    assert res.eval_layers == sorted(sorted(res.mean_cosines, key=res.mean_cosines.get)[:k])
    # a candidate after every layer of M cannot move them: it scores the baseline exactly
    late = ResidualSteer([lm.arch.n_layers - 1], steer.vectors[:1])
    r2 = cosmic_scores(lm, TEXTS, LABELS, late, eval_layers=[1])
    assert r2.scores[lm.arch.n_layers - 1] == pytest.approx(r2.baseline, abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        cosmic_scores(lm, TEXTS[:3], LABELS[:3], steer)
