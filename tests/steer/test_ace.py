"""ACE (`veracity.steer.ace`): at alpha 0 the coordinate along the direction is the reference's (a hand
computation with numpy), every alpha moves it to r.u + alpha * s and leaves the rest of h alone, on a tiny model
through the hooks too; save/load round-trips; it runs as a method (`few-shot+ace`) and in `veracity steer sweep`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from veracity.methods import MethodSettings, parse_method, prepare_method
from veracity.steer import NotBakeable
from veracity.steer.ace import AceSteer, fit_ace

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("reference", ["false", "all"])
def test_alpha_zero_removes_the_component_about_the_reference(reference, labelled_rows):
    X, y = labelled_rows(40, 6)
    steer = fit_ace(torch.tensor(X), torch.tensor(y), [0], reference=reference, alpha=0.0)
    diff = X[y == 1, 0].mean(0) - X[y == 0, 0].mean(0)
    u = diff / np.linalg.norm(diff)
    r = X[y == 0, 0].mean(0) if reference == "false" else X[:, 0].mean(0)
    h = np.random.default_rng(1).normal(size=(5, 6)) * 3
    want = h - ((h - r) @ u)[:, None] * u  # ablation about r, by hand
    got = steer.transform(0, torch.tensor(h, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose((got - r) @ u, 0, atol=1e-5)


@pytest.mark.parametrize("normalize", ["raw", "sigma", "unit"])
def test_alpha_sets_the_coordinate_in_normalize_units(normalize, labelled_rows):
    X, y = labelled_rows(40, 6)
    steer = fit_ace(torch.tensor(X), torch.tensor(y), [0], normalize=normalize, alpha=1.5)
    u = steer.directions[0].double().numpy()
    proj = X[:, 0] @ u
    s = {"raw": proj[y == 1].mean() - proj[y == 0].mean(), "sigma": proj.std(), "unit": 1.0}[normalize]
    h = torch.randn(3, 6)
    got = steer.transform(0, h).double().numpy()
    np.testing.assert_allclose(got @ u, proj[y == 0].mean() + 1.5 * s, atol=1e-4)
    rest = lambda v: v - (v @ u)[:, None] * u  # noqa: E731
    np.testing.assert_allclose(rest(got), rest(h.double().numpy()), atol=1e-5)


def test_hooks_on_a_tiny_model_ablate_about_the_reference(tiny_llama, layer_outputs):
    lm, D = tiny_llama, tiny_llama.arch.hidden_size
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(30, 1, D, generator=g), torch.arange(30) % 2
    X[y == 1] += torch.randn(D, generator=g)
    steer = fit_ace(X, y, [1], alpha=0.0)
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    plain = layer_outputs(lm, ids)[1]
    with steer.apply(lm):
        hooked = layer_outputs(lm, ids)[1]  # registered after apply's hook: sees the steered output
    with steer.apply(lm, positions="last"):
        last = layer_outputs(lm, ids)[1]
    u, r = steer.directions[0], float(steer.ref_proj[0])
    torch.testing.assert_close(hooked @ u, torch.full((1, 6), r), atol=1e-5, rtol=0)
    torch.testing.assert_close(hooked - (hooked @ u)[..., None] * u, plain - (plain @ u)[..., None] * u, atol=1e-5, rtol=0)
    torch.testing.assert_close(last[:, :-1], plain[:, :-1], atol=0, rtol=0)
    torch.testing.assert_close(last[:, -1], hooked[:, -1], atol=0, rtol=0)
    torch.testing.assert_close(layer_outputs(lm, ids)[1], plain, atol=0, rtol=0)  # hooks removed


def test_save_load_round_trip_and_no_bake(tiny_llama, tmp_path, labelled_rows):
    X, y = labelled_rows(40, tiny_llama.arch.hidden_size)
    steer = fit_ace(torch.tensor(X), torch.tensor(y), [2], reference="all", normalize="sigma", alpha=2.5,
                    provenance={"fold": 1})
    back = AceSteer.load(steer.save(tmp_path / "ace"))
    for k, v in steer.tensors().items():
        assert torch.equal(back.tensors()[k], v), k
    assert (back.layers, back.alpha, back.provenance["reference"]) == ([2], 2.5, "all")
    with pytest.raises(NotBakeable):
        steer.bake(tiny_llama, tmp_path / "baked")
    assert not (tmp_path / "baked").exists()
    meta = json.loads((tmp_path / "ace.json").read_text())
    (tmp_path / "ace.json").write_text(json.dumps({**meta, "layers": [3]}))
    with pytest.raises(ValueError, match="ace.safetensors"):
        AceSteer.load(tmp_path / "ace")


def test_runs_as_a_method_on_the_training_fold(tiny_llama, data_dir, tmp_path):
    from veracity.data import load_truthfulqa

    items = load_truthfulqa(data_dir)[:8]
    spec = parse_method("few-shot+ace")
    assert (spec.prompt, spec.steer) == ("few-shot", "ace")
    settings = MethodSettings(residual_layers=(1,), residual_alpha=0.0, steer_params={"reference": "all"})
    pm = prepare_method(spec, tiny_llama, items[:5], [it.index for it in items[5:]], settings, data_dir=data_dir,
                        limit=8, acts=tmp_path / "acts")
    steer = pm.intervention
    assert isinstance(steer, AceSteer) and steer.alpha == 0.0 and steer.layers == [1]
    assert steer.provenance["train_questions"] == sorted(it.index for it in items[:5])
    assert pm.factory() is not None


def test_steer_sweep_runs_ace(steer_sweep):
    text, res = steer_sweep("ace", "0,1")
    assert "ace sweep" in text
    assert res["method"] == "ace" and {(r["layer"], r["alpha"]) for r in res["grid"]} == {(-1, 0.0), (1, 0.0), (1, 1.0)}  # 0: the ablation
