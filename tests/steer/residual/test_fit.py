"""Residual steering fits (`steer.residual.fit`) against hand and numpy computations."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from veracity.steer.residual.fit import fit_contrast_pairs, fit_diff_means, fit_lat, lat_differences, lat_signs, pair_by_group


# ------------------------------------------------------------------------------------------ fitting

def test_diff_means_hand_computed():
    # layer 0: true rows (1, 2), (3, 4); false rows (0, 0), (1, 0): mean diff = (2, 3) - (0.5, 0) = (1.5, 3)
    X0 = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    X1 = X0 * 2
    y = [1, 0, 1, 0]
    st = fit_diff_means({0: X0, 3: X1}, y)
    assert st.layers == [0, 3] and st.method == "caa"
    torch.testing.assert_close(st.vectors[0], torch.tensor([1.5, 3.0]))
    torch.testing.assert_close(st.vectors[1], torch.tensor([3.0, 6.0]))
    # the same from a [N, L, D] tensor with absolute layer ids on axis 1, picking one layer
    st2 = fit_diff_means(torch.stack([X0, X1], 1), y, layers=[3], act_layers=[0, 3])
    assert st2.layers == [3]
    torch.testing.assert_close(st2.vectors[0], torch.tensor([3.0, 6.0]))
    # unit and sigma scalings: u = (1.5, 3)/|.|; sigma = population std of X0 @ u
    u = torch.tensor([1.5, 3.0]) / torch.tensor([1.5, 3.0]).norm()
    unit = fit_diff_means({0: X0}, y, normalize="unit")
    torch.testing.assert_close(unit.vectors[0], u)
    sig = fit_diff_means({0: X0}, y, normalize="sigma")
    proj = (X0 @ u).numpy()
    torch.testing.assert_close(sig.vectors[0], u * float(np.std(proj)))
    assert sig.provenance["normalize"] == "sigma"


def test_contrast_pairs_mean_of_differences():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    st = fit_contrast_pairs({2: torch.tensor(P)}, {2: torch.tensor(Q)})
    np.testing.assert_allclose(st.vectors[0].numpy(), (P - Q).mean(0), rtol=1e-6, atol=1e-6)


def test_lat_is_first_pc_of_signed_centred_differences_vs_numpy():
    rng = np.random.default_rng(1)
    n, d = 80, 6
    truth = rng.normal(size=d)
    truth /= np.linalg.norm(truth)
    base = rng.normal(size=(n, d))
    P = base + 2.0 * truth + 0.3 * rng.normal(size=(n, d))
    Q = base - 0.0 * truth + 0.3 * rng.normal(size=(n, d))
    st = fit_lat(torch.tensor(P), torch.tensor(Q), seed=3, normalize="unit", act_layers=[5])
    assert st.layers == [5] and st.method == "lat"
    # numpy reference: RepE convention, random pair order from the documented signs, centred, top right sv
    s = lat_signs(n, 3).numpy()
    assert set(np.unique(s)) == {-1.0, 1.0}
    Dm = (P - Q) * s[:, None]
    np.testing.assert_allclose(lat_differences(torch.tensor(P), torch.tensor(Q), 3).numpy(), Dm)
    _, _, Vt = np.linalg.svd(Dm - Dm.mean(0), full_matrices=False)
    v = Vt[0] * np.sign(((P - Q) @ Vt[0]).mean())  # sign: true (pos) projects higher
    np.testing.assert_allclose(st.vectors[0].numpy(), v, atol=1e-6)
    assert abs(float(v @ truth)) > 0.95
    assert float(((P - Q) @ st.vectors[0].double().numpy()).mean()) > 0
    # raw scale: the unit direction times the mean paired difference along it
    raw = fit_lat(torch.tensor(P), torch.tensor(Q), seed=3)
    np.testing.assert_allclose(raw.vectors[0].numpy(), v * float((P - Q).mean(0) @ v), atol=1e-5)


def test_fit_errors_are_clear():
    X = torch.randn(4, 3)
    with pytest.raises(ValueError, match="both classes"):
        fit_diff_means({0: X}, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="labels"):
        fit_diff_means({0: X}, [1, 0, 1])
    with pytest.raises(KeyError, match="no activations for layers"):
        fit_diff_means({0: X}, [1, 0, 1, 0], layers=[2])
    with pytest.raises(ValueError, match="normalize"):
        fit_diff_means({0: X}, [1, 0, 1, 0], normalize="l2")
    with pytest.raises(ValueError, match="differ in shape"):
        fit_lat({0: X}, {0: X[:3]})


def test_pair_by_group():
    y = [1, 0, 0, 1, 1, 0, 1]
    g = ["a", "a", "a", "b", "b", "b", "c"]
    pos, neg = pair_by_group(y, g, seed=0)
    assert len(pos) == 2  # a: 1 true, 2 false -> 1 pair; b: 2 true, 1 false -> 1 pair; c: no false -> none
    pos, neg = pos.tolist(), neg.tolist()
    assert all(y[i] == 1 for i in pos) and all(y[j] == 0 for j in neg)
    assert all(g[i] == g[j] for i, j in zip(pos, neg))
    assert len(set(pos)) == len(pos) and len(set(neg)) == len(neg)


def test_fit_then_steer_moves_the_truth_projection(tiny_llama, layer_outputs):
    """End to end on tiny-llama: CAA fitted on two prompt sets pushes layer-2 outputs along v."""
    lm = tiny_llama
    tok = lm.tokenizer
    true_t, false_t = ["Paris is in France.", "Rome is in Italy."], ["Paris is in Peru.", "Rome is in Chad."]
    acts = {}
    for i, t in enumerate(true_t + false_t):
        outs = layer_outputs(lm, tok(t, return_tensors="pt")["input_ids"])
        for l in (1, 2):
            acts.setdefault(l, []).append(outs[l][0, -1])
    acts = {l: torch.stack(v) for l, v in acts.items()}
    st = fit_diff_means(acts, [1, 1, 0, 0], layers=[2])
    torch.testing.assert_close(st.vectors[0], acts[2][:2].mean(0) - acts[2][2:].mean(0))


# ------------------------------------------------------------------------------------------ steerability in provenance

def test_fits_record_steerability_predictors(tmp_path):
    from veracity.steer.steerability import directional_agreement, predictors, separability

    rng = np.random.default_rng(7)
    P, Q = rng.normal(size=(8, 5)) + 0.5, rng.normal(size=(8, 5))
    for st in (fit_contrast_pairs({2: P}, {2: Q}), fit_lat({2: P}, {2: Q}, seed=1)):
        assert st.provenance["steerability"] == {"2": pytest.approx(predictors(P, Q))}
    X = np.concatenate([P, Q])
    y = [1] * 8 + [0] * 8
    plain = fit_diff_means({2: X}, y)
    assert plain.provenance["steerability"] == {"2": pytest.approx(separability(P, Q))}
    # groups pair a true and a false row of one question: row i of P with row i of Q here
    grouped = fit_diff_means({2: X}, y, groups=list(range(8)) * 2)
    want = {**directional_agreement(P - Q), **separability(P, Q)}
    assert grouped.provenance["steerability"] == {"2": pytest.approx(want)}
    # a layer subset and a save / load round-trip keep them
    assert grouped.select([2]).provenance["steerability"] == grouped.provenance["steerability"]
    from veracity.steer.residual.vectors import ResidualSteer

    back = ResidualSteer.load(grouped.write(tmp_path / "s"))
    assert back.provenance["steerability"]["2"] == pytest.approx(grouped.provenance["steerability"]["2"])
