"""Residual steering: fits against hand/numpy computations, hooks against output_hidden_states, bake == hooks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from veracity.models import load
from veracity.steer.residual import (NotBakeable, ResidualSteer, apply_residual, bake_residual,
                                     baked_residual_state_dict, fit_contrast_pairs, fit_diff_means, fit_lat,
                                     lat_differences, lat_signs, pair_by_group, verify_residual_baked)

TEXTS = ["Q: What happens if you swallow gum? A: It passes through you.", "Q: Hi? A: No."]


# ------------------------------------------------------------------------------------------ fitting

def test_diff_means_hand_computed():
    # layer 0: true rows (1, 2), (3, 4); false rows (0, 0), (1, 0): mean diff = (2, 3) - (0.5, 0) = (1.5, 3)
    X0 = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    X1 = X0 * 2
    y = [1, 0, 1, 0]
    st = fit_diff_means({0: X0, 3: X1}, y)
    assert st.layers == [0, 3] and st.method == "caa"
    torch.testing.assert_close(st.vectors[0], torch.tensor([1.5, 3.0]))
    torch.testing.assert_close(st.vectors[1], torch.tensor([3.0, 6.0]))
    # the same from a [N, L, D] tensor with absolute layer ids on axis 1, picking one layer
    st2 = fit_diff_means(torch.stack([X0, X1], 1), y, layers=[3], act_layers=[0, 3])
    assert st2.layers == [3]
    torch.testing.assert_close(st2.vectors[0], torch.tensor([3.0, 6.0]))
    # unit and sigma scalings: u = (1.5, 3)/|.|; sigma = population std of X0 @ u
    u = torch.tensor([1.5, 3.0]) / torch.tensor([1.5, 3.0]).norm()
    unit = fit_diff_means({0: X0}, y, normalize="unit")
    torch.testing.assert_close(unit.vectors[0], u)
    sig = fit_diff_means({0: X0}, y, normalize="sigma")
    proj = (X0 @ u).numpy()
    torch.testing.assert_close(sig.vectors[0], u * float(np.std(proj)))
    assert sig.provenance["normalize"] == "sigma"


def test_contrast_pairs_mean_of_differences():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    st = fit_contrast_pairs({2: torch.tensor(P)}, {2: torch.tensor(Q)})
    np.testing.assert_allclose(st.vectors[0].numpy(), (P - Q).mean(0), rtol=1e-6, atol=1e-6)


def test_lat_is_first_pc_of_signed_centred_differences_vs_numpy():
    rng = np.random.default_rng(1)
    n, d = 80, 6
    truth = rng.normal(size=d)
    truth /= np.linalg.norm(truth)
    base = rng.normal(size=(n, d))
    P = base + 2.0 * truth + 0.3 * rng.normal(size=(n, d))
    Q = base - 0.0 * truth + 0.3 * rng.normal(size=(n, d))
    st = fit_lat(torch.tensor(P), torch.tensor(Q), seed=3, normalize="unit", act_layers=[5])
    assert st.layers == [5] and st.method == "lat"
    # numpy reference: RepE convention, random pair order from the documented signs, centred, top right sv
    s = lat_signs(n, 3).numpy()
    assert set(np.unique(s)) == {-1.0, 1.0}
    Dm = (P - Q) * s[:, None]
    np.testing.assert_allclose(lat_differences(torch.tensor(P), torch.tensor(Q), 3).numpy(), Dm)
    _, _, Vt = np.linalg.svd(Dm - Dm.mean(0), full_matrices=False)
    v = Vt[0] * np.sign(((P - Q) @ Vt[0]).mean())  # sign: true (pos) projects higher
    np.testing.assert_allclose(st.vectors[0].numpy(), v, atol=1e-6)
    assert abs(float(v @ truth)) > 0.95
    assert float(((P - Q) @ st.vectors[0].double().numpy()).mean()) > 0
    # raw scale: the unit direction times the mean paired difference along it
    raw = fit_lat(torch.tensor(P), torch.tensor(Q), seed=3)
    np.testing.assert_allclose(raw.vectors[0].numpy(), v * float((P - Q).mean(0) @ v), atol=1e-5)


def test_fit_errors_are_clear():
    X = torch.randn(4, 3)
    with pytest.raises(ValueError, match="both classes"):
        fit_diff_means({0: X}, [1, 1, 1, 1])
    with pytest.raises(ValueError, match="labels"):
        fit_diff_means({0: X}, [1, 0, 1])
    with pytest.raises(KeyError, match="no activations for layers"):
        fit_diff_means({0: X}, [1, 0, 1, 0], layers=[2])
    with pytest.raises(ValueError, match="normalize"):
        fit_diff_means({0: X}, [1, 0, 1, 0], normalize="l2")
    with pytest.raises(ValueError, match="differ in shape"):
        fit_lat({0: X}, {0: X[:3]})


def test_pair_by_group():
    y = [1, 0, 0, 1, 1, 0, 1]
    g = ["a", "a", "a", "b", "b", "b", "c"]
    pos, neg = pair_by_group(y, g, seed=0)
    assert len(pos) == 2  # a: 1 true, 2 false -> 1 pair; b: 2 true, 1 false -> 1 pair; c: no false -> none
    pos, neg = pos.tolist(), neg.tolist()
    assert all(y[i] == 1 for i in pos) and all(y[j] == 0 for j in neg)
    assert all(g[i] == g[j] for i, j in zip(pos, neg))
    assert len(set(pos)) == len(pos) and len(set(neg)) == len(neg)


def test_save_load_roundtrip(tmp_path):
    st = ResidualSteer([1, 3], torch.randn(2, 8), alpha=2.5, method="lat", provenance={"seed": 4, "data": "x"})
    js = st.save(tmp_path / "s")
    assert js.name == "s.json" and (tmp_path / "s.safetensors").exists()
    assert json.loads(js.read_text())["format"] == "veracity-residual-steer"
    back = ResidualSteer.load(tmp_path / "s.json")
    assert back.layers == [1, 3] and back.alpha == 2.5 and back.method == "lat" and back.provenance == st.provenance
    assert torch.equal(back.vectors, st.vectors)
    sh = back.with_alpha(-1.0).shifts()
    torch.testing.assert_close(sh[3], -st.vectors[1])
    assert back.alpha == 2.5  # with_alpha does not mutate


# ------------------------------------------------------------------------------------------ hooks

def _steer(lm, layers=(1,), alpha=3.0, seed=0) -> ResidualSteer:
    g = torch.Generator().manual_seed(seed)
    return ResidualSteer(list(layers), torch.randn(len(layers), lm.arch.hidden_size, generator=g), alpha=alpha)


def _layer_outputs(lm, ids, **kw):
    """Output of every decoder layer captured with forward hooks (hidden_states[-1] is after the final norm)."""
    outs, hs = {}, []
    for i in range(lm.arch.n_layers):
        hs.append(lm.arch.layer(lm.model, i).register_forward_hook(
            lambda m, a, o, i=i: outs.__setitem__(i, (o[0] if isinstance(o, tuple) else o).detach().clone())))
    try:
        with torch.no_grad():
            lm.model(input_ids=ids, output_hidden_states=True, **kw)
    finally:
        for h in hs:
            h.remove()
    return outs


@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-gemma3", "tiny-gpt2", "tiny-qwen2"])
def test_hook_shifts_exactly_the_chosen_layer(alias):
    lm = load(alias, device="cpu")
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    st = _steer(lm, layers=(1,))
    with torch.no_grad():
        base = lm.model(input_ids=ids, output_hidden_states=True).hidden_states  # unhooked reference
    n_hooks = sum(len(m._forward_hooks) for m in lm.model.modules())
    with apply_residual(lm, st):
        assert sum(len(m._forward_hooks) for m in lm.model.modules()) == n_hooks + 1
        # read each layer's output with hooks registered after ours (transformers 5 records
        # output_hidden_states before later forward hooks run, so it does not see the shift itself)
        got = _layer_outputs(lm, ids)
    # hidden_states[i + 1] is the output of layer i (i < last): layer 0 unchanged, layer 1 shifted by alpha * v
    torch.testing.assert_close(got[0], base[1])
    torch.testing.assert_close(got[1] - base[2], (3.0 * st.vectors[0]).expand_as(base[2]), atol=1e-5, rtol=0)
    assert (got[2] - base[3]).abs().max() > 1e-3  # later layers see it
    # no hooks left behind
    assert sum(len(m._forward_hooks) for m in lm.model.modules()) == n_hooks


def test_hook_last_position_only_and_padding(tiny_llama):
    lm = tiny_llama
    tok = lm.tokenizer
    st = _steer(lm, layers=(2,))
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    base = _layer_outputs(lm, enc["input_ids"], attention_mask=enc["attention_mask"])
    with apply_residual(lm, st, positions="last"):
        got = _layer_outputs(lm, enc["input_ids"], attention_mask=enc["attention_mask"])
    d = got[2] - base[2]
    last = enc["attention_mask"].sum(1) - 1
    for r in range(2):
        torch.testing.assert_close(d[r, last[r]], 3.0 * st.vectors[0], atol=1e-5, rtol=0)
        others = torch.ones(d.shape[1], dtype=torch.bool)
        others[last[r]] = False
        assert d[r, others].abs().max() == 0


def test_hook_removed_on_error_and_model_untouched():
    # its own copy, not the session's tiny_llama: it counts every forward hook, and transformers keeps the
    # hooks it adds on a model's first output_hidden_states forward
    lm = load("tiny-llama", device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    st = _steer(lm, layers=(0, 3))
    with pytest.raises(RuntimeError, match="boom"):
        with apply_residual(lm, st):
            raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in lm.model.modules())
    after = lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_hook_refuses_wrong_model(tiny_llama):
    lm = tiny_llama
    with pytest.raises(ValueError, match="hidden size"):
        with apply_residual(lm, ResidualSteer([0], torch.randn(1, 32))):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with apply_residual(lm, ResidualSteer([9], torch.randn(1, 64))):
            pass
    with pytest.raises(ValueError, match="fingerprint"):
        with apply_residual(lm, ResidualSteer([0], torch.randn(1, 64), provenance={"model_fingerprint": "0" * 16})):
            pass


# ------------------------------------------------------------------------------------------ bake

@pytest.mark.parametrize("alias", ["tiny-llama", "tiny-qwen2", "tiny-gpt2"])
def test_baked_equals_hooks(alias, tmp_path):
    from transformers import AutoModelForCausalLM

    lm = load(alias, device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    st = _steer(lm, layers=(0, 2, 3), alpha=2.0)
    out = bake_residual(lm, st, tmp_path / "baked")
    after = lm.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert verify_residual_baked(lm, st, out, texts=TEXTS, atol=1e-4) <= 1e-4
    baked = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    enc = lm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        with apply_residual(lm, st, positions="all"):
            a = lm.model(**enc).logits
        b = baked(**enc).logits
        plain = lm.model(**enc).logits
    m = enc["attention_mask"].bool()
    assert (a[m] - b[m]).abs().max() < 1e-4
    assert (a[m] - plain[m]).abs().max() > 1e-2  # the steer does something
    assert ResidualSteer.load(out / "veracity_steer").layers == [0, 2, 3]
    assert json.loads((out / "veracity_bake.json").read_text())["kind"] == "residual"


def test_llama_bake_is_a_down_proj_bias_and_zero_gate_up_biases(tiny_llama):
    lm = tiny_llama
    st = _steer(lm, layers=(1, 3), alpha=-1.5)
    sd, cfg, how = baked_residual_state_dict(lm, st)
    assert how == "mlp_bias" and cfg.mlp_bias and not getattr(cfg, "attention_bias", False)
    for i in range(lm.arch.n_layers):
        want = -1.5 * st.vectors[st.layers.index(i)] if i in st.layers else torch.zeros(lm.arch.hidden_size)
        torch.testing.assert_close(sd[f"model.layers.{i}.mlp.down_proj.bias"], want)
        for p in ("gate", "up"):
            assert sd[f"model.layers.{i}.mlp.{p}_proj.bias"].abs().max() == 0
    assert lm.model.config.mlp_bias is False  # the original config is untouched


def test_qwen2_bake_keeps_qkv_biases():
    lm = load("tiny-qwen2", device="cpu")
    sd, cfg, how = baked_residual_state_dict(lm, _steer(lm))
    assert how == "qwen2->llama mlp_bias" and cfg.model_type == "llama" and cfg.attention_bias
    orig = lm.model.state_dict()
    torch.testing.assert_close(sd["model.layers.0.self_attn.q_proj.bias"], orig["model.layers.0.self_attn.q_proj.bias"])
    assert sd["model.layers.0.self_attn.o_proj.bias"].abs().max() == 0


def test_gemma3_and_unknown_refused_clearly(tmp_path):
    lm = load("tiny-gemma3", device="cpu")
    with pytest.raises(NotBakeable, match="post-feedforward"):
        bake_residual(lm, _steer(lm), tmp_path / "g")
    assert not (tmp_path / "g").exists()  # nothing written


def test_baked_residual_loads_without_veracity(tmp_path, tiny_llama):
    lm = tiny_llama
    st = _steer(lm, layers=(1, 2))
    bake_residual(lm, st, tmp_path / "baked")
    ids = lm.tokenizer(TEXTS[0])["input_ids"]
    code = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'baked')!r}, dtype=torch.float32)\n"
        f"out = m(input_ids=torch.tensor([{ids}])).logits[0, -1].tolist()\n"
        "assert not any(k.startswith('veracity') for k in sys.modules)\n"
        "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    got = torch.tensor(json.loads(res.stdout.strip().splitlines()[-1]))
    with torch.no_grad(), apply_residual(lm, st, positions="all"):
        want = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert (got - want).abs().max() < 1e-4


def test_fit_then_steer_moves_the_truth_projection(tiny_llama):
    """End to end on tiny-llama: CAA fitted on two prompt sets pushes layer-2 outputs along v."""
    lm = tiny_llama
    tok = lm.tokenizer
    true_t, false_t = ["Paris is in France.", "Rome is in Italy."], ["Paris is in Peru.", "Rome is in Chad."]
    acts = {}
    for i, t in enumerate(true_t + false_t):
        outs = _layer_outputs(lm, tok(t, return_tensors="pt")["input_ids"])
        for l in (1, 2):
            acts.setdefault(l, []).append(outs[l][0, -1])
    acts = {l: torch.stack(v) for l, v in acts.items()}
    st = fit_diff_means(acts, [1, 1, 0, 0], layers=[2])
    torch.testing.assert_close(st.vectors[0], acts[2][:2].mean(0) - acts[2][2:].mean(0))


def _hand_residual(lm, shifts: dict, module="layer", last_only=False):
    """Forward hooks written here, for one unpadded text: `shifts[l]` added to the output of decoder layer l
    (module="layer") or of its MLP (module="mlp": what a down_proj bias adds)."""
    handles = []
    for l, v in shifts.items():
        layer = lm.model.model.layers[l]

        def hook(m, args, out, v=v):
            h = (out[0] if isinstance(out, tuple) else out).clone()
            h[..., -1 if last_only else slice(None), :] += v
            return (h, *out[1:]) if isinstance(out, tuple) else h
        handles.append((layer.mlp if module == "mlp" else layer).register_forward_hook(hook))
    return handles


@pytest.mark.real
def test_real_model_residual_equals_hand_hooks_bake_exact_or_refused(real_lm, tmp_path):
    """Both real architectures: `apply_residual` == hand-written hooks (every position; the last real token
    of a left-padded batch == that token of each text alone). The bake is exact on smollm2 (a down_proj bias
    is the layer's last addition to the residual stream) and refused on Gemma 3, nothing written: there a
    post_feedforward_layernorm normalises what a down_proj bias adds, so it is not the residual shift (shown)."""
    import shutil

    from veracity.capture import pad_batch

    lm, a = real_lm, real_lm.arch
    g = torch.Generator().manual_seed(0)
    layers = [1, a.n_layers // 2, a.n_layers - 1]
    st = ResidualSteer(layers, torch.randn(len(layers), a.hidden_size, generator=g), alpha=2.0)
    shifts = {l: 2.0 * v for l, v in zip(layers, st.vectors)}
    ids = [lm.tokenizer(t)["input_ids"] for t in TEXTS]

    def each(hooks=()):
        try:
            return [lm.model(input_ids=torch.tensor([i])).logits[0] for i in ids]
        finally:
            for h in hooks:
                h.remove()

    with torch.no_grad():
        plain, hand = each(), each(_hand_residual(lm, shifts))
        hand_last = each(_hand_residual(lm, shifts, last_only=True))
        with apply_residual(lm, st, positions="all"):
            ours = each()
        x, m, p = pad_batch(ids, lm.tokenizer.pad_token_id, "left", "cpu")
        with apply_residual(lm, st, positions="last"):
            last = lm.model(input_ids=x, attention_mask=m, position_ids=p).logits[:, -1]
    for i in range(len(ids)):
        assert (ours[i] - hand[i]).abs().max() < 1e-4
        assert (ours[i] - plain[i]).abs().amax(-1).min() > 1e-3  # every position moved
        assert (last[i] - hand_last[i][-1]).abs().max() < 1e-4
    if a.model_type.startswith("gemma"):
        with pytest.raises(NotBakeable, match="post-feedforward"):
            bake_residual(lm, st, tmp_path / "baked")
        assert not (tmp_path / "baked").exists()
        with torch.no_grad():
            as_bias = each(_hand_residual(lm, shifts, module="mlp"))
        assert all((b - h).abs().max() > 1e-2 for b, h in zip(as_bias, hand))  # why: a bias would not be exact
        return
    bake_residual(lm, st, tmp_path / "baked")
    assert json.loads((tmp_path / "baked" / "config.json").read_text())["mlp_bias"] is True
    assert verify_residual_baked(lm, st, tmp_path / "baked", texts=TEXTS, atol=1e-4) <= 1e-4
    shutil.rmtree(tmp_path / "baked")  # ~0.5 GB of fp32 weights
