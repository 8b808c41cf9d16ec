import pytest
import torch

from veracity.data import load_truthfulqa
from veracity.evaluate.truthfulqa import QA_PRIMER, build_mc_question, make_requests, score_requests
from veracity.finetune import TrainConfig
from veracity.finetune.dpo import DPOConfig
from veracity.methods.prepare import MethodSettings, MethodSpec, TrainedCache, parse_method, prepare_method
from veracity.methods.prompts import SYSTEM_PROMPT, build_prompt
from veracity.methods.trainers import preference_pairs, sft_examples


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def test_parse_method_components():
    assert parse_method("baseline") == MethodSpec("baseline")
    assert parse_method("few-shot+iti") == MethodSpec("few-shot+iti", prompt="few-shot", steer="iti")
    assert parse_method("dpo+iti") == MethodSpec("dpo+iti", trainer="dpo", steer="iti")
    assert parse_method("Instruction+LoRA-SFT") == MethodSpec("instruction+lora-sft", "instruction", "lora-sft")
    for bad in ("dpo+lora-sft", "few-shot+system", "iti+iti", "magic", ""):
        with pytest.raises(ValueError):
            parse_method(bad)


def test_prompts(tiny_llama):
    assert build_prompt("baseline", "Why?") == ("Q: Why?\nA:", " ")
    ctx, sep = build_prompt("few-shot", "Why?")
    assert ctx == QA_PRIMER + "\n\nQ: Why?\nA:" and sep == " "
    assert build_prompt("instruction", "Why?")[0].startswith("Interpret each question literally")
    ctx, sep = build_prompt("system", "Why?", tiny_llama.tokenizer)  # tiny template: "<s>role: content\n"
    assert ctx == f"<s>system: {SYSTEM_PROMPT}\n<s>user: Why?\n<s>assistant:" and sep == " "


def test_training_data_from_items(data_dir):
    items = load_truthfulqa(data_dir)[:5]
    ex = sft_examples(items, "baseline")
    assert ex[0].prompt == f"Q: {items[0].question}\nA:" and ex[0].answer.startswith(" ")
    assert ex[0].answer.endswith(".")
    pairs = preference_pairs(items, "baseline", per_question=2, seed=0)
    assert len(pairs) == sum(min(2, len(it.incorrect_answers)) for it in items)
    assert pairs == preference_pairs(items, "baseline", per_question=2, seed=0)  # seeded
    first = [p for p in pairs if p.prompt == ex[0].prompt]
    assert all(p.chosen == ex[0].answer for p in first)
    wrong = {" " + a.strip() + ("" if a.strip().endswith(".") else ".") for a in items[0].incorrect_answers}
    assert all(p.rejected in wrong for p in first)


def test_prepare_trains_copies_and_fits_iti_on_the_trained_model(tiny_llama, data_dir, tmp_path):
    items = load_truthfulqa(data_dir)[:8]
    before = {k: v.clone() for k, v in tiny_llama.model.state_dict().items()}
    settings = MethodSettings(sft=TrainConfig(lora=True, lr=1e-2, max_steps=2, batch_size=4),
                              dpo=DPOConfig(beta=0.1, train=TrainConfig(lora=True, lr=1e-2, max_steps=2, batch_size=2)),
                              pairs_per_question=1, iti_k=4, iti_alpha=5.0)
    cache = TrainedCache()
    train, test = items[:4], [it.index for it in items[4:]]
    dpo = prepare_method(parse_method("dpo"), tiny_llama, train, test, settings, cache=cache, data_dir=data_dir,
                         limit=8, workdir=tmp_path, acts=tmp_path / "orig")
    both = prepare_method(parse_method("dpo+iti"), tiny_llama, train, test, settings, cache=cache, data_dir=data_dir,
                          limit=8, workdir=tmp_path, acts=tmp_path / "orig")
    assert dpo.lm is both.lm and len(dpo.train_losses) == 2  # one training shared through the cache
    assert both.intervention is not None and both.intervention.k == 4
    assert (tmp_path / "acts-dpo-baseline-fold0").is_dir()  # ITI captured from the DPO model
    assert set(both.intervention.provenance["train_questions"]) == {it.index for it in train}
    iti = prepare_method(parse_method("iti"), tiny_llama, train, test, settings, data_dir=data_dir, limit=8,
                         acts=tmp_path / "orig")
    assert iti.lm is tiny_llama and iti.train_seconds == 0.0
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.model.state_dict().items())
    # the trained model scores differently from the original; ITI changes the scores through hooks
    q = build_mc_question(items[5], "truthfulqa", "none")
    reqs = make_requests(tiny_llama.tokenizer, "Q: x\nA:", q.choices[:2], "truthfulqa")
    base = score_requests(tiny_llama.model, reqs)
    assert score_requests(dpo.lm.model, reqs) != pytest.approx(base, abs=1e-6)
    assert score_requests(tiny_llama.model, reqs, intervention=iti.factory()) != pytest.approx(base, abs=1e-6)
    assert score_requests(tiny_llama.model, reqs) == pytest.approx(base, abs=0)  # hooks removed
