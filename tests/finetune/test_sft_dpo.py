import math

import pytest
import torch

from veracity.finetune import TrainConfig
from veracity.finetune.dpo import (DPOConfig, PreferencePair, dpo_eval_loss, dpo_loss, reference_logps,
                                   sequence_logps, train_dpo)
from veracity.finetune.sft import SFTExample, encode_pair, pair_batch, sft_eval_loss, train_sft
from veracity.models import load


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


@pytest.fixture(scope="module")
def lm():
    return load("tiny-llama", device="cpu")


def test_dpo_loss_matches_hand_computation():
    # pair 1: chosen gains 1.0 nats over ref, rejected loses 0.5 -> margin 1.5; pair 2: margin -2.0
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-6.5, -4.0])
    rc, rr = torch.tensor([-4.0, -4.0]), torch.tensor([-6.0, -5.0])
    beta = 0.5
    loss, r_c, r_r = dpo_loss(pc, pr, rc, rr, beta)
    # by hand: -log(1 / (1 + exp(-beta * margin)))
    m1, m2 = (-3.0 + 4.0) - (-6.5 + 6.0), (-5.0 + 4.0) - (-4.0 + 5.0)
    assert (m1, m2) == (1.5, -2.0)
    want = (math.log(1 + math.exp(-0.5 * 1.5)) + math.log(1 + math.exp(-0.5 * -2.0))) / 2
    assert float(loss) == pytest.approx(want, abs=1e-6)
    assert float(loss) == pytest.approx((0.3868710061149 + 1.3132616875182228) / 2, abs=1e-6)
    assert r_c.tolist() == pytest.approx([0.5, -0.5]) and r_r.tolist() == pytest.approx([-0.25, 0.5])
    # equal policy and reference: every pair costs log 2
    same = dpo_loss(rc, rr, rc, rr, 0.1)[0]
    assert float(same) == pytest.approx(math.log(2), abs=1e-7)


def test_dpo_loss_gradient_pushes_chosen_up_and_rejected_down():
    pc, pr = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)[0]
    loss.backward()
    # d/dpc of -logsigmoid(beta*(pc - pr)) at 0 = -beta * sigmoid(0) = -0.05
    assert pc.grad.item() == pytest.approx(-0.05) and pr.grad.item() == pytest.approx(0.05)


def test_answer_boundary_and_masking(lm):
    tok = lm.tokenizer  # byte tokenizer: one token per byte plus <s>
    ids, start = encode_pair(tok, "Q: x\nA:", " yes", max_length=64)
    assert len(ids) == 1 + len("Q: x\nA: yes") and start == 1 + len("Q: x\nA:")
    b = pair_batch(tok, ["Q: x\nA:", "Q: y\nA:"], [" yes", " n"], max_length=64)
    assert (b["labels"][0] != -100).sum() == 4 and (b["labels"][1] != -100).sum() == 2
    assert b["labels"][1, -1] == -100 and b["attention_mask"][1].sum() == 1 + len("Q: y\nA: n")
    # left truncation keeps the answer
    ids, start = encode_pair(tok, "a long prompt " * 10, " ok", max_length=8)
    assert len(ids) == 8 and tok.decode(ids[start:]) == " ok"


def test_sequence_logps_matches_manual_sum(lm):
    b = pair_batch(lm.tokenizer, ["Q: hi\nA:", "Q: a\nA:"], [" there", " b"], max_length=64)
    got = sequence_logps(lm.model, b)
    for r in range(2):
        n = int(b["attention_mask"][r].sum())
        ids = b["input_ids"][r, :n]
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(input_ids=ids[None]).logits[0].float(), -1)
        pos = (b["labels"][r, :n] != -100).nonzero().squeeze(1)
        want = sum(float(lp[p - 1, ids[p]]) for p in pos)
        assert float(got[r]) == pytest.approx(want, abs=1e-4)


EXAMPLES = [SFTExample("Q: What color is the sky?\nA:", " Blue."),
            SFTExample("Q: What do cows drink?\nA:", " Water."),
            SFTExample("Q: Is the earth flat?\nA:", " No, it is round.")]
PAIRS = [PreferencePair(e.prompt, e.answer, r) for e, r in
         zip(EXAMPLES, [" Green.", " Milk.", " Yes, it is flat."])]


def _snapshot(lm):
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


def test_sft_few_steps_lower_answer_loss(lm):
    before_w = _snapshot(lm)
    before = sft_eval_loss(lm, EXAMPLES)
    res = train_sft(lm, EXAMPLES, TrainConfig(lora=True, lr=1e-2, epochs=20, max_steps=10, batch_size=3, seed=0))
    assert res.steps == 10
    after = sft_eval_loss(res.model, EXAMPLES)
    assert after < before - 0.2, (before, after)
    assert res.losses[-1] < res.losses[0]
    assert all(torch.equal(before_w[k], v) for k, v in lm.model.state_dict().items())


def test_dpo_few_steps_lower_loss_starting_at_log2(lm):
    before_w = _snapshot(lm)
    cfg = DPOConfig(beta=0.5, train=TrainConfig(lora=True, lr=1e-2, epochs=20, max_steps=8, batch_size=3, seed=0))
    res = train_dpo(lm, PAIRS, cfg)
    assert res.steps == 8 and len(res.reward_accuracies) == 8
    assert res.losses[0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 0
    after = dpo_eval_loss(res.model.model, lm.model, lm.tokenizer, PAIRS, beta=0.5)
    assert after < math.log(2) - 0.1, after
    assert all(torch.equal(before_w[k], v) for k, v in lm.model.state_dict().items())
    # reference log-probs came from the untouched original
    rc, rr = reference_logps(lm.model, lm.tokenizer, PAIRS, 128)
    pc, pr = reference_logps(res.model.model, lm.tokenizer, PAIRS, 128)
    assert ((pc - rc) - (pr - rr)).mean() > 0  # chosen gained relative to rejected
