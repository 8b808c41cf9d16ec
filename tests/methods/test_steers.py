"""The method registries and the one `Steer` protocol: every registered steering family, fitted on a fold of
tiny-llama, is applied exactly as a hand-written hook, round-trips through save/load, and bakes into a folder
whose logits equal the hooks (or refuses with NotBakeable); the registries are what `parse_method` reads."""

from __future__ import annotations

import types

import pytest
import torch

from veracity.data import load_truthfulqa
from veracity.methods import (PROMPTS, STEERS, TRAINERS, MethodSettings, Prompt, parse_method, prepare_method,
                              SteerFamily, register_prompt, register_steer)
from veracity.steer import Intervention, NotBakeable, ResidualSteer, Steer
from veracity.steer.ace import AceSteer
from veracity.steer.angular import AngularSteer
from veracity.steer.conditional import ConditionalSteer
from veracity.steer.loreft import LoreftSteer

pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def _iti_hook(lm, steer: Intervention) -> list:
    """ITI by hand: the head shifts added to the input of each layer's attention output projection."""
    def pre(shift):
        return lambda module, args: (args[0] + shift.to(args[0].dtype), *args[1:])
    return [lm.arch.attn_out(lm.model, l).register_forward_pre_hook(pre(s)) for l, s in steer.layer_shifts().items()]


def _residual_hook(lm, steer: ResidualSteer) -> list:
    """Residual steering by hand: alpha * v added to each steered decoder layer's output."""
    def post(v):
        def hook(module, args, out):
            h = out[0] if isinstance(out, tuple) else out
            h = h + steer.alpha * v.to(h.dtype)
            return (h, *out[1:]) if isinstance(out, tuple) else h
        return hook
    return [lm.arch.layer(lm.model, l).register_forward_hook(post(v)) for l, v in zip(steer.layers, steer.vectors)]


HAND_HOOKS = {Intervention: _iti_hook, ResidualSteer: _residual_hook}  # a new family adds its hand-written hook


def _output_hook(lm, layers, fn) -> list:
    """A forward hook per layer replacing the decoder layer's output h by fn(i, h) (i: index into `layers`)."""
    def post(i):
        def hook(module, args, out):
            h = out[0] if isinstance(out, tuple) else out
            return (fn(i, h), *out[1:]) if isinstance(out, tuple) else fn(i, h)
        return hook
    return [lm.arch.layer(lm.model, l).register_forward_hook(post(i)) for i, l in enumerate(layers)]


def _ace_hook(lm, steer) -> list:
    """ACE by hand: the coordinate along u set to r.u + alpha * s."""
    def fn(i, h):
        u = steer.directions[i]
        return h - (h @ u)[..., None] * u + (steer.ref_proj[i] + steer.alpha * steer.scales[i]) * u
    return _output_hook(lm, steer.layers, fn)


def _angular_hook(lm, steer) -> list:
    """Angular steering by hand: the (b1, b2) coordinates replaced by their length at angle alpha (degrees)."""
    import math

    def fn(i, h):
        b1, b2 = steer.b1[i], steer.b2[i]
        x, y = h @ b1, h @ b2
        r = (x ** 2 + y ** 2).sqrt()
        out = h - x[..., None] * b1 - y[..., None] * b2 + (r * math.cos(math.radians(steer.alpha)))[..., None] * b1 \
            + (r * math.sin(math.radians(steer.alpha)))[..., None] * b2
        return torch.where((x > 0)[..., None], out, h) if steer.method == "angular-adaptive" else out
    return _output_hook(lm, steer.layers, fn)


def _conditional_hook(lm, steer) -> list:
    """A conditional steer by hand: the probe on the first layer's plain output, then the inner hand map there."""
    import torch.nn.functional as F

    inner, where = steer.inner, {}
    maps = {ResidualSteer: lambda i, h: h + inner.alpha * inner.vectors[i]}
    maps[AceSteer] = lambda i, h: h - (h @ inner.directions[i] - inner.ref_proj[i] - inner.alpha * inner.scales[i])[
        ..., None] * inner.directions[i]

    def fn(i, h):
        if i == 0:
            where["fire"] = F.logsigmoid(-(h @ steer.probe_w + steer.probe_b)).exp() > steer.threshold
        return torch.where(where["fire"][..., None], maps[type(inner)](i, h), h)
    return _output_hook(lm, steer.layers, fn)


def _loreft_hook(lm, steer) -> list:
    """LoReFT by hand (Wu et al.'s equation): h + alpha R^T (W h + b - R h), R^T the saved rotation [D, r]."""
    def fn(i, h):
        R, W, b = steer.rotate[i], steer.weight[i], steer.bias[i]
        return h + steer.alpha * ((h @ W.T + b) - h @ R) @ R.T
    return _output_hook(lm, steer.layers, fn)


HAND_HOOKS.update({AceSteer: _ace_hook, AngularSteer: _angular_hook, ConditionalSteer: _conditional_hook,
                   LoreftSteer: _loreft_hook})


@pytest.fixture(scope="module")
def fold(data_dir):
    items = load_truthfulqa(data_dir)[:8]
    return items[:5], [it.index for it in items[5:]]


@pytest.mark.parametrize("name", sorted(STEERS))
def test_every_steer_family_keeps_the_protocol(name, tiny_llama, data_dir, fold, tmp_path):
    lm, (train, test) = tiny_llama, fold
    settings = MethodSettings(iti_k=4, iti_alpha=5.0, residual_layers=(1,), residual_alpha=3.0)
    steer = STEERS[name].fit(lm, [it.index for it in train], test, settings, data_dir=data_dir, limit=8,
                             acts=tmp_path / "acts", fold=0)
    assert isinstance(steer, Steer), f"{name}: {type(steer).__name__} lacks a method of the Steer protocol"
    assert type(steer) in HAND_HOOKS, f"add a hand-written hook for {type(steer).__name__} to HAND_HOOKS"
    ids = torch.tensor([lm.tokenizer("Q: What happens if you swallow gum?\nA: Nothing.")["input_ids"]])
    with torch.no_grad():
        plain = lm.model(input_ids=ids).logits
        handles = HAND_HOOKS[type(steer)](lm, steer)
        try:
            by_hand = lm.model(input_ids=ids).logits
        finally:
            for h in handles:
                h.remove()
        with steer.apply(lm):
            hooked = lm.model(input_ids=ids).logits
        with steer.factory(lm)("mc"):  # the evaluation driver's scoring phase: every position, as apply
            phase = lm.model(input_ids=ids).logits
        again = type(steer).load(steer.save(tmp_path / "steer"))
        with again.apply(lm):
            reloaded = lm.model(input_ids=ids).logits
        assert torch.equal(lm.model(input_ids=ids).logits, plain)  # nothing left behind
    assert not torch.allclose(hooked, plain, atol=1e-4)
    torch.testing.assert_close(hooked, by_hand, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(phase, hooked, atol=0, rtol=0)
    torch.testing.assert_close(reloaded, hooked, atol=0, rtol=0)
    with pytest.raises(ValueError):  # another model's shape
        steer.check_model(types.SimpleNamespace(n_layers=1, n_heads=lm.arch.n_heads + 1, head_dim=lm.arch.head_dim + 1,
                                                hidden_size=lm.arch.hidden_size + 1))
    try:
        folder = steer.bake(lm, tmp_path / "baked", verify=True)
    except NotBakeable:
        return
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()(input_ids=ids).logits
    torch.testing.assert_close(baked, hooked, atol=1e-4, rtol=0)
    assert steer.verify(lm, folder) <= 1e-4


def test_parse_method_reads_the_registries(tiny_llama, data_dir, fold):
    assert {"baseline", "few-shot"} <= set(PROMPTS) and {"lora-sft", "dpo"} <= set(TRAINERS)
    assert {"iti", "caa", "lat"} <= set(STEERS)
    with pytest.raises(ValueError, match="unknown method component 'terse'"):
        parse_method("terse")
    register_prompt(Prompt("terse", lambda q, tok: f"Answer in one word. Q: {q}\nA:"))
    try:
        spec = parse_method("terse+caa")
        assert (spec.prompt, spec.trainer, spec.steer) == ("terse", None, "caa")
        pm = prepare_method(parse_method("terse"), tiny_llama, fold[0], fold[1], MethodSettings())
        assert pm.prompt("Why?") == ("Answer in one word. Q: Why?\nA:", " ") and pm.factory() is None
    finally:
        PROMPTS.pop("terse")


@pytest.mark.parametrize("name", sorted(STEERS))
def test_every_steer_declares_its_parameters(name):
    """A family's parameters are the single source of their defaults and constraints: MethodSettings starts
    from the declared defaults, refuses what a parameter's constraints refuse, and `settings` sets a parameter
    by its name; a name the family does not have is refused naming the ones it has."""
    from veracity.validation import BadInput

    from veracity.methods.steers import IN_PARAMS, steer_value

    family = STEERS[name]
    plain = MethodSettings()
    for p in family.params:
        if p.setting is None:
            continue
        assert steer_value(plain, name, p.name) == p.default, p.name
        assert steer_value(family.settings(plain, **{p.name: p.example}), name, p.name) == p.example, p.name
        bad = next((b for c in p.constraints if c is not None for b in c.bad_values()), None)
        if bad is not None:
            with pytest.raises(BadInput):
                if p.setting == IN_PARAMS:
                    MethodSettings(steer_params={p.name: bad})
                else:
                    MethodSettings(**{p.setting: bad})
    with pytest.raises(ValueError, match=f"steer {name!r} has no parameter 'nosuch'; its parameters: "
                                         + ", ".join(p.name for p in family.params)):
        family.settings(plain, nosuch=1)


def test_a_new_family_adds_parameters_with_its_registration():
    """A family registered later declares its parameters IN_PARAMS: MethodSettings carries them by name with no
    field of its own, checks them against the declaration when built, and `steer_value` reads them (default when
    unset); a name no family declares is refused."""
    from veracity.constraints import Interval
    from veracity.methods.steers import IN_PARAMS, SteerParam, steer_value
    from veracity.validation import BadInput

    angle = SteerParam("angle_deg", 30.0, (Interval(float, 0, 180),), IN_PARAMS, 90.0)
    register_steer(SteerFamily("toy-rot", lambda *a, **k: None, store="resid", params=(angle,), sweep="layers"))
    try:
        assert steer_value(MethodSettings(), "toy-rot", "angle_deg") == 30.0
        s = STEERS["toy-rot"].settings(MethodSettings(), angle_deg=90.0)
        assert s.steer_params == {"angle_deg": 90.0} and steer_value(s, "toy-rot", "angle_deg") == 90.0
        with pytest.raises(BadInput, match="angle_deg"):
            MethodSettings(steer_params={"angle_deg": 270.0})
        with pytest.raises(BadInput, match="no registered steer has a parameter 'nosuch'"):
            MethodSettings(steer_params={"nosuch": 1})
    finally:
        STEERS.pop("toy-rot")


@pytest.mark.parametrize("name", ["caa", "angular", "bipo"])
def test_cosmic_layer_select_fits_on_the_training_fold(name, tiny_llama, data_dir, fold, tmp_path):
    """layer_select=cosmic: the steer at COSMIC's best candidate, scored on the training questions' rows only
    (by hand: the family fitted at each candidate, `cosmic_select` on `training_texts`), recorded in provenance;
    angular's steer towards false is the mirrored angle."""
    from veracity.methods.steers import steer_value
    from veracity.steer.layer_select import cosmic_select, training_texts

    lm, (train, test) = tiny_llama, fold
    train_q = [it.index for it in train]
    base = MethodSettings(residual_layers=(0, 2), residual_alpha=2.0, steer_params={"alpha": 60.0},
                          pairs_per_question=1)
    if name != "angular":
        base = MethodSettings(residual_layers=(0, 2), residual_alpha=2.0, pairs_per_question=1)
    family = STEERS[name]
    kw = dict(data_dir=data_dir, limit=8, acts=tmp_path / "acts", fold=0)
    got = family.fit(lm, train_q, test, family.settings(base, layer_select="cosmic"), **kw)
    texts, labels = training_texts(data_dir, "2021", 8, train_q)
    assert texts and not set(labels) - {0, 1}
    one = {l: family.fit(lm, train_q, test, family.settings(base, layers=(l,)), **kw) for l in (0, 2)}
    opposite = (lambda s: s.with_alpha(180 - s.alpha)) if name == "angular" else None
    want = cosmic_select(lm, texts, labels, [0, 2], one.__getitem__, opposite=opposite)
    rec = got.provenance["layer_select"]
    assert rec["layer"] == want.layer and got.layers == [want.layer] and rec["candidates"] == [0, 2]
    assert rec["scores"] == pytest.approx({str(l): v for l, v in want.scores.items()}, abs=1e-9)
    assert steer_value(base, name, "layer_select") == "given"
    assert str(want.layer) in got.provenance["steerability"]


def test_identity_alpha_is_declared():
    """caa, lat, bipo and iti add nothing at alpha 0; ACE's 0 ablates and angular's 0 rotates; a conditional steer
    is the identity where its inner steer is."""
    assert {n: STEERS[n].identity(MethodSettings()) for n in ("iti", "caa", "lat", "bipo", "ace", "angular")} == \
        {"iti": 0.0, "caa": 0.0, "lat": 0.0, "bipo": 0.0, "ace": None, "angular": None}
    assert STEERS["conditional"].identity(MethodSettings()) == 0.0
    assert STEERS["conditional"].identity(MethodSettings(steer_params={"steer": "ace"})) is None
