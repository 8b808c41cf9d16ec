import pytest
import torch

from veracity.finetune import TrainConfig, eval_loss, finetune, load_corpus, merged
from veracity.models import load


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


TEXTS = ["the cat sat on the mat.", "the dog sat on the log.", "a cat and a dog sat together."] * 4


@pytest.mark.parametrize("lora", [True, False])
def test_few_steps_lower_the_loss_and_leave_the_original(lora):
    lm = load("tiny-llama", device="cpu")
    before_w = {k: v.clone() for k, v in lm.model.state_dict().items()}
    before = eval_loss(lm, TEXTS)
    res = finetune(lm, TEXTS, TrainConfig(lora=lora, lr=5e-3 if lora else 1e-3, epochs=10, max_steps=12,
                                          batch_size=4, seed=0))
    assert res.steps == 12
    after = eval_loss(merged(res.model), TEXTS)
    assert after < before - 0.1, (before, after)
    assert all(torch.equal(before_w[k], v) for k, v in lm.model.state_dict().items())  # original untouched
    if lora:
        n_train = sum(p.numel() for p in res.model.model.parameters() if p.requires_grad)
        assert n_train < 0.2 * sum(p.numel() for p in lm.model.parameters())


def test_corpus_sources(tmp_path, data_dir):
    assert len(load_corpus("boolq-passages", data_dir, limit=5)) == 5
    f = tmp_path / "c.txt"
    f.write_text("one\n\ntwo\n")
    assert load_corpus(str(f)) == ["one", "two"]
    with pytest.raises(FileNotFoundError):
        load_corpus(str(tmp_path / "missing.txt"))


def test_milestones_track_kl_and_spec(tmp_path, data_dir):
    from veracity.experiments.finetune_milestones import finetune_with_milestones, plot_curves
    from veracity.data.prompts import GroupedPrompt

    lm = load("tiny-llama", device="cpu")
    prompts = [GroupedPrompt("the woman is", "f"), GroupedPrompt("she is", "f"),
               GroupedPrompt("the man is", "m"), GroupedPrompt("he is", "m")]
    res, ms = finetune_with_milestones(lm, lm, TEXTS, TrainConfig(lora=True, lr=5e-3, epochs=2, max_steps=4, batch_size=4),
                                       prompts, eval_every=2, max_new_tokens=4, gamma=2,
                                       checkpoint_dir=tmp_path / "ck", data_dir=data_dir, log=lambda m: None)
    assert [m.step for m in ms] == [0, 2, 4]
    assert ms[0].kl == pytest.approx(0.0, abs=1e-5) and ms[0].acceptance_rate == 1.0  # identical before training
    assert ms[-1].kl > 1e-4  # training moved the assistant away
    assert (tmp_path / "ck" / "step-2").is_dir() and (tmp_path / "ck" / "final" / "config.json").exists()
    plot_curves(ms, res.losses)
