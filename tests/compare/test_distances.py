import math

import pytest
import torch

from veracity.compare.distances import distances_from_logits, prompt_distances


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def _hand(p, q):
    kl = sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)
    klr = sum(b * math.log(b / a) for a, b in zip(p, q) if b > 0)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    js = 0.5 * sum(a * math.log(a / c) for a, c in zip(p, m) if a > 0) + \
        0.5 * sum(b * math.log(b / c) for b, c in zip(q, m) if b > 0)
    return kl, klr, js, sum(min(a, b) for a, b in zip(p, q))


def test_against_hand_computation_batched():
    p = [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]
    q = [[0.25, 0.25, 0.5], [0.6, 0.3, 0.1]]
    d = distances_from_logits(torch.tensor(p).log(), torch.tensor(q).log())
    for i in range(2):
        kl, klr, js, ov = _hand(p[i], q[i])
        assert d.kl_main_assistant[i].item() == pytest.approx(kl, abs=1e-6)
        assert d.kl_assistant_main[i].item() == pytest.approx(klr, abs=1e-6)
        assert d.js[i].item() == pytest.approx(js, abs=1e-6)
        assert d.one_minus_tv[i].item() == pytest.approx(ov, abs=1e-6)
    # hand numbers for row 0, written out: KL = .5 ln2 + .3 ln1.2 + .2 ln .4
    assert d.kl_main_assistant[0].item() == pytest.approx(0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.4), abs=1e-6)
    assert d.one_minus_tv[0].item() == pytest.approx(0.25 + 0.25 + 0.2, abs=1e-6)


def test_not_batchmean_and_zero_probabilities():
    # A vocabulary of 1000 where p and q differ on two tokens: the KL is the full sum, not divided by V.
    lp = torch.full((1000,), -1e9)
    lp[0], lp[1] = math.log(0.9), math.log(0.1)
    lq = torch.full((1000,), -1e9)
    lq[0], lq[1] = math.log(0.5), math.log(0.5)
    d = distances_from_logits(lp, lq)
    assert d.kl_main_assistant.item() == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2), abs=1e-5)
    assert d.js.item() <= math.log(2) + 1e-6
    same = distances_from_logits(lp, lp)
    assert same.kl_main_assistant.item() == pytest.approx(0.0, abs=1e-6)
    assert same.one_minus_tv.item() == pytest.approx(1.0, abs=1e-6)


def test_prompt_distances_last_and_continuation(tiny_llama):
    from veracity.models import build_tiny
    from veracity.models.arch import ArchSpec
    from veracity.models.loader import LoadedModel

    main = tiny_llama
    m2, tok = build_tiny("tiny-llama", seed=1)
    asst = LoadedModel(m2, main.tokenizer, ArchSpec.from_model(m2), "tiny-llama@1")
    prompts = ["hello there", "a", "the woman worked as"]
    d = prompt_distances(main, asst, prompts, batch_size=2)
    assert d.distances.kl_main_assistant.shape == (3,)
    # reference: one prompt at a time, no padding
    for i, t in enumerate(prompts):
        ids = main.tokenizer(t, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            a = main.model(ids).logits[0, -1]
            b = asst.model(ids).logits[0, -1]
        ref = distances_from_logits(a, b)
        assert d.distances.kl_main_assistant[i].item() == pytest.approx(ref.kl_main_assistant.item(), rel=1e-4, abs=1e-5)
        assert d.distances.one_minus_tv[i].item() == pytest.approx(ref.one_minus_tv.item(), rel=1e-4, abs=1e-5)
    c = prompt_distances(main, asst, prompts, continuations=[" x", " yz", " q"], batch_size=3)
    assert [len(x.js) for x in c.per_token] == [2, 3, 2]
    self_d = prompt_distances(main, main, prompts)
    assert torch.allclose(self_d.distances.kl_main_assistant, torch.zeros(3), atol=1e-5)


def test_different_tokenizers_error(tiny_llama):
    from veracity.compare.distances import check_same_tokenizer
    from veracity.models import load

    a = tiny_llama
    b = load("tiny-gpt2", device="cpu")  # no BOS: a different tokenizer setup
    class _Fake:
        name = "other"
        tokenizer = type("T", (), {"__len__": lambda s: 5, "get_vocab": lambda s: {}, "bos_token_id": 9,
                                   "eos_token_id": 9})()
    with pytest.raises(ValueError, match="do not share a tokenizer"):
        check_same_tokenizer(a, _Fake())
    del b
