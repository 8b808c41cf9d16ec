"""The comparison's prompted scorer against the evaluation scorer, and the sycophancy building blocks."""

import numpy as np
import pytest
import torch

from veracity.data import load_truthfulqa
from veracity.data.prompts import opinion_text, with_opinion
from veracity.experiments.interventions import summarise_method
from veracity.methods.scoring import score_mc_prompted
from veracity.experiments.sycophancy import TruthProbe, split_half
from veracity.evaluate.truthfulqa import score_mc
from veracity.probes.splits import question_folds as make_folds
from veracity.methods.prepare import PreparedMethod, parse_method


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def test_few_shot_prompt_reproduces_lm_eval_protocol(tiny_llama, data_dir):
    # lm-eval's context is exactly the QA primer + "\n\nQ: {q}\nA:": the few-shot method must score the same
    items = load_truthfulqa(data_dir)[:3]
    pm = PreparedMethod(parse_method("few-shot"), tiny_llama)
    mine, n_tok = score_mc_prompted(pm, items, "lm-eval")
    ref = score_mc(tiny_llama, items, "lm-eval").results
    for a, b in zip(mine, ref):
        assert a.scores == pytest.approx(b.scores, abs=1e-5) and (a.mc1, a.mc2) == (b.mc1, pytest.approx(b.mc2))
    assert n_tok > 500  # byte tokenizer: the primer alone is ~600 tokens
    base, n_base = score_mc_prompted(PreparedMethod(parse_method("baseline"), tiny_llama), items, "lm-eval")
    assert n_base < 100 and base[0].scores != pytest.approx(mine[0].scores)


def test_summarise_method_means_and_true_info():
    rows = [{"metrics": {"mc1": 0.2, "true": 0.5, "info": 0.8}, "costs": {"train_s": 1.0}},
            {"metrics": {"mc1": 0.4, "true": 0.7, "info": 0.6}, "costs": {"train_s": 3.0}}]
    s = summarise_method(rows)
    assert s["mc1"] == pytest.approx(0.3) and s["train_s"] == 2.0
    assert s["mc1_sd"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert s["true_info"] == pytest.approx(0.6 * 0.7)  # product of the fold means (ITI convention)


def test_opinion_and_split():
    assert opinion_text("Nothing happens") == "I think the answer is Nothing happens."
    assert opinion_text("Nothing happens.") == "I think the answer is Nothing happens."
    assert with_opinion("Why?", "Because") == "I think the answer is Because. Why?"
    train, test = split_half(list(range(10)), 3)
    folds = make_folds(list(range(10)), 2, seed=3)
    assert test == folds[0].tolist() and train == folds[1].tolist()  # measured on ITI's fold 0


def test_truth_probe_finds_the_informative_layer():
    g = torch.Generator().manual_seed(0)
    n, L, D = 200, 4, 6
    y = torch.randint(0, 2, (n,), generator=g)
    X = torch.randn(n, L, D, generator=g)
    X[:, 2, 0] += 4.0 * (2 * y - 1)  # only layer 2 carries the label
    probe = TruthProbe.fit(X, y.tolist(), list(range(n)), 0.25, 1.0, 0)
    assert probe.layer == 2 and probe.val_acc[2] > 0.95 and max(probe.val_acc[:2] + probe.val_acc[3:]) < 0.8
    p = probe.p_true(X)
    assert ((p >= 0.5) == (y.numpy() == 1)).mean() > 0.95


def test_prompted_generation_equals_the_evaluation_generator(tiny_llama, data_dir):
    # few-shot context = the original prompt without the instruction: both paths share generate_greedy
    from veracity.methods.scoring import generate_prompted
    from veracity.evaluate.generation import generate_answers

    qs = [it.question for it in load_truthfulqa(data_dir)[:3]]
    mine = generate_prompted(PreparedMethod(parse_method("few-shot"), tiny_llama), qs, max_new_tokens=6, batch_size=2)
    ref = generate_answers(tiny_llama, qs, instruction="none", max_new_tokens=6, batch_size=3)
    assert mine == [a.answer for a in ref]
