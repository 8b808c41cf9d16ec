"""One contract for every registered probe (as scikit-learn's estimator checks): built by name from the
registry, get_params / set_params round trip, fit returns self, batched [N, G, D] and single [N, D]
layouts, predict_proba = sigmoid(decision_function) in [0, 1], predict = (decision > 0), score = the
accuracy computed by hand, a unit `direction_`, learning a planted direction (every method but `random`,
which must stay near chance), determinism where declared, and polarity where needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veracity.probes import PROBES, make_probe, register_probe
from veracity.probes.registry import probe_spec


def planted(n=240, g=3, d=12, seed=0):
    """Labels from a planted unit direction u (per group), separable with a margin; polarity +1/-1 rows
    where the negated rows flip the sign of the truth feature (as negation does)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(g, d, generator=gen), dim=-1)
    y = torch.arange(n) % 2
    pol = torch.where(torch.arange(n) % 4 < 2, 1, -1)
    X = torch.randn(n, g, d, generator=gen) * 0.5
    X += ((2 * y - 1) * 2.0)[:, None, None] * u[None]
    return X, y, pol, u


def fit(method, X, y, pol, seed=0):
    p = make_probe(method, seed=seed)
    kw = {"polarity": pol} if probe_spec(method).needs_polarity else {}
    return p, p.fit(X, y, **kw)


@pytest.mark.parametrize("method", sorted(PROBES))
def test_probe_contract(method):
    X, y, pol, u = planted()
    # affirmative rows only for the planted direction (negated rows flip it); TTPD sees both polarities
    keep = torch.ones(len(y), dtype=torch.bool) if probe_spec(method).needs_polarity else pol == 1
    X, y, pol = X[keep], y[keep], pol[keep]
    p, ret = fit(method, X, y, pol)
    assert ret is p
    params = p.get_params()
    assert isinstance(params, dict) and p.set_params(**params) is p
    with pytest.raises(ValueError):
        p.set_params(no_such_parameter=1)
    z = p.decision_function(X)
    assert z.shape == (len(y), X.shape[1])
    proba = p.predict_proba(X)
    assert torch.allclose(proba, torch.sigmoid(z)) and float(proba.min()) >= 0 and float(proba.max()) <= 1
    pred = p.predict(X)
    assert torch.equal(pred, (z > 0).long())
    by_hand = (pred == y[:, None]).double().mean(0)
    assert torch.allclose(torch.as_tensor(p.score(X, y)).double(), by_hand)
    d = p.direction_
    assert d.shape == (X.shape[1], X.shape[2]) and torch.allclose(d.norm(dim=-1), torch.ones(X.shape[1]), atol=1e-5)
    cos = (torch.nn.functional.normalize(d.double(), dim=-1) * u.double()).sum(-1).abs()
    if method == "random":  # untrained: seeded, and a new seed gives a new direction
        assert torch.equal(fit(method, X, y, pol, seed=0)[0].direction_, d)
        assert not torch.allclose(fit(method, X, y, pol, seed=1)[0].direction_, d)
    else:
        # (the MLPs train 5 epochs by default: well above chance, not separable-perfect)
        assert float(by_hand.min()) > (0.75 if method.startswith("mlp-") else 0.95), by_hand
        if not method.startswith("mlp-"):  # an MLP's direction_ is its mean input gradient, not a fitted plane
            assert float(cos.min()) > 0.8, cos
    # single layout: [N, D] in, [N] out, the same numbers as group 0 of the batched fit for deterministic ones
    p1, _ = fit(method, X[:, 0], y, pol)
    assert p1.decision_function(X[:, 0]).shape == (len(y),) and isinstance(p1.score(X[:, 0], y), float)
    if probe_spec(method).deterministic:
        p2, _ = fit(method, X, y, pol)
        assert torch.allclose(p2.decision_function(X), z)
        assert torch.allclose(p1.decision_function(X[:, 0]), z[:, 0], atol=1e-4)


@pytest.mark.parametrize("method", [m for m in sorted(PROBES) if probe_spec(m).needs_polarity])
def test_polarity_probes_refuse_a_fit_without_polarity(method):
    X, y, _, _ = planted()
    with pytest.raises((ValueError, TypeError)):
        make_probe(method).fit(X, y)


def test_registry_one_line_and_refuses_to_shadow():
    from veracity.probes import MassMeanProbe

    register_probe("test-mass-mean-x", lambda seed=0, C=1.0, **_: MassMeanProbe(), deterministic=True)
    try:
        assert isinstance(make_probe("test-mass-mean-x"), MassMeanProbe)
        with pytest.raises(ValueError, match="already registered"):
            register_probe("test-mass-mean-x", lambda **_: None)
    finally:
        PROBES.pop("test-mass-mean-x")
    with pytest.raises(ValueError, match="unknown probe method"):
        make_probe("nope")
    assert np.all([s.name == n for n, s in PROBES.items()])


def planted_pairs(n=200, g=2, d=10, seed=0):
    """Contrast pairs whose difference carries the truth along a planted u: x+ - x- = +/-2u (+ noise)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(g, d, generator=gen), dim=-1)
    y = torch.arange(n) % 2
    base = torch.randn(n, g, d, generator=gen)
    s = ((2 * y - 1) * 1.0)[:, None, None] * u[None]
    return base + s + 0.1 * torch.randn(n, g, d, generator=gen), base - s, y, u


@pytest.mark.parametrize("cls", ["CCSProbe"])
def test_paired_probe_contract(cls):
    """Probes on contrast pairs share `PairedProbe`'s contract: the same params / repr as every probe,
    predict_proba in [0, 1] with decision_function its logit, predict = proba > 0.5, score = accuracy by hand,
    a unit direction_ that finds the planted one, and the single layout."""
    import veracity.probes.ccs as ccs
    from veracity.probes.base import PairedProbe

    P, Q, y, u = planted_pairs()
    p = getattr(ccs, cls)(n_restarts=3, epochs=200, lr=1e-2, seed=0)
    assert isinstance(p, PairedProbe) and repr(p).startswith(f"{cls}(n_restarts=3, epochs=200")
    with pytest.raises(RuntimeError, match="not fitted"):
        p.predict(P, Q)
    assert p.fit(P, Q, y) is p and p.set_params(**p.get_params()) is p
    with pytest.raises(ValueError):
        p.set_params(no_such_parameter=1)
    proba = p.predict_proba(P, Q)
    assert proba.shape == (len(y), 2) and float(proba.min()) >= 0 and float(proba.max()) <= 1
    assert torch.allclose(torch.sigmoid(p.decision_function(P, Q)), proba.double(), atol=1e-6)
    pred = p.predict(P, Q)
    assert torch.equal(pred, (proba > 0.5).long())
    by_hand = (pred == y[:, None]).double().mean(0)
    assert torch.allclose(p.score(P, Q, y).double(), by_hand) and float(by_hand.min()) > 0.95
    d = p.direction_
    assert torch.allclose(d.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert float((d.double() * u.double()).sum(-1).abs().min()) > 0.8
    p1 = getattr(ccs, cls)(n_restarts=3, epochs=200, lr=1e-2, seed=0).fit(P[:, 0], Q[:, 0], y)
    assert p1.predict_proba(P[:, 0], Q[:, 0]).shape == (len(y),) and isinstance(p1.score(P[:, 0], Q[:, 0], y), float)
