"""CE and KL against hand computations on a tiny model; KL of a model to itself is 0."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from veracity.evaluate import lm_metrics as lmm

TEXTS = ["The cat sat on the mat.", "A much longer document about nothing in particular, to force padding."]


def _hand_ce(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    total = 0.0
    for t in range(len(ids) - 1):
        z = logits[t]
        total += float(torch.logsumexp(z, 0) - z[ids[t + 1]])
    return total / (len(ids) - 1)


def _hand_kl(p_logits, q_logits):
    """KL(p || q) per position, summed over the vocabulary, averaged over positions (float64, by hand)."""
    p = torch.softmax(p_logits.double(), -1)
    q = torch.softmax(q_logits.double(), -1)
    return float((p * (p.log() - q.log())).sum(-1).mean())


@contextlib.contextmanager
def _shift(model, phase):
    h = model.get_input_embeddings().register_forward_hook(lambda m, a, o: o + 0.3)
    try:
        yield
    finally:
        h.remove()


def test_ce_matches_hand_computation(tiny_llama):
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    docs = lmm.tokenize_docs(tok, TEXTS, max_tokens=40)
    assert docs[0][0] == tok.bos_token_id and len(docs[1]) == 40  # BOS kept, truncated to T
    got = lmm.ce_per_doc(model, docs, batch_size=2)  # padded batch
    for d, g in zip(docs, got):
        assert g == pytest.approx(_hand_ce(model, d), abs=1e-5)
    m = lmm.compute_lm_metrics(model, tok, texts=TEXTS, max_tokens=40, kl=False)
    assert m.ce_loss == pytest.approx(sum(got) / 2, abs=1e-6) and m.kl is None and m.n_docs == 2


def test_kl_hand_computation_and_self_zero(tiny_llama):
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    docs = lmm.tokenize_docs(tok, TEXTS, max_tokens=40)
    zero = lmm.kl_per_doc(model, model, docs, batch_size=2)
    assert max(abs(z) for z in zero) < 1e-6
    shift = lambda phase: _shift(model, phase)  # noqa: E731
    got = lmm.kl_per_doc(model, model, docs, intervention=shift, batch_size=2)
    for d, g in zip(docs, got):
        ids = torch.tensor([d])
        with torch.no_grad():
            p = model(ids).logits[0]
            with _shift(model, "lm"):
                q = model(ids).logits[0]
        assert g == pytest.approx(_hand_kl(p, q), rel=1e-4, abs=1e-6)
        assert g > 1e-4
    m = lmm.compute_lm_metrics(model, tok, texts=TEXTS, max_tokens=40, intervention=shift)
    assert m.kl == pytest.approx(sum(got) / 2, rel=1e-6)
    assert lmm.compute_lm_metrics(model, tok, texts=TEXTS, max_tokens=40).kl == 0.0  # no intervention, no reference


def test_kl_separate_reference_model(tiny_llama):
    from veracity.models import load

    other = load("tiny-llama", device="cpu", seed=1)
    tok = tiny_llama.tokenizer
    docs = lmm.tokenize_docs(tok, TEXTS[:1], max_tokens=30)
    got = lmm.kl_per_doc(tiny_llama.model, other.model, docs)[0]
    with torch.no_grad():
        ids = torch.tensor(docs)
        assert got == pytest.approx(_hand_kl(tiny_llama.model(ids).logits[0], other.model(ids).logits[0]), rel=1e-4)
    # the driver-level function takes the reference as a LoadedModel or as a bare HF module alike
    kw = dict(texts=TEXTS[:1], max_tokens=30, ce=False)
    via_lm = lmm.compute_lm_metrics(other.model, tok, reference=tiny_llama, **kw).kl
    via_module = lmm.compute_lm_metrics(other.model, tok, reference=tiny_llama.model, **kw).kl
    assert via_lm == pytest.approx(via_module, rel=1e-6) and via_lm > 0


def test_default_texts_are_boolq_passages(data_dir):
    texts = lmm.load_texts("boolq", n_docs=5, data_dir=data_dir)
    assert len(texts) == 5 and len(set(texts)) == 5 and all(len(t) > 50 for t in texts)
    assert math.isfinite(len(texts[0]))
