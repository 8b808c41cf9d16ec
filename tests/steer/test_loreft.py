"""LoReFT through pyreft (`veracity.steer.loreft`): the hooked edit is the package's `LoreftIntervention` and Wu et
al.'s equation by hand, alpha scales it (0: the plain model), the trained loss is the answers' cross-entropy by hand,
training lowers it, is seeded, leaves the model and the global generator as they were, keeps R orthonormal, and a
missing package is one clear error."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from veracity.finetune.sft import SFTExample, pair_batch
from veracity.steer import NotBakeable
from veracity.steer.loreft import LoreftConfig, LoreftSteer, answer_loss, new_intervention, train_loreft

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = [SFTExample("Q: Is the sky blue?\nA:", " Yes, on a clear day."), SFTExample("Q: Can pigs fly?\nA:", " No."),
            SFTExample("Q: What is 2 + 2?\nA:", " Four."), SFTExample("Q: Is ice cold?\nA:", " Yes.")]
LAYER = 1


@pytest.fixture(scope="module")
def trained(tiny_llama):
    return train_loreft(tiny_llama, EXAMPLES, LAYER, LoreftConfig(max_steps=None, seed=3))


def _layer_out(lm, ids, layer):
    got = {}
    h = lm.arch.layer(lm.model, layer).register_forward_hook(
        lambda m, a, o: got.__setitem__("h", (o[0] if isinstance(o, tuple) else o).detach().clone()))
    try:
        with torch.no_grad():
            lm.model(input_ids=ids)
    finally:
        h.remove()
    return got["h"]


def test_the_edit_is_the_packages_intervention_and_the_equation(tiny_llama, trained):
    import pyreft

    lm, steer = tiny_llama, trained
    ids = torch.tensor([lm.tokenizer("Q: Why is the sea salty?\nA: Rivers.")["input_ids"]])
    h = _layer_out(lm, ids, LAYER)
    R, W, b = steer.rotate[0], steer.weight[0], steer.bias[0]
    m = steer.module(0, h.device)
    assert isinstance(m, pyreft.LoreftIntervention)
    with torch.no_grad():
        torch.testing.assert_close(m(h), h + ((h @ W.T + b) - h @ R) @ R.T, atol=1e-5, rtol=1e-5)
        for a in (0.0, 0.5, 2.0):
            s = steer.with_alpha(a)
            torch.testing.assert_close(s.transform(0, h), h + a * (m(h) - h), atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        plain = lm.model(input_ids=ids).logits
        with steer.with_alpha(0.0).apply(lm):
            torch.testing.assert_close(lm.model(input_ids=ids).logits, plain, atol=1e-6, rtol=0)
        with steer.apply(lm, positions="last"):  # the last token only: every earlier position is the plain model's
            last = lm.model(input_ids=ids).logits
    torch.testing.assert_close(last[:, :-1], plain[:, :-1], atol=1e-6, rtol=0)
    assert not torch.allclose(last[:, -1], plain[:, -1], atol=1e-4)
    gram = R.double().T @ R.double()
    torch.testing.assert_close(gram, torch.eye(steer.rank, dtype=torch.float64), atol=1e-5, rtol=0)
    with pytest.raises(NotBakeable):
        steer.bake(lm, "/nonexistent/never-written")


def test_the_loss_is_the_answers_cross_entropy_by_hand(tiny_llama):
    lm = tiny_llama
    batch = pair_batch(lm.tokenizer, [e.prompt for e in EXAMPLES], [e.answer for e in EXAMPLES], 256)
    total, n = 0.0, 0
    for e in EXAMPLES:  # each example alone, unpadded: -log p(answer token | prefix), summed then averaged
        p, full = lm.tokenizer(e.prompt)["input_ids"], lm.tokenizer(e.prompt + e.answer)["input_ids"]
        start = next(i for i, (a, c) in enumerate(zip(p + [None], full)) if a != c)
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=torch.tensor([full])).logits[0].double(), -1)
        total -= sum(float(logp[t - 1, full[t]]) for t in range(start, len(full)))
        n += len(full) - start
    with torch.no_grad():
        got = answer_loss(lm, batch)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(total / n, abs=1e-4)


def test_training_lowers_the_loss_is_seeded_and_leaves_the_model_and_rng(tiny_llama, trained):
    lm = tiny_llama
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    rng = torch.random.get_rng_state()
    again = train_loreft(lm, EXAMPLES, LAYER, LoreftConfig(max_steps=None, seed=3))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in lm.model.state_dict().items())
    assert all(p.grad is None for p in lm.model.parameters())
    for k in ("rotate", "weight", "bias"):
        assert torch.equal(getattr(again, k), getattr(trained, k))
    other = train_loreft(lm, EXAMPLES, LAYER, LoreftConfig(max_steps=None, seed=4))
    assert not torch.equal(other.weight, trained.weight)
    losses = trained.provenance["losses"]
    assert len(losses) == trained.provenance["steps"] == 20  # 20 epochs of one batch of 4
    batch = pair_batch(lm.tokenizer, [e.prompt for e in EXAMPLES], [e.answer for e in EXAMPLES], 256)
    with torch.no_grad():
        plain = answer_loss(lm, batch).item()
        with trained.apply(lm):
            steered = answer_loss(lm, batch).item()
    assert steered < plain - 0.1  # it learned the training answers


def test_a_fresh_intervention_is_seeded_without_touching_the_global_generator():
    rng = torch.random.get_rng_state()
    a, b = new_intervention(16, 2, seed=5), new_intervention(16, 2, seed=5)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_refuses_bad_tensors_and_a_missing_package(monkeypatch, trained, tiny_llama):
    from veracity.steer.loreft import pyreft_module
    from veracity.validation import BadInput

    with pytest.raises(ValueError, match="orthonormal"):
        LoreftSteer([1], trained.rotate * 2, trained.weight, trained.bias)
    with pytest.raises(ValueError, match="distinct"):
        LoreftSteer([1, 1], torch.cat([trained.rotate] * 2), torch.cat([trained.weight] * 2),
                    torch.cat([trained.bias] * 2))
    with pytest.raises(ValueError, match="out of range"):
        train_loreft(tiny_llama, EXAMPLES, 99)
    monkeypatch.setitem(sys.modules, "pyreft", None)  # as if not installed
    with pytest.raises(BadInput, match="pip install --no-deps pyreft"):
        pyreft_module()


def test_save_load_keeps_every_bit(trained, tmp_path):
    back = LoreftSteer.load(trained.save(tmp_path / "s"))
    for k in ("rotate", "weight", "bias"):
        assert torch.equal(getattr(back, k), getattr(trained, k))
    assert back.layers == trained.layers and back.alpha == trained.alpha and back.provenance == trained.provenance
    assert F.mse_loss(back.module(0, "cpu").rotate_layer.weight, trained.rotate[0]).item() < 1e-12
