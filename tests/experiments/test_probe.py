"""Splits, geometry, experiment drivers, per-head matrix and the CLI commands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from veracity.experiments.probe import run_probe_experiment
from veracity.probes import (aggregate, compare_directions, cosine_matrix, head_accuracy_matrix, kfold_splits,
                             leave_one_group_out, make_splits, sign_agreement_matrix, stratified_split,
                             transfer_split)


def test_stratified_split_keeps_balance_and_is_seeded():
    y = [0] * 60 + [1] * 40
    a = stratified_split(y, 0.25, seed=1)
    assert len(a.test_idx) == 25 and np.asarray(y)[a.test_idx].sum() == 10
    assert set(a.train_idx) | set(a.test_idx) == set(range(100)) and not set(a.train_idx) & set(a.test_idx)
    assert np.array_equal(a.test_idx, stratified_split(y, 0.25, seed=1).test_idx)
    assert not np.array_equal(a.test_idx, stratified_split(y, 0.25, seed=2).test_idx)


def test_kfold_and_leave_one_topic_out_partition_rows():
    y = [0, 1] * 25
    folds = kfold_splits(y, k=5, seed=0)
    assert sorted(np.concatenate([f.test_idx for f in folds]).tolist()) == list(range(50))
    groups = ["a"] * 10 + ["b"] * 15 + ["c"] * 25
    lo = leave_one_group_out(groups)
    assert [s.name for s in lo] == ["a", "b", "c"]
    assert all(set(np.asarray(groups)[s.test_idx]) == {s.name} for s in lo)
    assert all(s.name not in set(np.asarray(groups)[s.train_idx]) for s in lo)
    t = transfer_split(30, 20)
    assert t.train_idx.tolist() == list(range(30)) and t.test_idx.tolist() == list(range(30, 50))
    with pytest.raises(ValueError):
        make_splits("leave-one-topic-out", y, None)
    with pytest.raises(ValueError):
        make_splits("nope", y)


def test_aggregate_over_seeds():
    s = aggregate([0.6, 0.8, 0.7])
    assert math.isclose(s.mean, 0.7) and math.isclose(s.max, 0.8) and math.isclose(s.std, np.std([0.6, 0.8, 0.7]))


def test_geometry_matrices_and_chance():
    d = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [-1, 0, 0, 0]])
    cos = cosine_matrix(d)
    assert math.isclose(float(cos[0, 1]), 1 / math.sqrt(2), rel_tol=1e-9) and math.isclose(float(cos[0, 2]), -1.0)
    sgn = sign_agreement_matrix(d)
    assert float(sgn[0, 2]) == 0.75 and float(sgn[0, 0]) == 1.0  # zeros agree with zeros
    g = compare_directions(torch.randn(6, 400, generator=torch.Generator().manual_seed(0)), list("abcdef"))
    assert g.chance_cosine == 1 / 20 and g.chance_sign == 0.5
    assert abs(g.mean_offdiag_cosine) < 0.1 and abs(g.mean_offdiag_sign - 0.5) < 0.05


def _topic_data(n_per=120, topics=("t0", "t1", "t2"), L=2, d=16, seed=0):
    """A shared truth direction in every topic plus a topic-specific offset."""
    g = torch.Generator().manual_seed(seed)
    truth_dir = torch.randn(d, generator=g)
    X, y, groups = [], [], []
    for t in topics:
        lab = torch.randint(0, 2, (n_per,), generator=g)
        off = torch.randn(d, generator=g) * 0.5
        x = torch.randn(n_per, L, d, generator=g) + off + (lab * 2 - 1)[:, None, None] * truth_dir * 0.8
        x[:, 0] = torch.randn(n_per, d, generator=g)  # layer 0 carries no signal
        X.append(x)
        y += lab.tolist()
        groups += [t] * n_per
    return torch.cat(X), y, groups


def test_leave_one_topic_out_experiment_tables_and_reference():
    X, y, groups = _topic_data()
    exp = run_probe_experiment(X, y, groups, layers=[3, 7], methods=["logistic", "mass-mean", "random", "mlp-tiny"],
                               split="leave-one-topic-out", seeds=2, mlp_kwargs={"epochs": 3})
    assert exp.layers == [3, 7] and len(exp.table("mean")) == 4 and len(exp.table("max")[0]) == 3
    by = {(c.method, c.layer): c for c in exp.cells}
    assert by[("logistic", 7)].mean > 0.85 and abs(by[("logistic", 3)].mean - 0.5) < 0.12
    assert by[("logistic", 7)].std == 0.0  # deterministic, fitted once and reused
    assert len(by[("mlp-tiny", 7)].per_seed) == 2
    # independent reference: sklearn on the held-out topic t1, layer 7
    Xn, yn, gn = X[:, 1].numpy(), np.asarray(y), np.asarray(groups)
    tr, te = gn != "t1", gn == "t1"
    sc = StandardScaler().fit(Xn[tr])
    ref = LogisticRegression(C=1.0).fit(sc.transform(Xn[tr]), yn[tr]).score(sc.transform(Xn[te]), yn[te])
    mine = [s.accuracy for s in exp.scores if s.method == "logistic" and s.layer == 7 and s.split == "t1" and s.seed == 0]
    assert abs(mine[0] - ref) < 0.01
    geo = exp.geometry["logistic"]["7"]
    assert geo.labels == ["t0", "t1", "t2"] and geo.mean_offdiag_cosine > 3 * geo.chance_cosine


def test_head_accuracy_matrix_from_tensor_matches_single_head_fit():
    g = torch.Generator().manual_seed(0)
    N, L, H, hd = 300, 3, 4, 8
    T = torch.randn(N, L, H, hd, generator=g)
    y = torch.randint(0, 2, (N,), generator=g)
    T[:, 2, 1, 0] += (y * 2 - 1) * 1.5  # one informative head
    tr, va = np.arange(200), np.arange(200, 300)
    hp = head_accuracy_matrix(T, y, tr, va)
    acc, probe, layers = hp
    assert hp.accuracy.shape == (L, H) and hp.directions.shape == (L, H, hd)
    assert int(hp.accuracy.argmax()) == 2 * H + 1 and float(hp.accuracy[2, 1]) > 0.8
    Xh = T[:, 2, 1].numpy()
    sc = StandardScaler().fit(Xh[tr])
    ref = LogisticRegression().fit(sc.transform(Xh[tr]), y[tr].numpy()).score(sc.transform(Xh[va]), y[va].numpy())
    assert abs(float(hp.accuracy[2, 1]) - ref) < 0.011


@pytest.mark.parametrize("split", ["random", "kfold", "transfer"])
def test_other_split_kinds_run_and_vary_by_seed(split):
    X, y, groups = _topic_data(n_per=80)
    n_train = 160 if split == "transfer" else None  # topics t0, t1 train; t2 test
    exp = run_probe_experiment(X, y, groups, methods=["logistic", "random"], split=split, seeds=[0, 1], k=4,
                               n_train=n_train)
    names = {s.split for s in exp.scores}
    assert names == ({"random"} if split == "random" else {"transfer"} if split == "transfer" else {f"fold{i}" for i in range(4)})
    by = {(c.method, c.layer): c for c in exp.cells}
    assert by[("logistic", 1)].mean > 0.8
    if split == "transfer":
        assert all(s.n_train == 160 and s.n_test == 80 for s in exp.scores)
        assert by[("logistic", 1)].std == 0.0  # same training set each seed -> fitted once
    else:
        assert len(by[("logistic", 1)].per_seed) == 2 and by[("random", 0)].std >= 0.0


def test_one_question_fold_rule_for_every_study():
    """ITI's folds and the evaluation driver's folds are one rule (probes.splits.question_folds): a seeded
    default_rng permutation cut by np.array_split, sorted; contiguous = consecutive blocks."""
    from veracity.probes.splits import question_blocks, question_folds

    q = list(range(10, 27))
    perm = np.random.default_rng(3).permutation(len(q))
    by_hand = [sorted(np.asarray(q)[part].tolist()) for part in np.array_split(perm, 3)]
    assert [f.tolist() for f in question_folds(q, 3, seed=3)] == by_hand
    assert [b.tolist() for b in question_blocks(q, 2, contiguous=True)] == [q[:9], q[9:]]
    assert [f.tolist() for f in question_folds(q, 1, min_folds=1)] == [q]  # the evaluation driver allows one fold
    with pytest.raises(ValueError):
        question_folds(q, 1)  # every other study needs two
    import veracity.experiments.truthfulqa as drv
    import veracity.steer.iti as iti

    assert not hasattr(drv, "make_folds") and not hasattr(iti, "make_folds")  # one rule, one function
