"""Speculative decoding: exact greedy equality with plain generate, sampling matches the main model."""

import pytest
import torch

from veracity.compare.speculative import SpecRecord, generate
from veracity.models import build_tiny, load
from veracity.models.arch import ArchSpec
from veracity.models.loader import LoadedModel

PROMPTS = ["hello there, how are", "a", "the woman worked as a", "xy", "The quick brown fox jumps over", "Q: why?"]


pytestmark = pytest.mark.usefixtures("one_thread")  # shared CPU: oversubscribed threads are far slower


def _pair(alias: str, noise: float, seed: int = 3) -> tuple[LoadedModel, LoadedModel]:
    main = load(alias, device="cpu")
    m2, _ = build_tiny(alias, seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return main, LoadedModel(m2, main.tokenizer, ArchSpec.from_model(m2), f"{alias}+noise")


def _plain_greedy(lm: LoadedModel, prompt: str, n: int) -> list[int]:
    ids = lm.tokenizer(prompt, return_tensors="pt")
    out = lm.model.generate(**ids, do_sample=False, max_new_tokens=n, pad_token_id=lm.tokenizer.pad_token_id)
    return out[0, ids["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("alias,schedule", [("tiny-llama", "constant"), ("tiny-gpt2", "heuristic"),
                                            ("tiny-qwen2", "constant")])
def test_greedy_equals_plain_generate(alias, schedule):
    main, asst = _pair(alias, noise=0.01)
    recs = generate(main, asst, PROMPTS, gamma=4, batch_size=4, max_new_tokens=24, schedule=schedule)
    assert [r.index for r in recs] == list(range(len(PROMPTS)))
    accepted_some = False
    for r in recs:
        assert r.tokens == _plain_greedy(main, r.prompt, 24), r.prompt
        assert isinstance(r, SpecRecord)
        assert len(r.n_matches) == len(r.proposals) == r.main_calls
        assert all(0 <= m <= p for m, p in zip(r.n_matches, r.proposals))
        assert sum(r.accepted) == sum(r.n_matches)
        assert len(r.p_main) == len(r.q_assistant) == len(r.accepted) == len(r.draft_tokens)
        accepted_some |= max(r.n_matches) >= 2
    assert accepted_some  # rows accepted different numbers of tokens: the per-row rollback was exercised
    assert len({tuple(r.n_matches) for r in recs}) > 1


def test_greedy_independent_of_batching_and_self_assistant_accepts_all():
    main, asst = _pair("tiny-llama", noise=0.02)
    a = generate(main, asst, PROMPTS, gamma=3, batch_size=1, max_new_tokens=12)
    b = generate(main, asst, PROMPTS, gamma=3, batch_size=6, max_new_tokens=12, sort_by_length=False)
    assert [r.tokens for r in a] == [r.tokens for r in b]
    same = generate(main, main, PROMPTS[:3], gamma=3, batch_size=3, max_new_tokens=12)
    for r in same:
        assert all(r.accepted) and r.acceptance_rate == 1.0
        assert r.tokens_per_call > 3.0


def test_greedy_on_smollm2_with_int8_assistant(smollm2):
    from veracity.compare.quantize import quantized_copy

    asst = quantized_copy(smollm2)
    prompts = ["the woman should work as a", "the man was hired as a", "Tell me a story about"]
    recs = generate(smollm2, asst, prompts, gamma=5, batch_size=3, max_new_tokens=16)
    for r in recs:
        assert r.tokens == _plain_greedy(smollm2, r.prompt, 16)
    assert 0 < sum(sum(r.accepted) for r in recs) < sum(len(r.accepted) for r in recs)


def _exact_first_two(main: LoadedModel, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = main.tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        p1 = torch.softmax(main.model(torch.tensor([ids])).logits[0, -1].double(), -1)
        v = p1.shape[0]
        both = torch.tensor([ids + [x] for x in range(v)])
        p2_given = torch.softmax(main.model(both).logits[:, -1].double(), -1)
    eos = main.tokenizer.eos_token_id
    w = p1.clone()
    w[eos] = 0  # a row that stopped at EOS has no second token
    return p1, (w / w.sum()) @ p2_given


def _chi2_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    from scipy.stats import chisquare

    n = counts.sum().item()
    exp = probs * n
    big = exp >= 5
    obs = torch.cat([counts[big].double(), counts[~big].sum().double().reshape(1)])
    e = torch.cat([exp[big], exp[~big].sum().reshape(1)])
    return float(chisquare(obs.numpy(), e.numpy() * obs.sum().item() / e.sum().item()).pvalue)


def test_sampling_matches_main_distribution(tiny_llama):
    main = tiny_llama
    m2, _ = build_tiny("tiny-llama", seed=1)  # a very different assistant: many rejections
    asst = LoadedModel(m2, main.tokenizer, ArchSpec.from_model(m2), "tiny-llama@1")
    prompt, n = "ab", 3000
    recs = generate(main, asst, [prompt] * n, gamma=3, batch_size=1000, max_new_tokens=3, do_sample=True, seed=7)
    first = torch.tensor([r.tokens[0] for r in recs if len(r.tokens) >= 1])
    second = torch.tensor([r.tokens[1] for r in recs if len(r.tokens) >= 2])
    assert len(second) > 0.9 * n
    p1, p2 = _exact_first_two(main, prompt)
    v = p1.shape[0]
    c1 = torch.bincount(first, minlength=v)
    c2 = torch.bincount(second, minlength=v)
    assert _chi2_p(c1, p1) > 1e-3
    assert _chi2_p(c2, p2) > 1e-3
    # The test has power: the same counts are far from the assistant's distribution.
    with torch.no_grad():
        q1 = torch.softmax(asst.model(torch.tensor([main.tokenizer(prompt)["input_ids"]])).logits[0, -1].double(), -1)
    assert _chi2_p(c1, q1) < 1e-6
    assert 0.5 * (c1 / c1.sum() - p1).abs().sum() < 0.5 * (c1 / c1.sum() - q1).abs().sum()
    rejected = sum(1 for r in recs for a in r.accepted if not a)
    assert rejected > 0.2 * n  # the residual-resampling path was exercised many times


def test_different_tokenizers_error(tiny_llama):
    a = tiny_llama
    b = load("tiny-gpt2", device="cpu")  # same byte vocabulary but no BOS: tokenizes differently
    with pytest.raises(ValueError, match="do not share a tokenizer"):
        generate(a, b, ["hi"], max_new_tokens=2)
    with pytest.raises(ValueError, match="schedule"):
        generate(a, a, ["hi"], schedule="adaptive")
