"""Conditional (CAST-style) steering (`veracity.steer.conditional`): the inner steer changes a layer's output at
exactly the positions where the condition probe (its own `predict_proba`) says P(false) > threshold, nowhere else;
the fire rates equal a hand count; save/load; `few-shot+conditional` prepared on a fold."""

from __future__ import annotations

import contextlib

import pytest
import torch

from veracity.methods import MethodSettings, parse_method, prepare_method
from veracity.probes import make_probe
from veracity.steer import NotBakeable, ResidualSteer
from veracity.steer.ace import fit_ace
from veracity.steer.conditional import ConditionalSteer, fit_conditional, linear_probe

pytestmark = pytest.mark.usefixtures("one_thread")


def _outputs(layer_outputs, lm, layer, ids, steer=None):
    """Decoder layer `layer`'s output for `ids`, with `steer` hooked in when given (read after its hooks)."""
    with steer.apply(lm) if steer is not None else contextlib.nullcontext():
        return layer_outputs(lm, ids)[layer]


@pytest.mark.parametrize("probe", ["logistic", "mass-mean"])
def test_applies_exactly_where_the_probe_fires(tiny_llama, probe, layer_outputs):
    lm, D = tiny_llama, tiny_llama.arch.hidden_size
    ids = torch.tensor([[1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]])
    plain = _outputs(layer_outputs, lm, 1, ids)[0]
    # condition rows: this text's own layer-1 outputs, labelled so that about half the positions read "false"
    y = (plain[:, 0] > plain[:, 0].median()).long()
    inner = ResidualSteer([1], torch.randn(1, D, generator=torch.Generator().manual_seed(0)), alpha=2.0)
    steer = fit_conditional(inner, plain, y, probe=probe, threshold=0.5)
    p = make_probe(probe).fit(plain.float(), y)
    fire = torch.as_tensor(p.predict_proba(plain.float())).reshape(-1) < 0.5  # P(true) < 0.5: P(false) > 0.5
    assert fire.any() and (~fire).any()
    hooked = _outputs(layer_outputs, lm, 1, ids, steer)[0]
    torch.testing.assert_close(hooked[~fire], plain[~fire], atol=0, rtol=0)
    torch.testing.assert_close(hooked[fire], plain[fire] + 2.0 * inner.vectors[0], atol=1e-6, rtol=0)
    rates = steer.provenance["fire_rate"]["train"]
    assert rates["target"] == pytest.approx(float(fire[y == 0].double().mean()))
    assert rates["control"] == pytest.approx(float(fire[y == 1].double().mean()))


def test_later_layers_follow_the_first_layers_decision(tiny_llama, tmp_path, layer_outputs):
    lm, D = tiny_llama, tiny_llama.arch.hidden_size
    ids = torch.tensor([[2, 4, 6, 8, 10, 12, 14, 16]])
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(40, 2, D, generator=g), torch.arange(40) % 2
    X[y == 1] += torch.randn(2, D, generator=g)
    inner = fit_ace(X, y, [1, 2], alpha=0.0)
    plain1 = _outputs(layer_outputs, lm, 1, ids)[0]
    w, b = linear_probe(plain1, (plain1[:, 1] > plain1[:, 1].median()).long())
    steer = ConditionalSteer(inner, w, b, threshold=0.5)
    fire = torch.sigmoid(-(plain1 @ w + b)) > 0.5
    assert fire.any() and (~fire).any()
    h1, h2 = _outputs(layer_outputs, lm, 1, ids, steer)[0], _outputs(layer_outputs, lm, 2, ids, steer)[0]
    u1, u2 = inner.directions
    torch.testing.assert_close(h1[~fire], plain1[~fire], atol=0, rtol=0)
    torch.testing.assert_close(h1[fire] @ u1, inner.ref_proj[0].expand(int(fire.sum())), atol=1e-5, rtol=0)
    torch.testing.assert_close(h2[fire] @ u2, inner.ref_proj[1].expand(int(fire.sum())), atol=1e-5, rtol=0)
    back = ConditionalSteer.load(steer.save(tmp_path / "cond"))
    assert torch.equal(back.probe_w, steer.probe_w) and back.probe_b == steer.probe_b
    assert torch.equal(back.inner.directions, inner.directions) and back.inner.method == "ace"
    torch.testing.assert_close(_outputs(layer_outputs, lm, 2, ids, back)[0], h2, atol=0, rtol=0)
    with pytest.raises(NotBakeable):
        steer.bake(lm, tmp_path / "baked")
    assert steer.with_alpha(1.5).inner.alpha == 1.5


def test_runs_as_a_method_with_fire_rates(tiny_llama, data_dir, tmp_path):
    from veracity.data import load_truthfulqa

    items = load_truthfulqa(data_dir)[:8]
    spec = parse_method("few-shot+conditional")
    pm = prepare_method(spec, tiny_llama, items[:5], [it.index for it in items[5:]],
                        MethodSettings(residual_layers=(1,), steer_params={"steer": "lat", "threshold": 0.4}),
                        data_dir=data_dir, limit=8, acts=tmp_path / "acts")
    steer = pm.intervention
    assert isinstance(steer, ConditionalSteer) and steer.inner.method == "lat" and steer.threshold == 0.4
    rates = steer.provenance["fire_rate"]
    assert set(rates) == {"train", "held_out"}
    for part in rates.values():
        assert part["n_target"] > 0 and part["n_control"] > 0
        assert 0 <= part["target"] <= 1 and 0 <= part["control"] <= 1
    # the one row recorder of sweeps and compare-interventions reports the held-out rates as registered metrics
    from veracity.methods.evaluate import MethodEvalConfig, evaluate_prepared

    row = evaluate_prepared(pm, tiny_llama, items[5:], MethodEvalConfig(side_effects=()), None, {}, data_dir=data_dir)
    assert row["metrics"]["fire_rate_target"] == rates["held_out"]["target"]
    assert row["metrics"]["fire_rate_control"] == rates["held_out"]["control"]
