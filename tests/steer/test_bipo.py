"""BiPO (`veracity.steer.bipo`): the loss equals its closed form on log-probs computed by hand on tiny-llama, a
gradient step on v lowers it, training is seeded and leaves the model as it was, and the result is a residual steer
that is hooked, saved and compared with the same pairs' CAA vector."""

from __future__ import annotations

import math

import pytest
import torch

from veracity.finetune.dpo import PreferencePair
from veracity.steer import ResidualSteer
from veracity.steer.bipo import BipoConfig, pair_activations, pair_loss, reference_logps, train_bipo

pytestmark = pytest.mark.usefixtures("one_thread")

PAIRS = [PreferencePair("Q: Is the sky blue?\nA:", " Yes, on a clear day.", " No, it is green."),
         PreferencePair("Q: Can pigs fly?\nA:", " No.", " Yes, every spring."),
         PreferencePair("Q: What is 2 + 2?\nA:", " Four.", " Five.")]
LAYER = 1


def _hand_logp(lm, prompt: str, answer: str, v: torch.Tensor | None) -> float:
    """Sum of log p(answer token | prefix) from one unpadded forward, v added to layer LAYER's output by hand."""
    p = lm.tokenizer(prompt)["input_ids"]
    full = lm.tokenizer(prompt + answer)["input_ids"]
    start = next(i for i, (a, b) in enumerate(zip(p + [None], full)) if a != b)
    handle = None
    if v is not None:
        def hook(module, args, out):
            return (out[0] + v, *out[1:]) if isinstance(out, tuple) else out + v
        handle = lm.arch.layer(lm.model, LAYER).register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([full])).logits[0].double()
    finally:
        if handle is not None:
            handle.remove()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[t - 1, full[t]]) for t in range(start, len(full)))


def test_loss_equals_the_closed_form(tiny_llama):
    lm = tiny_llama
    v = torch.randn(lm.arch.hidden_size, generator=torch.Generator().manual_seed(3)) * 0.5
    ref = reference_logps(lm, PAIRS)
    for d in (1, -1):
        terms = []
        for i, p in enumerate(PAIRS):
            ref_c, ref_r = _hand_logp(lm, p.prompt, p.chosen, None), _hand_logp(lm, p.prompt, p.rejected, None)
            assert ref[0][i].item() == pytest.approx(ref_c, abs=1e-4)
            assert ref[1][i].item() == pytest.approx(ref_r, abs=1e-4)
            pol_c = _hand_logp(lm, p.prompt, p.chosen, d * v)
            pol_r = _hand_logp(lm, p.prompt, p.rejected, d * v)
            x = 0.1 * d * ((pol_c - ref_c) - (pol_r - ref_r))
            terms.append(math.log1p(math.exp(-x)))  # -log sigmoid(x)
        with torch.no_grad():
            got = pair_loss(lm, PAIRS, LAYER, v, d, 0.1, ref)
        assert got.dtype == torch.float32
        assert float(got) == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    with torch.no_grad():  # v = 0: both log-ratios vanish, the loss is log 2
        assert float(pair_loss(lm, PAIRS, LAYER, torch.zeros(lm.arch.hidden_size), 1, 0.1, ref)) == pytest.approx(
            math.log(2), abs=1e-6)


@pytest.mark.parametrize("d", [1, -1])
def test_a_gradient_step_lowers_the_loss(tiny_llama, d):
    lm = tiny_llama
    ref = reference_logps(lm, PAIRS)
    v = (torch.randn(lm.arch.hidden_size, generator=torch.Generator().manual_seed(5)) * 0.1).requires_grad_()
    before = pair_loss(lm, PAIRS, LAYER, v, d, 0.1, ref)
    (g,) = torch.autograd.grad(before, [v])
    assert float(g.norm()) > 0
    with torch.no_grad():
        after = pair_loss(lm, PAIRS, LAYER, v - 1e-2 * g / g.norm(), d, 0.1, ref)
    assert float(after) < float(before.detach())


def test_training_is_seeded_frozen_and_gives_a_residual_steer(tiny_llama, tmp_path):
    lm = tiny_llama
    state = {k: t.clone() for k, t in lm.model.state_dict().items()}
    cfg = BipoConfig(lr=1e-2, batch_size=2, epochs=3, max_steps=5, seed=7)
    a = train_bipo(lm, PAIRS, LAYER, cfg)
    b = train_bipo(lm, PAIRS, LAYER, cfg)
    c = train_bipo(lm, PAIRS, LAYER, BipoConfig(lr=1e-2, batch_size=2, epochs=3, max_steps=5, seed=8))
    assert torch.equal(a.vectors, b.vectors) and a.provenance["losses"] == b.provenance["losses"]
    assert not torch.equal(a.vectors, c.vectors)
    assert all(torch.equal(t, state[k]) for k, t in lm.model.state_dict().items())  # the model is not trained
    assert all(p.grad is None for p in lm.model.parameters())
    assert isinstance(a, ResidualSteer) and a.method == "bipo" and a.layers == [LAYER]
    assert a.provenance["steps"] == 5 and a.provenance["train_seconds"] > 0
    assert set(a.provenance["directions"]) <= {1, -1}
    # the stored cosine is the one with the mean paired difference of the same pairs at the same layer
    pos, neg = pair_activations(lm, PAIRS, LAYER)
    caa = (pos - neg).mean(0)
    v = a.vectors[0].double()
    assert a.provenance["caa_cosine"] == pytest.approx(float(v @ caa / (v.norm() * caa.norm())), abs=1e-5)
    # "unit" keeps the direction at norm 1; save/load round-trips
    u = train_bipo(lm, PAIRS, LAYER, cfg, normalize="unit")
    assert float(u.vectors[0].norm()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(u.vectors[0], a.vectors[0] / a.vectors[0].norm(), atol=1e-6, rtol=0)
    again = ResidualSteer.load(a.save(tmp_path / "bipo"))
    assert torch.equal(again.vectors, a.vectors) and again.provenance["caa_cosine"] == a.provenance["caa_cosine"]


def test_training_moves_the_margin_the_intended_way(tiny_llama):
    """After training, adding v raises the correct-minus-incorrect log-prob margin and subtracting v lowers it."""
    lm = tiny_llama
    st = train_bipo(lm, PAIRS, LAYER, BipoConfig(lr=5e-2, batch_size=3, epochs=20, max_steps=20))
    v = st.vectors[0]
    margin = {s: sum(_hand_logp(lm, p.prompt, p.chosen, s * v) - _hand_logp(lm, p.prompt, p.rejected, s * v)
                     for p in PAIRS) for s in (-1, 0, 1)}
    assert margin[1] > margin[0] > margin[-1]


def test_activation_units_scale_adams_first_step_by_the_activation_rms(tiny_llama):
    """units="activation" trains w with v = s * w, s the pairs' per-coordinate activation RMS at the layer: AdamW's
    first step from zero moves each coordinate by lr * g / (|g| + eps), so the first v is s times the raw one (same
    signs, eps aside), and s is recorded."""
    lm = tiny_llama
    cfg = dict(lr=1e-2, batch_size=3, epochs=1, max_steps=1, seed=3)
    raw = train_bipo(lm, PAIRS, LAYER, BipoConfig(**cfg))
    act = train_bipo(lm, PAIRS, LAYER, BipoConfig(**cfg, units="activation"))
    pos, neg = pair_activations(lm, PAIRS, LAYER)
    s = float(torch.cat([pos, neg]).pow(2).mean().sqrt())
    assert raw.provenance["units"] == 1.0 and act.provenance["units"] == pytest.approx(s, rel=1e-12)
    assert s != pytest.approx(1.0, abs=0.05)  # the check below would not tell the two apart otherwise
    torch.testing.assert_close(act.vectors[0].double(), s * raw.vectors[0].double(), rtol=1e-4, atol=s * 1e-2 * 1e-3)
    with pytest.raises(ValueError, match="units"):
        BipoConfig(units="metres")
