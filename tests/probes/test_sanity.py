"""Probe sanity checks on planted data: CCS picks a planted distractor; the polarity split exposes a probe
that learned truth x polarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veracity.probes.sanity import add_distractor, ccs_distractor_test, polarity_split

CCS_FAST = dict(n_restarts=4, epochs=300, lr=1e-2)


def contrast_pairs(n=240, d=10, truth=1.0, noise=1.0, seed=0):
    """x+- = base +- c * truth * t + noise, c = +1 when the Yes side is true: truth is a CCS solution."""
    rng = np.random.default_rng(seed)
    t = np.zeros(d)
    t[0] = 1.0
    y = rng.integers(0, 2, n)
    c = 2 * y - 1
    base = rng.normal(size=(n, d)) * 2
    P = base + (c * truth)[:, None] * t + noise * rng.normal(size=(n, d)) * 0.3
    Q = base - (c * truth)[:, None] * t + noise * rng.normal(size=(n, d)) * 0.3
    return torch.tensor(P, dtype=torch.float32), torch.tensor(Q, dtype=torch.float32), y, torch.tensor(t)


def test_add_distractor_is_a_consistent_binary_feature():
    P, Q, y, _ = contrast_pairs()
    P2, Q2, z, d = add_distractor(P, Q, strength=2.0, seed=3)
    assert set(z.tolist()) == {0, 1} and d.shape == (1, 10)
    delta = ((P2 - P).double() @ d[0].double())
    # one side +s/2 d, the other -s/2 d, sign by z; nothing orthogonal to d changes
    np.testing.assert_allclose(((Q2 - Q).double() @ d[0].double()).numpy(), -delta.numpy(), atol=1e-4)
    assert bool(((delta > 0) == z.bool()).all())
    resid = (P2 - P).double() - delta[:, None] * d[0].double()
    assert resid.abs().max() < 1e-4
    both = torch.cat([P, Q]).double()
    rms = float((both - both.mean(0)).pow(2).sum(-1).mean().sqrt())
    np.testing.assert_allclose(delta.abs().numpy(), rms, rtol=1e-4)  # strength 2 -> |shift| = rms per side


def test_ccs_picks_the_planted_distractor():
    P, Q, y, t = contrast_pairs(seed=1)
    res = ccs_distractor_test(P, Q, y, strength=3.0, seed=0, truth_direction=t, **CCS_FAST)
    # clean pairs: CCS finds truth
    assert res.clean_acc_truth[0] > 0.9 and res.clean_cos_truth[0] > 0.8
    # with a prominent distractor it finds the distractor instead
    assert res.picks == ["distractor"]
    assert res.acc_distractor[0] > 0.9 and res.acc_truth[0] < 0.75
    assert res.cos_distractor[0] > 0.8 and res.cos_distractor[0] > res.cos_truth[0]


def test_ccs_distractor_batched_groups_and_weak_distractor():
    P, Q, y, t = contrast_pairs(seed=2)
    res = ccs_distractor_test(torch.stack([P, P], 1), torch.stack([Q, Q], 1), y, strength=0.05, seed=0, **CCS_FAST)
    assert len(res.picks) == 2 and res.picks == ["truth", "truth"]  # a faint distractor does not win
    assert min(res.acc_truth) > 0.9


def planted_polarity(n_per_cell=100, d=16, seed=0):
    rng = np.random.default_rng(99)
    q, _ = np.linalg.qr(rng.normal(size=(d, 3)))
    t_g, t_p, pol_dir = q[:, 0], 2.0 * q[:, 1], q[:, 2]
    rng = np.random.default_rng(seed)
    X, y, pol = [], [], []
    for p in (1, -1):
        for tau in (1, -1):
            X.append(p * pol_dir + tau * t_g + tau * p * t_p + 0.3 * rng.normal(size=(n_per_cell, d)))
            y += [int(tau > 0)] * n_per_cell
            pol += [p] * n_per_cell
    return np.concatenate(X).astype(np.float32), np.array(y), np.array(pol)


def test_polarity_split_exposes_truth_times_polarity():
    X, y, pol = planted_polarity()
    rows = polarity_split(torch.tensor(X), y, pol, methods=("logistic", "mass-mean", "ttpd"), seed=0)
    acc = {(r.method, r.train, r.test): r.accuracy for r in rows}
    assert len(rows) == 3 * 3 * 2
    for m in ("logistic", "mass-mean"):
        assert acc[(m, "affirmative", "affirmative")] > 0.95 and acc[(m, "affirmative", "negated")] < 0.1
        assert acc[(m, "negated", "negated")] > 0.95 and acc[(m, "negated", "affirmative")] < 0.1
    assert acc[("ttpd", "both", "negated")] > 0.95 and acc[("ttpd", "both", "affirmative")] > 0.95
    skipped = [r for r in rows if r.method == "ttpd" and r.train != "both"]
    assert all(r.accuracy is None and "both polarities" in r.note for r in skipped)
    # every score is on the same held-out rows of its test polarity
    n_test = {r.test: r.n_test for r in rows}
    assert n_test["affirmative"] == n_test["negated"] == 40


def test_polarity_split_matches_a_hand_fit():
    """affirmative -> negated equals fitting the same probe on the same rows by hand."""
    from veracity.probes import MassMeanProbe
    from veracity.probes.splits import stratified_split

    X, y, pol = planted_polarity(n_per_cell=30, seed=4)
    rows = polarity_split(torch.tensor(X), y, pol, methods=("mass-mean",), seed=5)
    strata = np.unique([f"{p}:{l}" for p, l in zip(pol, y)], return_inverse=True)[1]
    sp = stratified_split(strata.tolist(), 0.2, 5)
    test = np.zeros(len(y), bool)
    test[sp.test_idx] = True
    tr, te = ~test & (pol == 1), test & (pol == -1)
    want = MassMeanProbe().fit(torch.tensor(X[tr]), y[tr]).score(torch.tensor(X[te]), y[te])
    got = next(r.accuracy for r in rows if r.train == "affirmative" and r.test == "negated")
    assert got == pytest.approx(want)


def test_polarity_split_errors():
    X, y, pol = planted_polarity(n_per_cell=10)
    with pytest.raises(ValueError, match="polarity"):
        polarity_split(torch.tensor(X), y, np.ones(len(y)))
    with pytest.raises(ValueError, match="unknown probe method"):
        polarity_split(torch.tensor(X), y, pol, methods=("nope",))


def test_run_polarity_experiment_layers_and_held_out_topics():
    from veracity.probes.sanity import run_polarity_experiment

    X, y, pol = planted_polarity(seed=6)
    top = np.array(["a", "b"] * (len(y) // 2))
    X2 = torch.tensor(np.stack([X, X[:, ::-1].copy()], 1))
    exp = run_polarity_experiment(X2, y, pol, top, [4, 7], methods=("logistic", "ttpd"))
    assert exp.layers == [4, 7]
    aff_neg = exp.table("affirmative", "negated")
    assert aff_neg[0][0] == "logistic" and max(aff_neg[0][1:]) < 0.1 and aff_neg[1][1:] == [None, None]
    assert min(exp.table("both", "negated")[1][1:]) > 0.95  # ttpd trained on both polarities
    held = exp.table("topic!=a", "a:negated")
    assert min(held[1][1:]) > 0.95  # TTPD on a held-out topic
    # held-out topic rows: trained on the other topic only (both polarities), tested on this topic's rows
    r = next(s for s in exp.scores if s["train"] == "topic!=a" and s["test"] == "a:negated")
    assert r["n_train"] == int((top != "a").sum()) and r["n_test"] == int(((top == "a") & (pol == -1)).sum())


def test_polarity_split_keeps_twins_together(data_dir):
    X, y, pol = planted_polarity(n_per_cell=20, seed=8)
    twins = np.arange(len(y)) % 30  # 30 facts, each with several statements of both polarities
    rows = polarity_split(torch.tensor(X), y, pol, methods=("logistic",), seed=1, twins=twins)
    r = next(r for r in rows if r.train == "affirmative" and r.test == "negated")
    assert r.accuracy is not None
    # reconstruct the split: test rows are whole twin groups, about test_size of the rows
    from veracity.probes.sanity import polarity_statements

    n_test = sum(r.n_test for r in rows if r.train == "both")
    assert 0.1 * len(y) <= n_test <= 0.2 * len(y)
    ds = polarity_statements(("cities", "sp_en_trans"), data_dir=data_dir)
    pols: dict = {}
    for m in ds.meta:
        pols.setdefault(m["twin"], set()).add(m["polarity"])
    # nearly every fact has both an affirmative and a negated statement (the twins the split keeps together)
    both = sum(len(v) == 2 for v in pols.values())
    assert both / len(pols) > 0.9 and any(k.startswith("sp_en_trans|") for k in pols)


def test_interleaved_azaria_mitchell_twins(data_dir):
    """neg_companies / neg_facts hold a statement then its opposite-label rewrite; the twin with a negation
    word is the negated one, and pairs where both or neither have one are left out (hand-checked rows)."""
    from veracity.probes.sanity import polarity_statements

    ds = polarity_statements(("neg_companies", "neg_facts"), data_dir=data_dir)
    rows = list(zip(ds.texts, ds.labels, ds.groups, ds.meta))
    comp = [r for r in rows if r[2] == "companies"]
    assert len(comp) == 1100  # 550 pairs, every one with exactly one negated twin
    assert comp[0][:2] == ("Morgan Stanley has headquarters in the United States.", 1) and comp[0][3]["polarity"] == 1
    assert comp[1][:2] == ("Morgan Stanley doesn't have headquarters in the United States.", 0)
    assert comp[1][3]["polarity"] == -1 and comp[0][3]["twin"] == comp[1][3]["twin"]
    facts = {r[0]: r for r in rows if r[2] == "facts"}
    assert facts["Humans do not use their brains."][3]["polarity"] == -1  # the negated twin comes first here
    assert facts["Humans do use their brains."][3]["polarity"] == 1
    assert "Butterflies are not insects, they are birds." not in facts  # both twins negate: left out
    assert "The human eye can detect only one color." not in facts  # neither twin negates: left out
    assert sum(r[2] == "facts" for r in rows) == 1084  # 542 of 561 pairs kept
    by_twin: dict = {}
    for t, y, g, m in rows:
        by_twin.setdefault(m["twin"], []).append((y, m["polarity"]))
    assert all(sorted(p for _, p in v) == [-1, 1] and v[0][0] != v[1][0] for v in by_twin.values())
    assert len(polarity_statements(("neg_facts",), data_dir=data_dir, limit=10, seed=3).texts) == 20
