"""CCS: the three defects of the first public release are absent, and a planted direction is found."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from veracity.probes import CCSProbe, ccs_loss


def _pairs(n=500, g=2, d=40, seed=0, signal=2.0, single=False):
    gen = torch.Generator().manual_seed(seed)
    direction = F.normalize(torch.randn(d, generator=gen), dim=0)
    truth = torch.randint(0, 2, (n,), generator=gen)
    s = (truth * 2 - 1).double()[:, None, None]
    base = torch.randn(n, g, d, generator=gen, dtype=torch.float64)
    if single:
        base = base[:, 0]
        s = s[:, 0]
    X_pos = base + signal * s * direction.double() + 3.0  # each side has its own offset (the "Yes"/"No" token)
    X_neg = base - signal * s * direction.double() - 1.0
    return X_pos, X_neg, truth, direction.double()


def test_planted_direction_is_recovered():
    X_pos, X_neg, y, d = _pairs(n=1000, d=20)
    probe = CCSProbe(n_restarts=4, epochs=300, lr=1e-2, seed=0).fit(X_pos[:700], X_neg[:700], y[:700])
    cos = (probe.direction_ @ d).abs()
    assert bool((cos > 0.9).all()), cos
    assert bool((probe.score(X_pos[700:], X_neg[700:], y[700:]) > 0.95).all())


def test_normalisation_uses_training_rows_only():
    X_pos, X_neg, y, _ = _pairs(single=True)
    tr = slice(0, 300)
    probe = CCSProbe(n_restarts=2, epochs=50, lr=1e-2).fit(X_pos[tr], X_neg[tr])
    torch.testing.assert_close(probe.mean_pos_, X_pos[tr].mean(0))
    torch.testing.assert_close(probe.mean_neg_, X_neg[tr].mean(0))
    torch.testing.assert_close(probe.scale_pos_, X_pos[tr].std(0, unbiased=False))
    # shifting the test rows wildly must not change the statistics or the predictions on the train rows
    before = probe.predict_proba(X_pos[tr], X_neg[tr]).clone()
    stats = (probe.mean_pos_.clone(), probe.scale_neg_.clone())
    shifted = probe.predict_proba(X_pos[300:] * 50 + 100, X_neg[300:] - 70)
    assert shifted.shape == (200,)
    torch.testing.assert_close(probe.predict_proba(X_pos[tr], X_neg[tr]), before)
    torch.testing.assert_close(probe.mean_pos_, stats[0])
    torch.testing.assert_close(probe.scale_neg_, stats[1])
    # a test row's prediction depends only on that row: predicting it alone or among others agrees
    torch.testing.assert_close(probe.predict_proba(X_pos[300:301], X_neg[300:301]), probe.predict_proba(X_pos[300:], X_neg[300:])[:1])


def test_sigmoid_applied_and_loss_matches_hand_computation():
    X_pos, X_neg, y, _ = _pairs(n=50, d=5, single=True)
    probe = CCSProbe(n_restarts=1, epochs=5).fit(X_pos, X_neg)
    p = probe.predict_proba(X_pos, X_neg)
    assert bool(((p >= 0) & (p <= 1)).all())
    # hand computation from the stored parameters
    w, b = probe.coef_, probe.intercept_
    zp = ((X_pos - probe.mean_pos_) / probe.scale_pos_) @ w + b
    zn = ((X_neg - probe.mean_neg_) / probe.scale_neg_) @ w + b
    pp = [1 / (1 + float(torch.exp(-v))) for v in zp]
    pn = [1 / (1 + float(torch.exp(-v))) for v in zn]
    hand = sum((a - (1 - c)) ** 2 + min(a, c) ** 2 for a, c in zip(pp, pn)) / len(pp)
    assert abs(float(probe.unsupervised_loss(X_pos, X_neg)) - hand) < 1e-9
    assert abs(float(probe.loss_) - hand) < 1e-9
    pred = [0.5 * (a + 1 - c) for a, c in zip(pp, pn)]
    torch.testing.assert_close(p, torch.tensor(pred, dtype=p.dtype))
    # the loss function itself, on probabilities
    assert abs(float(ccs_loss(torch.tensor([0.9, 0.2]), torch.tensor([0.3, 0.6]))) - ((0.2 ** 2 + 0.3 ** 2) + (0.2 ** 2 + 0.2 ** 2)) / 2) < 1e-7


def test_every_minibatch_trains():
    """With minibatches, rows of the first batch must influence the result (the first release only stepped
    on the last minibatch, so changing earlier rows changed nothing)."""
    X_pos, X_neg, y, _ = _pairs(n=200, d=8, single=True)
    kw = dict(n_restarts=1, epochs=1, lr=1e-2, batch_size=50, seed=0)
    base = CCSProbe(**kw).fit(X_pos, X_neg)
    # permutation of epoch 0 with this seed: find which rows land in the first minibatch and the last
    gen = torch.Generator().manual_seed(0)
    torch.rand(1, 8, generator=gen, dtype=torch.float64)  # weight init draws
    torch.rand(1, 1, 1, generator=gen, dtype=torch.float64)
    perm = torch.randperm(200, generator=gen)
    for rows in (perm[:50], perm[50:100], perm[150:]):
        P2, N2 = X_pos.clone(), X_neg.clone()
        P2[rows] = P2[rows].flip(-1)  # same marginal mean/scale per batch is not needed: stats change too
        changed = CCSProbe(**kw).fit(P2, N2)
        assert not torch.allclose(changed.coef_, base.coef_)
    # and the count of optimiser steps is one per minibatch: 4 batches -> 4 Adam steps
    probe = CCSProbe(**kw)
    steps = []
    orig = torch.optim.AdamW.step

    def counting_step(self, *a, **k):
        steps.append(1)
        return orig(self, *a, **k)

    torch.optim.AdamW.step = counting_step
    try:
        probe.fit(X_pos, X_neg)
    finally:
        torch.optim.AdamW.step = orig
    assert len(steps) == 4


def test_restarts_batched_keep_lowest_loss_and_sign_fix():
    X_pos, X_neg, y, _ = _pairs(n=300, g=3, d=10, signal=0.7)
    probe = CCSProbe(n_restarts=5, epochs=100, lr=1e-2, seed=1).fit(X_pos, X_neg, y)
    assert probe.restart_losses_.shape == (5, 3)
    torch.testing.assert_close(probe.loss_.float(), probe.restart_losses_.min(0).values.float())
    acc = probe.score(X_pos, X_neg, y)
    either = probe.score_either_sign(X_pos, X_neg, y)
    assert bool((acc >= 0.5).all()) and bool((either >= acc - 1e-12).all())
    again = CCSProbe(n_restarts=5, epochs=100, lr=1e-2, seed=1).fit(X_pos, X_neg, y)
    torch.testing.assert_close(again.coef_, probe.coef_)
