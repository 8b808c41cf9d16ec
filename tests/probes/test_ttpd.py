"""TTPD on planted data: recovers t_G and t_P, and classifies negated statements where a probe trained on
affirmative statements fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veracity.probes import LogisticProbe, TTPDProbe, make_probe


def planted(n_per_cell=100, d=2, t_g=None, t_p=None, topics=3, noise=0.3, seed=0, mu_scale=3.0, mu_orth=False):
    """a = mu_topic + pol_offset * p + tau t_G + tau p t_P + noise, balanced over (topic, polarity, truth).
    mu_orth: topic offsets orthogonal to t_G, t_P and the polarity offset (truth is "universal": a new
    topic moves neither the truth nor the polarity projection)."""
    rng = np.random.default_rng(seed)
    t_g = np.asarray(t_g if t_g is not None else rng.normal(size=d))
    t_p = np.asarray(t_p if t_p is not None else rng.normal(size=d))
    pol_dir = np.random.default_rng(1234).normal(size=d)  # a property of the model: the same for every draw
    X, y, pol, top = [], [], [], []
    for k in range(topics):
        mu = rng.normal(size=d) * mu_scale
        if mu_orth:
            q, _ = np.linalg.qr(np.stack([t_g, t_p, pol_dir], 1))
            mu = mu - q @ (q.T @ mu)
        for p in (1, -1):
            for tau in (1, -1):
                X.append(mu + 2.0 * p * pol_dir + tau * t_g + tau * p * t_p + noise * rng.normal(size=(n_per_cell, d)))
                y += [int(tau > 0)] * n_per_cell
                pol += [p] * n_per_cell
                top += [f"topic{k}"] * n_per_cell
    return np.concatenate(X), np.array(y), np.array(pol), np.array(top), t_g, t_p


def cos(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_recovers_both_directions_on_planted_2d_data():
    X, y, pol, top, t_g, t_p = planted(d=2, t_g=[1.0, 0.2], t_p=[-0.3, 1.2])
    probe = TTPDProbe().fit(torch.tensor(X), y, polarity=pol, topics=top)
    assert cos(probe.t_g_, t_g) > 0.95 and cos(probe.t_p_, t_p) > 0.95
    # OLS on the planted model is unbiased: the magnitudes come back too
    np.testing.assert_allclose(probe.t_g_.numpy(), t_g, atol=0.05)
    np.testing.assert_allclose(probe.t_p_.numpy(), t_p, atol=0.05)
    assert abs(float(probe.direction_.norm()) - 1) < 1e-9
    # (classification is tested in 16-D below: in 2-D the polarity offset makes the classes an XOR that no
    # linear classifier of [x . t_G, x . p] -- i.e. of x -- can separate)


def test_ols_matches_numpy_lstsq_on_centred_data():
    X, y, pol, top, _, _ = planted(d=5, seed=3, n_per_cell=30)
    probe = TTPDProbe().fit(torch.tensor(X), y, polarity=pol, topics=top)
    Xc = X.copy()
    for k in np.unique(top):
        for p in (1, -1):
            m = (top == k) & (pol == p)
            Xc[m] -= X[m].mean(0)
    tau = 2 * y - 1
    sol, *_ = np.linalg.lstsq(np.stack([tau, tau * pol], 1).astype(float), Xc, rcond=None)
    np.testing.assert_allclose(probe.t_g_.numpy(), sol[0], atol=1e-10)
    np.testing.assert_allclose(probe.t_p_.numpy(), sol[1], atol=1e-10)


def test_classifies_negated_where_affirmative_trained_logistic_fails():
    # |t_P| > |t_G|, orthogonal: affirmative true - false = 2 (t_G + t_P), negated = 2 (t_G - t_P), and
    # (t_G + t_P) . (t_G - t_P) < 0, so a probe trained on affirmative statements inverts on negated ones
    d = 16
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    t_g, t_p = 1.0 * q[:, 0], 2.0 * q[:, 1]
    Xtr, ytr, ptr, ttr, _, _ = planted(d=d, t_g=t_g, t_p=t_p, seed=1, noise=0.3, mu_orth=True)
    Xte, yte, pte, tte, _, _ = planted(d=d, t_g=t_g, t_p=t_p, seed=2, noise=0.3, topics=2, mu_orth=True)  # new topics
    neg = pte == -1
    ttpd = TTPDProbe().fit(torch.tensor(Xtr, dtype=torch.float32), ytr, polarity=ptr, topics=ttr)
    aff = ptr == 1
    lr = LogisticProbe().fit(torch.tensor(Xtr[aff], dtype=torch.float32), ytr[aff])
    acc_ttpd = ttpd.score(torch.tensor(Xte[neg], dtype=torch.float32), yte[neg])
    acc_lr = lr.score(torch.tensor(Xte[neg], dtype=torch.float32), yte[neg])
    assert acc_ttpd > 0.9 and acc_lr < 0.5, (acc_ttpd, acc_lr)
    assert cos(ttpd.direction_, t_g) > 0.95


def test_batched_groups_equal_separate_fits():
    X, y, pol, top, _, _ = planted(d=6, seed=4, n_per_cell=40)
    X2 = np.stack([X, X[:, ::-1] * 2.0], 1)
    batched = TTPDProbe().fit(torch.tensor(X2), y, polarity=pol, topics=top)
    assert batched.t_g_.shape == (2, 6) and batched.predict_proba(torch.tensor(X2)).shape == (len(y), 2)
    for g in range(2):
        single = TTPDProbe().fit(torch.tensor(X2[:, g].copy()), y, polarity=pol, topics=top)
        torch.testing.assert_close(batched.t_g_[g], single.t_g_)
        torch.testing.assert_close(batched.coef_[g], single.coef_, atol=1e-6, rtol=1e-5)


def test_estimator_contract_and_errors():
    X, y, pol, top, _, _ = planted(d=3, n_per_cell=20)
    p = make_probe("ttpd")
    assert isinstance(p, TTPDProbe) and p.get_params() == {"C": 1.0, "polarity_C": 1.0}
    assert p.set_params(C=0.5) is p and p.C == 0.5
    with pytest.raises(ValueError, match="invalid parameter"):
        p.set_params(alpha=1)
    with pytest.raises(RuntimeError, match="not fitted"):
        p.predict(torch.tensor(X))
    with pytest.raises(ValueError, match="polarity"):
        TTPDProbe().fit(torch.tensor(X), y)
    with pytest.raises(ValueError, match="both affirmative"):
        TTPDProbe().fit(torch.tensor(X), y, polarity=np.ones(len(y)))
    with pytest.raises(ValueError, match=r"\+1"):
        TTPDProbe().fit(torch.tensor(X), y, polarity=np.where(pol > 0, 1, 0))
    fitted = TTPDProbe().fit(torch.tensor(X), y, polarity=pol)
    pred = fitted.predict(torch.tensor(X))
    assert pred.dtype == torch.long and set(pred.unique().tolist()) <= {0, 1}
    proba = fitted.predict_proba(torch.tensor(X))
    assert bool(((proba >= 0) & (proba <= 1)).all())
    np.testing.assert_array_equal((proba > 0.5).long().numpy(), pred.numpy())


def test_probe_experiment_runs_ttpd_with_polarity():
    from veracity.experiments.probe import run_probe_experiment

    X, y, pol, top, _, _ = planted(d=8, seed=5, n_per_cell=25, mu_orth=True, noise=0.3)
    X2 = torch.tensor(np.stack([X, X], 1), dtype=torch.float32)
    exp = run_probe_experiment(X2, y, groups=top, methods=("ttpd", "mass-mean"), split="leave-one-topic-out",
                               seeds=1, polarity=pol)
    acc = {(c.method, c.layer): c.mean for c in exp.cells}
    assert acc[("ttpd", 0)] > 0.9 and acc[("ttpd", 1)] == acc[("ttpd", 0)]
    with pytest.raises(ValueError, match="polarity"):
        run_probe_experiment(X2, y, groups=top, methods=("ttpd",), split="leave-one-topic-out", seeds=1)
