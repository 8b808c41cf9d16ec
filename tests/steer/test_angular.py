"""Angular steering (`veracity.steer.angular`): the rotation keeps every activation's norm (1e-5), equals a
hand 2-D rotation of the (b1, b2) coordinates with the rest of h untouched, the adaptive variant leaves
activations with a negative b1 coordinate alone, b2 is the top principal component orthogonal to b1 (numpy);
hooks on a tiny model, save/load, `few-shot+angular` and `veracity steer sweep --method angular`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from veracity.methods import MethodSettings, parse_method, prepare_method
from veracity.steer import NotBakeable
from veracity.steer.angular import AngularSteer, fit_angular

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(labelled_rows, d=8):
    """Rows with unequal spreads per coordinate (so the top principal component is well defined) and an offset."""
    return labelled_rows(50, d, gap=2.0, spread=(0.5, 3), offset=1.0)


def test_second_axis_is_the_top_pc_orthogonal_to_the_direction(labelled_rows):
    X, y = _rows(labelled_rows)
    steer = fit_angular(torch.tensor(X), torch.tensor(y), [0])
    b1 = X[y == 1, 0].mean(0) - X[y == 0, 0].mean(0)
    b1 /= np.linalg.norm(b1)
    Z = X[:, 0] - X[:, 0].mean(0)
    Z = Z - np.outer(Z @ b1, b1)
    pc = np.linalg.svd(Z, full_matrices=False)[2][0]
    pc *= np.sign(X[:, 0].mean(0) @ pc)
    np.testing.assert_allclose(steer.b1[0].numpy(), b1, atol=1e-6)
    np.testing.assert_allclose(steer.b2[0].numpy(), pc, atol=1e-5)
    assert abs(float(steer.b1[0] @ steer.b2[0])) < 1e-6


@pytest.mark.parametrize("angle", [0.0, 37.0, 90.0, 180.0, 300.0])
def test_rotation_keeps_the_norm_and_equals_a_hand_2d_rotation(angle, labelled_rows):
    X, y = _rows(labelled_rows)
    steer = fit_angular(torch.tensor(X), torch.tensor(y), [0], angle=angle)
    h = torch.tensor(np.random.default_rng(2).normal(size=(7, 8)) * 4, dtype=torch.float32)
    got = steer.transform(0, h)
    torch.testing.assert_close(got.norm(dim=-1), h.norm(dim=-1), atol=1e-5, rtol=1e-6)
    b1, b2 = steer.b1[0].double().numpy(), steer.b2[0].double().numpy()
    hd = h.double().numpy()
    x, z = hd @ b1, hd @ b2
    rho, t = np.hypot(x, z), math.radians(angle)
    np.testing.assert_allclose(got.double().numpy() @ b1, rho * math.cos(t), atol=1e-5)
    np.testing.assert_allclose(got.double().numpy() @ b2, rho * math.sin(t), atol=1e-5)
    rest = lambda v: v - np.outer(v @ b1, b1) - np.outer(v @ b2, b2)  # noqa: E731
    np.testing.assert_allclose(rest(got.double().numpy()), rest(hd), atol=1e-5)


def test_adaptive_rotates_only_activations_aligned_with_the_direction(labelled_rows):
    X, y = _rows(labelled_rows)
    plain = fit_angular(torch.tensor(X), torch.tensor(y), [0], angle=120.0)
    ada = fit_angular(torch.tensor(X), torch.tensor(y), [0], angle=120.0, adaptive=True)
    h = torch.randn(64, 8, generator=torch.Generator().manual_seed(3)) * 3
    pos = (h @ ada.b1[0]) > 0
    assert pos.any() and (~pos).any()
    out = ada.transform(0, h)
    torch.testing.assert_close(out[~pos], h[~pos], atol=0, rtol=0)
    torch.testing.assert_close(out[pos], plain.transform(0, h)[pos], atol=0, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), h.norm(dim=-1), atol=1e-5, rtol=1e-6)


def test_plane_stats_say_where_the_rows_sit_in_the_plane_by_hand():
    # 2 true rows and 2 false ones in 3-D: the class means differ along e0 only (b1 = e0); centred, the rows vary
    # along e1 (variance 8) and e2 (2), uncorrelated, so b2 = e1 (the mean's e1 coordinate, 3, is positive)
    X = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [-1.0, 3.0, 0.0], [-1.0, 3.0, 2.0]])[:, None, :]
    y = torch.tensor([1, 1, 0, 0])
    steer = fit_angular(X, y, [4], angle=60.0)
    torch.testing.assert_close(steer.b1[0], torch.tensor([1.0, 0.0, 0.0], dtype=steer.b1.dtype))
    torch.testing.assert_close(steer.b2[0], torch.tensor([0.0, 1.0, 0.0], dtype=steer.b2.dtype), atol=1e-6, rtol=0)
    a, b, c = X[:, 0, 0].double().numpy(), X[:, 0, 1].double().numpy(), X[:, 0, 2].double().numpy()
    ang = np.degrees(np.arctan2(b, a))  # 45, 78.69, 108.43, 108.43
    share = (a * a + b * b) / (a * a + b * b + c * c)  # 2/3, 26/27, 1, 10/14
    p = steer.provenance["plane"]["4"]
    assert p["angle_median"] == pytest.approx(np.median(ang))
    assert p["angle_q25"] == pytest.approx(np.quantile(ang, 0.25)) and p["angle_q75"] == pytest.approx(
        np.quantile(ang, 0.75))
    assert p["in_plane_share"] == pytest.approx(np.median(share)) and p["aligned_share"] == 0.5
    line = steer.fit_summary(4)
    assert f"{np.median(ang):.1f} degrees from b1" in line and "50% with h.b1 > 0" in line
    assert steer.fit_summary(3) is None and AngularSteer([0], steer.b1, steer.b2).fit_summary(0) is None


def test_hooks_on_a_tiny_model_and_files(tiny_llama, tmp_path, labelled_rows, layer_outputs):
    lm, D = tiny_llama, tiny_llama.arch.hidden_size
    X, y = _rows(labelled_rows, D)
    steer = fit_angular(torch.tensor(X), torch.tensor(y), [1], angle=75.0)
    ids = torch.tensor([[1, 4, 7, 10, 13]])
    plain = layer_outputs(lm, ids)[1]
    with steer.apply(lm):
        got = layer_outputs(lm, ids)[1]  # hooks registered after the steer's: they see its output
    torch.testing.assert_close(got.norm(dim=-1), plain.norm(dim=-1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(got, steer.transform(0, plain), atol=1e-6, rtol=0)
    back = AngularSteer.load(steer.save(tmp_path / "ang"))
    assert torch.equal(back.b1, steer.b1) and torch.equal(back.b2, steer.b2) and back.alpha == 75.0
    assert back.fit_summary(1) == steer.fit_summary(1) is not None  # a reused fit still says where its rows sit
    with pytest.raises(NotBakeable):
        steer.bake(lm, tmp_path / "baked")
    from veracity.steer.ace import AceSteer

    with pytest.raises(ValueError, match="ang.json"):  # an angular file is not an ACE steer
        AceSteer.load(tmp_path / "ang")


def test_runs_as_a_method_and_in_the_sweep(tiny_llama, data_dir, tmp_path, cli, steer_sweep):
    from veracity.data import load_truthfulqa

    items = load_truthfulqa(data_dir)[:8]
    spec = parse_method("few-shot+angular-adaptive")
    pm = prepare_method(spec, tiny_llama, items[:5], [it.index for it in items[5:]],
                        MethodSettings(residual_layers=(-1,), steer_params={"alpha": 45.0}), data_dir=data_dir, limit=8,
                        acts=tmp_path / "acts")
    assert isinstance(pm.intervention, AngularSteer) and pm.intervention.adaptive
    assert pm.intervention.alpha == 45.0 and pm.intervention.layers == [tiny_llama.arch.n_layers - 1]
    text, res = steer_sweep("angular", "0,90")
    assert "angular sweep" in text and "degrees from b1" in text  # the fit's plane, in the sweep's log
    assert {(r["layer"], r["alpha"]) for r in res["grid"]} == {(-1, 0.0), (1, 0.0), (1, 90.0)}  # angle 0 is no identity
    text, res = steer_sweep("angular", "0,45,90")  # lengthened: the kept fits are reused, and still described
    assert "reused" in text and text.count("degrees from b1") == 2 and len(res["grid"]) == 4
    bad = cli(["steer", "sweep", "--model", "tiny-llama", "--method", "angular", "--normalize", "unit",
               "--out", tmp_path / "t"], code=2)
    assert "--normalize" in bad
