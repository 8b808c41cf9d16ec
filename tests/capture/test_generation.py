"""Generation with capture: the features read by hooks during generation equal a second plain forward over
prompt + generation; greedy tokens equal plain `generate()`; sampling is seeded and batch-independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from veracity.capture.generation import (POSITIONS, answer_questions, char_to_token_span, generate_with_capture,
                                         sample_seed)
from veracity.capture.hooks import hook_sites
from veracity.capture.sites import Site
from veracity.data.qa import answer_span, load_qa


def second_forward(lm, ans):
    """(features [5, layers, d], token log-probs) from one unpadded forward without a cache: the naive way."""
    ids = torch.tensor([ans.prompt_ids + ans.token_ids])
    P = len(ans.prompt_ids)
    layers = {}
    sites = [Site("resid", i) for i in range(lm.arch.n_layers)]
    with torch.no_grad(), hook_sites(lm.model, lm.arch, sites, lambda s, v: layers.__setitem__(s.layer, v),
                                     lambda h: h[0].float()):
        logits = lm.model(input_ids=ids).logits[0].float()
    h = torch.stack([layers[i] for i in range(lm.arch.n_layers)])  # [layers, T, d]
    a0, a1 = ans.span
    after = P + a1 if ans.after_in_generation else P + a1 - 1
    feats = torch.stack([h[:, P - 1], h[:, P + a0], h[:, P + a1 - 1], h[:, after], h[:, P + a0:P + a1].mean(1)])
    lp = torch.log_softmax(logits, -1)[P - 1:-1].gather(1, torch.tensor(ans.token_ids)[:, None])[:, 0]
    return feats, lp.numpy()


def check_against_forward(lm, answers, tol=1e-5):
    """Equal to `tol` of each (position, layer) vector's largest entry: smollm2's residual stream reaches ~600,
    where one float32 ulp is 6e-5, so a cached and an uncached forward differ by ~1e-6 of the scale; below a
    scale of 1 (the tiny models) the bound is absolute."""
    for ans in answers:
        assert ans.token_ids, "every answer in these tests has tokens"
        ref, lp = second_forward(lm, ans)
        assert ans.features.shape == (len(POSITIONS), lm.arch.n_layers, lm.arch.hidden_size)
        assert ans.features.dtype == torch.float32
        scale = ref.abs().amax(-1, keepdim=True).clamp_min(1.0)
        worst = float(((ans.features - ref).abs() / scale).max())
        assert worst <= tol, f"{ans.item_id} sample {ans.sample}: {worst:.2e} of the scale"
        assert ans.logprobs.dtype == np.float32
        np.testing.assert_allclose(ans.logprobs, lp, atol=1e-4)


def plain_greedy(lm, prompt, n):
    ids = torch.tensor([prompt])
    g = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n,
                          pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=lm.tokenizer.eos_token_id)
    new = g[0, len(prompt):].tolist()
    eos = lm.tokenizer.eos_token_id
    return new[:new.index(eos)] if eos in new else new


@pytest.fixture(scope="module")
def tiny_prompts(tiny_llama):
    tok = tiny_llama.tokenizer
    return [tok(t)["input_ids"] for t in ("Which country is Lyon in?", "Hi", "What is the capital of Peru? Tell me")]


def test_tiny_features_equal_a_second_forward(tiny_llama, tiny_prompts, one_thread):
    seeds = [None, 7, 8]
    out = generate_with_capture(tiny_llama, tiny_prompts, seeds=seeds, aliases=[["zz"]] * 3, max_new_tokens=9,
                                stop=None, batch_size=3)
    assert [len(a.token_ids) for a in out] == [9, 9, 9]  # random weights: no EOS, all run to the limit
    check_against_forward(tiny_llama, out)
    # the answer span (the first sentence, whatever the label), then a token after it read inside the generation
    tok = tiny_llama.tokenizer
    text = tok.decode(out[0].token_ids)
    alias = text[2:5]
    (ans,) = generate_with_capture(tiny_llama, tiny_prompts[:1], aliases=[[alias]], max_new_tokens=9, stop=None)
    if ans.correct:
        s, e, _ = answer_span(text, [alias])
        assert ans.answer == text[s:e]
        assert ans.after_in_generation and ans.span[1] < len(ans.token_ids)
        check_against_forward(tiny_llama, [ans])


def test_greedy_tokens_equal_plain_generate(tiny_llama, tiny_prompts, one_thread):
    out = generate_with_capture(tiny_llama, tiny_prompts, max_new_tokens=11, stop=None, batch_size=2)
    for p, a in zip(tiny_prompts, out):
        assert a.token_ids == plain_greedy(tiny_llama, p, 11)
        assert a.sample == -1 and a.correct is None
    plain = generate_with_capture(tiny_llama, tiny_prompts, max_new_tokens=11, stop=None, capture=False)
    assert [a.token_ids for a in plain] == [a.token_ids for a in out] and plain[0].features is None


def test_sampling_is_seeded_and_batch_independent(tiny_llama, tiny_prompts, one_thread):
    kw = dict(max_new_tokens=8, stop=None)
    a = generate_with_capture(tiny_llama, tiny_prompts, seeds=[1, 2, 3], batch_size=3, **kw)
    b = generate_with_capture(tiny_llama, tiny_prompts[::-1], seeds=[3, 2, 1], batch_size=1, capture=False, **kw)
    assert [x.token_ids for x in a] == [x.token_ids for x in b[::-1]]
    c = generate_with_capture(tiny_llama, tiny_prompts, seeds=[4, 5, 6], batch_size=3, **kw)
    assert [x.token_ids for x in a] != [x.token_ids for x in c]
    assert sample_seed(0, "x", 1) == sample_seed(0, "x", 1) != sample_seed(0, "x", 2)


def test_samples_follow_the_model_distribution(tiny_llama, one_thread):
    """First-token frequencies over 400 seeds against the softmax (temperature 2 spreads the mass)."""
    tok = tiny_llama.tokenizer
    prompt = tok("Q")["input_ids"]
    n = 400
    out = generate_with_capture(tiny_llama, [prompt] * n, seeds=range(n), temperature=2.0, max_new_tokens=1,
                                stop=None, batch_size=100, capture=False)
    with torch.no_grad():
        p = torch.softmax(tiny_llama.model(input_ids=torch.tensor([prompt])).logits[0, -1].float() / 2.0, -1)
    top = int(p.argmax())
    freq = np.mean([a.token_ids[:1] == [top] for a in out])
    assert abs(freq - float(p[top])) < 4 * np.sqrt(p[top] * (1 - p[top]) / n)
    nucleus = generate_with_capture(tiny_llama, [prompt] * 50, seeds=range(50), top_p=1e-6, max_new_tokens=1,
                                    stop=None, capture=False)
    assert {tuple(a.token_ids) for a in nucleus} == {(top,)}  # top-p this small keeps only the argmax


def test_char_to_token_span(tiny_llama):
    tok = tiny_llama.tokenizer
    ids = tok("abc def", add_special_tokens=False)["input_ids"]  # one token per byte
    assert char_to_token_span(tok, ids, 4, 7) == (4, 7)
    assert char_to_token_span(tok, ids, 0, 0) == (0, 1)


def test_smollm2_answers_equal_a_second_forward(smollm2, one_thread):
    items = [it for it in load_qa("cities") if it.question in ("Which country is Lyon in?",
                                                                "Which country is Kyoto in?")]
    out = answer_questions(smollm2, items, n_samples=1, seed=0, max_new_tokens=16, batch_size=4)
    assert [(a.item_id, a.sample) for a in out] == [(items[0].id, -1), (items[0].id, 0), (items[1].id, -1),
                                                   (items[1].id, 0)]
    for a in out:
        assert a.correct == answer_span(a.text, next(it.aliases for it in items if it.id == a.item_id))[2]
    check_against_forward(smollm2, out)
    tok = smollm2.tokenizer
    for a in out[::2]:
        assert a.token_ids == plain_greedy(smollm2, a.prompt_ids, 16)[:len(a.token_ids)]
        assert a.answer and a.answer in tok.decode(a.token_ids[a.span[0]:a.span[1]])


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"])
def test_rows_reaching_the_limit_are_fed_their_last_token(alias, one_thread):
    """The batch's last generated token is fed by one forward on the returned cache, for the rows whose answer
    reaches it only: rows that stop early (at EOS or by the stop rule) and rows that run to the limit, in one
    left-padded batch, all equal a second forward, on every tiny architecture (sliding-window caches and
    absolute positions included), and the tokens equal the uncaptured generation's."""
    from veracity.models import load

    lm = load(alias, device="cpu")
    tok = lm.tokenizer
    prompts = [tok(t)["input_ids"] for t in ("Which country is Lyon in?", "Hi", "What is the capital of Peru?")]
    out = generate_with_capture(lm, prompts, seeds=[None, 3, 4], max_new_tokens=7, stop=None, batch_size=3)
    assert any(len(a.token_ids) == 7 for a in out)  # (a sampled EOS may end a row early)
    check_against_forward(lm, [a for a in out if a.token_ids])
    head = out[1].text[:2]
    stop_early = lambda text: text.startswith(head)  # noqa: E731 (ends row 1 early, the others run to the limit)
    mixed = generate_with_capture(lm, prompts, seeds=[None, 3, 4], max_new_tokens=7, stop=stop_early, batch_size=3)
    plain = generate_with_capture(lm, prompts, seeds=[None, 3, 4], max_new_tokens=7, stop=stop_early, batch_size=3,
                                  capture=False)
    assert [a.token_ids for a in mixed] == [a.token_ids for a in plain]
    assert len(mixed[1].token_ids) < 7 and max(len(a.token_ids) for a in mixed) == 7
    check_against_forward(lm, [a for a in mixed if a.token_ids])


def test_a_layer_subset_reads_those_layers_only(tiny_llama, tiny_prompts, one_thread):
    """`layers` hooks only the layers named: their features equal the full capture's, the others are NaN; a
    layer the model lacks is refused."""
    full = generate_with_capture(tiny_llama, tiny_prompts, seeds=[None, 1, 2], max_new_tokens=6, stop=None)
    part = generate_with_capture(tiny_llama, tiny_prompts, seeds=[None, 1, 2], max_new_tokens=6, stop=None,
                                 layers=[-1, 0])
    last = tiny_llama.arch.n_layers - 1
    for f, p in zip(full, part):
        assert p.token_ids == f.token_ids
        torch.testing.assert_close(p.features[:, [0, last]], f.features[:, [0, last]], rtol=0, atol=0)
        assert torch.isnan(p.features[:, 1:last]).all()
    middle = generate_with_capture(tiny_llama, tiny_prompts, seeds=[None, 1, 2], max_new_tokens=6, stop=None,
                                   layers=[1])  # the last token's forward stops after layer 1
    for f, m in zip(full, middle):
        torch.testing.assert_close(m.features[:, 1], f.features[:, 1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="decoder layers"):
        generate_with_capture(tiny_llama, tiny_prompts, max_new_tokens=2, layers=[last + 1])


def test_steered_capture_reads_the_steered_states_to_the_last_token(tiny_llama, tiny_prompts, one_thread):
    """Under an intervention the states (the last token's, fed after `generate()`, included) are the steered
    ones: equal to a second forward under the same hook, unequal to the unsteered capture."""
    import contextlib

    v = torch.randn(tiny_llama.arch.hidden_size, generator=torch.Generator().manual_seed(0))

    @contextlib.contextmanager
    def shift(phase):
        h = tiny_llama.arch.layer(tiny_llama.model, 0).register_forward_hook(lambda m, a, o: (o[0] + v, *o[1:])
                                                                              if isinstance(o, tuple) else o + v)
        try:
            yield
        finally:
            h.remove()

    out = generate_with_capture(tiny_llama, tiny_prompts, seeds=[None, 1, 2], max_new_tokens=6, stop=None,
                                intervention=shift)
    with shift("score"):
        check_against_forward(tiny_llama, out)
    plain = generate_with_capture(tiny_llama, tiny_prompts, seeds=[None, 1, 2], max_new_tokens=6, stop=None)
    assert not torch.allclose(out[0].features[:, 1:], plain[0].features[:, 1:])
