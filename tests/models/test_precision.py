"""Half precision gives the same science as float32 (tolerances derived in docs/precision.md).

- capture of a bf16/fp16 model equals the float32 capture within `relative_tolerance(dtype, n_layers)`
  (max|a - b| / max|b| per site: each layer's rounding ~2^-p, adding up like a random walk over depth);
- MC scores, CE and KL are log-softmaxed and summed in float32 whatever the model dtype: they equal a
  float64 recomputation from the model's own half-precision logits to float32 round-off (a half-precision
  log-softmax would be off by ~1e-2 nats per token), and MC1/MC2 match the float32 model's;
- probes fitted on half-precision stores train in float32 and equal fits on the upcast store;
- ITI and residual steering add their shift in the model's dtype, and a baked half-precision model equals
  its hooks within the same tolerance;
- speculative greedy decoding reproduces plain greedy exactly in float32, and in bf16 everywhere except
  at top-2 logit near-ties smaller than the logits' rounding error.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from veracity.capture import capture
from veracity.evaluate.lm_metrics import ce_per_doc, kl_per_doc, tokenize_docs
from veracity.evaluate.truthfulqa import make_requests, score_mc, score_requests
from veracity.models import load
from veracity.models.precision import relative_error, relative_tolerance, unit_roundoff
from veracity.steer import Intervention, apply, bake

TINY = ["tiny-llama", "tiny-gpt2", "tiny-gemma3", "tiny-qwen2"]
HALF = [torch.bfloat16, torch.float16]
TEXTS = ["The cat is black and it has four legs.", "Paris is the capital of France.",
         "The moon is made of cheese.", "Water boils at 100 degrees Celsius at sea level, they say.",
         "2 + 2 = 5", "Q: What happens if you crack your knuckles a lot? A: Nothing in particular happens."]


def _lm(name, dtype):
    return load(name, dtype=dtype, device="cpu")


def test_tolerance_formula():
    assert unit_roundoff(torch.bfloat16) == 2 ** -8 and unit_roundoff(torch.float16) == 2 ** -11
    assert relative_tolerance(torch.bfloat16, 30) == pytest.approx(6 * 2 ** -8 * 31 ** 0.5)
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([1.0, -2.5])
    assert relative_error(a, b) == pytest.approx(0.5 / 2.5)


# -------------------------------------------------------------------------------------------- capture
@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_capture_matches_float32(name, dtype):
    ref, lm = _lm(name, torch.float32), _lm(name, dtype)
    tol = relative_tolerance(dtype, lm.arch.n_layers)
    for positions in ("last", "mean"):
        a = capture(lm, TEXTS, "resid,heads,mlp,resid.embed", positions=positions, dtype=torch.float32,
                    batch_size=4, progress=False)
        b = capture(ref, TEXTS, "resid,heads,mlp,resid.embed", positions=positions, dtype=torch.float32,
                    batch_size=4, progress=False)
        for s in b.sites:
            err = relative_error(a[s], b[s])
            assert 0 < err <= tol, (name, dtype, positions, s, err, tol)  # > 0: it really ran in half


# ------------------------------------------------------------------------ log-probs in float32 always
@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_mc_scores_are_float32_log_softmax_of_half_logits(name):
    lm = _lm(name, torch.bfloat16)
    tok = lm.tokenizer
    conts = [" yes", " no, it is not", " maybe so"]
    reqs = make_requests(tok, "Q: Is the sky blue?\nA:", conts, "truthfulqa")
    assert len({p for p, _ in reqs}) == 1  # one prefix: calls = [prefix, continuation 1, 2, 3]
    calls = []
    h = lm.model.register_forward_hook(lambda m, a, o: calls.append(o.logits.detach().clone()))
    try:
        got = score_requests(lm.model, reqs, batch_size=1, pad_id=tok.pad_token_id)
    finally:
        h.remove()
    assert len(calls) == 4 and calls[0].dtype == torch.bfloat16  # the model really computes in bf16
    for i, ((p, c), g) in enumerate(zip(reqs, got)):
        # the same bf16 logits, log-softmaxed and summed in float64
        lp = [torch.log_softmax(calls[0][0, -1].double(), -1)[c[0]]]
        lp += [torch.log_softmax(calls[i + 1][0, t].double(), -1)[c[t + 1]] for t in range(len(c) - 1)]
        ref = float(sum(lp))
        # float32 accumulation agrees with float64 to float32 round-off; a bf16 log-softmax would be off
        # by ~u * |log p| ~ 1e-2 nats per token
        assert abs(g - ref) <= 1e-5 * max(1.0, abs(ref)), (g, ref)
    # what the float32 log-softmax avoids: done in bf16 it is off by far more than that bound
    bf16_err = (torch.log_softmax(calls[1], -1).double() - torch.log_softmax(calls[1].double(), -1)).abs().max()
    assert float(bf16_err) > 1e-3


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2"])
def test_ce_and_kl_accumulate_in_float32(name):
    lm, ref = _lm(name, torch.bfloat16), _lm(name, torch.float32)
    docs = tokenize_docs(lm.tokenizer, TEXTS, 32)
    ce = ce_per_doc(lm.model, docs, batch_size=1)  # one document per forward: the same bf16 logits as below
    kl = kl_per_doc(ref.model, lm.model, docs, batch_size=1)
    with torch.no_grad():
        for d, c, k in zip(docs, ce, kl):
            ids = torch.tensor([d])
            lp_h = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
            lp_f = torch.log_softmax(ref.model(input_ids=ids).logits[0].double(), -1)
            ce_ref = float(-lp_h[torch.arange(len(d) - 1), torch.tensor(d[1:])].mean())
            kl_ref = float((lp_f.exp() * (lp_f - lp_h)).sum(-1).mean())
            assert c == pytest.approx(ce_ref, abs=1e-4)
            assert k == pytest.approx(kl_ref, abs=1e-5)
            assert 0 < k < 1e-2  # bf16 changes the distribution a little, not a lot


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_mc_bf16_matches_float32(name, data_dir):
    from veracity.data import load_truthfulqa

    items = load_truthfulqa(data_dir)[:6]
    ref, lm = _lm(name, torch.float32), _lm(name, torch.bfloat16)
    for protocol in ("truthfulqa", "lm-eval"):
        a, b = score_mc(lm, items, protocol), score_mc(ref, items, protocol)
        assert abs(a.mc2 - b.mc2) * 100 <= 1.0
        assert a.mc1 == b.mc1
        for ra, rb in zip(a.results, b.results):
            # summed over answer tokens, per-token logit rounding stays well under a nat
            assert max(abs(x - y) for x, y in zip(ra.scores, rb.scores)) < 0.5


@pytest.mark.real
@pytest.mark.slow
def test_mc_bf16_matches_float32_smollm2(smollm2, data_dir):
    """10 questions here (bf16 matmuls are emulated on this CPU, ~5x slower); the 100-question figures
    come from benchmarks/device_check.py (docs/results.md)."""
    from veracity.data import load_truthfulqa

    items = load_truthfulqa(data_dir)[:10]
    lm = load("smollm2", dtype="bfloat16", device="cpu")
    a, b = score_mc(lm, items, "truthfulqa"), score_mc(smollm2, items, "truthfulqa")
    assert abs(a.mc2 - b.mc2) * 100 <= 1.0
    assert abs(a.mc1 - b.mc1) <= 0.1  # one flip in ten at most


# ------------------------------------------------------------------------------------------- probes
@pytest.mark.parametrize("store_dtype", HALF + [torch.float32], ids=["bf16", "fp16", "fp32"])
def test_probes_train_in_float32_from_half_stores(tmp_path, store_dtype):
    from veracity.capture import Activations
    from veracity.probes import LogisticProbe
    from veracity.probes.heads import head_accuracy_matrix

    lm = _lm("tiny-llama", torch.bfloat16)
    texts = TEXTS * 4
    labels = [i % 2 for i in range(len(texts))]
    capture(lm, texts, "heads,resid.2", labels=labels, dtype=store_dtype, out=tmp_path / "s", batch_size=8,
            progress=False)
    acts = Activations.open(tmp_path / "s")
    X = acts["resid.2"]
    assert X.dtype == store_dtype
    p_half = LogisticProbe().fit(X[:, None], labels)
    p_f32 = LogisticProbe().fit(X.float()[:, None], labels)
    assert p_half.coef_.dtype == torch.float32
    torch.testing.assert_close(p_half.coef_, p_f32.coef_, rtol=0, atol=0)  # upcast first, then fit
    h1 = head_accuracy_matrix(acts, seed=0)
    h2 = head_accuracy_matrix(acts.stack("heads").float(), torch.tensor(labels), seed=0)
    assert h1.probe.coef_.dtype == torch.float32
    torch.testing.assert_close(h1.accuracy, h2.accuracy, rtol=0, atol=0)
    torch.testing.assert_close(h1.probe.coef_, h2.probe.coef_, rtol=0, atol=0)


# ------------------------------------------------------------------------------------ ITI and steering
def _random_iv(arch, k=6, alpha=8.0, seed=0) -> Intervention:
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(arch.n_layers * arch.n_heads, generator=g)[:k].tolist()
    heads = [(i // arch.n_heads, i % arch.n_heads) for i in flat]
    dirs = torch.nn.functional.normalize(torch.randn(k, arch.head_dim, generator=g), dim=-1)
    return Intervention(heads, dirs, torch.full((k,), 1.0), alpha, arch.n_layers, arch.n_heads, arch.head_dim)


@torch.no_grad()
def _logits(model, lm):
    return model(input_ids=lm.tokenizer(TEXTS[-1], return_tensors="pt")["input_ids"]).logits.float()


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_iti_applies_in_model_dtype_and_bakes(name, dtype, tmp_path):
    lm = _lm(name, dtype)
    iv = _random_iv(lm.arch)
    seen = []
    layer = iv.heads[0][0]
    h = lm.arch.attn_out(lm.model, layer).register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    try:
        with apply(lm, iv, positions="all"):
            hooks = _logits(lm.model, lm)
    finally:
        h.remove()
    assert seen and all(d == dtype for d in seen)  # the shifted o_proj input stays in the model's dtype
    plain = _logits(lm.model, lm)
    tol = relative_tolerance(dtype, lm.arch.n_layers)
    assert relative_error(hooks, plain) > 5 * tol  # the intervention does something measurable
    folder = bake(lm, iv, tmp_path / "baked")
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    assert next(baked.parameters()).dtype == dtype
    assert relative_error(_logits(baked, lm), hooks) <= tol
    # and the half-precision hooks stay within tolerance of the float32 hooks
    ref = _lm(name, torch.float32)
    with apply(ref, iv, positions="all"):
        hooks32 = _logits(ref.model, ref)
    assert relative_error(hooks, hooks32) <= tol


@pytest.mark.parametrize("name", TINY)
def test_residual_steering_bf16_applies_and_bakes(name, tmp_path):
    from veracity.steer.residual import NotBakeable, ResidualSteer, apply_residual, bake_residual

    dtype = torch.bfloat16
    lm = _lm(name, dtype)
    g = torch.Generator().manual_seed(1)
    steer = ResidualSteer([1, 2], torch.randn(2, lm.arch.hidden_size, generator=g), alpha=2.0)
    seen = []
    h = lm.arch.layer(lm.model, 2).register_forward_hook(lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).dtype))
    try:
        with apply_residual(lm, steer, positions="all"):
            hooks = _logits(lm.model, lm)
    finally:
        h.remove()
    assert seen == [dtype]
    tol = relative_tolerance(dtype, lm.arch.n_layers)
    assert relative_error(hooks, _logits(lm.model, lm)) > 5 * tol
    try:
        folder = bake_residual(lm, steer, tmp_path / "baked")
    except NotBakeable:
        assert name == "tiny-gemma3"  # a post-feed-forward norm: no exact bias exists (documented)
        return
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
    assert relative_error(_logits(baked, lm), hooks) <= tol


# -------------------------------------------------------------------------------------- speculative
@torch.no_grad()
def _margin_at_divergence(lm, prompt, a, b) -> tuple[float, float]:
    j = next(k for k in range(min(len(a), len(b))) if a[k] != b[k])
    lo = lm.model(input_ids=torch.tensor([list(prompt) + a[:j]])).logits[0, -1].float()
    top = lo.topk(2).values
    return float(top[0] - top[1]), float(lo.abs().max())


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_speculative_greedy_equals_plain_greedy(name, dtype, data_dir):
    from veracity.compare.speculative import generate
    from veracity.data import load_truthfulqa
    from veracity.evaluate.generation import generate_greedy

    prompts = [it.question for it in load_truthfulqa(data_dir)[:8]]
    lm = _lm(name, dtype)
    asst = load(name, dtype=dtype, device="cpu", seed=1)
    enc = [lm.tokenizer(p)["input_ids"] for p in prompts]
    spec = generate(lm, asst, prompts, gamma=4, batch_size=8, max_new_tokens=10)
    plain = generate_greedy(lm, enc, max_new_tokens=10, batch_size=1)
    eos = lm.tokenizer.eos_token_id
    diverged = 0
    for e, r, p in zip(enc, spec, plain):
        t = r.tokens[:r.tokens.index(eos)] if eos in r.tokens else r.tokens
        if t == p:
            continue
        assert dtype != torch.float32, "float32 speculative greedy must equal plain greedy exactly"
        margin, scale = _margin_at_divergence(lm, e, p, t)
        # bf16 logits are rounded differently by a block-of-drafts forward and a one-token forward:
        # only a top-2 margin inside that rounding error may flip
        assert margin <= relative_tolerance(dtype, lm.arch.n_layers) * scale, (name, margin, scale)
        diverged += 1
    assert diverged <= 2  # near-ties are rare


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_model_dtype(tmp_path, tiny_llama, cli):
    import json

    cli(["capture", "--model", "tiny-llama", "--model-dtype", "bfloat16", "--dataset", "synthetic", "--limit", "6",
         "--device", "cpu", "--dtype", "bfloat16", "--out", str(tmp_path / "s")])
    man = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert man["run_config"]["model_dtype"] == "bfloat16" and man["dtype"] == "bfloat16"
    assert man["model"]["fingerprint"] != tiny_llama.fingerprint  # bf16 weights
    cli(["iti", "fit", "--model", "tiny-llama", "--model-dtype", "bfloat16", "--limit", "6", "--num-heads", "2",
         "--acts", str(tmp_path / "acts"), "--device", "cpu", "--out", str(tmp_path / "iv")])
    assert json.loads((tmp_path / "acts" / "manifest.json").read_text())["model"]["fingerprint"] == \
        man["model"]["fingerprint"]  # the heads were captured from the bf16 model
    for cmd in (["capture", "--model", "tiny-llama"], ["eval", "truthfulqa", "--model", "tiny-llama"],
                ["iti", "validate", "--model", "tiny-llama"]):
        assert "int3" in cli(cmd + ["--model-dtype", "int3", "--out", str(tmp_path / "x")], code=2)
        assert not (tmp_path / "x").exists()
