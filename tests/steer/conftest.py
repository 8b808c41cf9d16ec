"""Helpers of the steering tests, as fixtures: every decoder layer's output read with hooks of its own, seeded
labelled rows to fit on, a baked folder's logits from a process without veracity, a model's logits per text, a
steer's hooks checked against hand-written ones, and a small `veracity steer sweep`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch


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


def _labelled_rows(n, d, seed=0, gap=1.5, spread=None, offset=0.0):
    """(X [n, 1, d], y [n]) numpy: y alternates 0/1; X is standard normal (per-coordinate scales
    linspace(*spread, d) when given) plus `gap` times one random direction on the y = 1 rows, plus `offset`."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    scale = 1 if spread is None else np.linspace(*spread, d)
    X = rng.normal(size=(n, 1, d)) * scale + gap * y[:, None, None] * rng.normal(size=d) + offset
    return X, y


def _standalone_logits(folder, ids: list[int]) -> torch.Tensor:
    """The last position's logits of `ids` from `folder` loaded by plain transformers in a fresh process that never
    imports veracity (a baked folder must need nothing else)."""
    code = (
        "import sys, json, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}, dtype=torch.float32)\n"
        f"out = m(input_ids=torch.tensor([{ids}])).logits[0, -1].tolist()\n"
        "assert not any(k.startswith('veracity') for k in sys.modules)\n"
        "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    return torch.tensor(json.loads(res.stdout.strip().splitlines()[-1]))


def _logits_per_text(lm, ids: list[list[int]], hooks=()) -> list[torch.Tensor]:
    """Each unpadded text's logits [T, V], one forward each; `hooks` (handles) are removed afterwards."""
    try:
        return [lm.model(input_ids=torch.tensor([i])).logits[0] for i in ids]
    finally:
        for h in hooks:
            h.remove()


def _against_hand_hooks(lm, texts, hand, hooked):
    """A steer's hooks `hooked(positions)` (a context manager) against hand-written ones `hand(last_only)` (handles),
    on each unpadded text: with "all", every position equals the hand hooks and moved from the plain model; with
    "last" on a left-padded batch, each row's last logits equal the hand hooks' last token on that text alone.
    Returns (ids, then per text the logits of the plain model, of the hand hooks and of "all", then the batch's
    last-token logits with "last")."""
    from veracity.capture import pad_batch

    ids = [lm.tokenizer(t)["input_ids"] for t in texts]
    with torch.no_grad():
        plain = _logits_per_text(lm, ids)
        by_hand = _logits_per_text(lm, ids, hand(False))  # hooks registered only now: one set at a time
        by_hand_last = _logits_per_text(lm, ids, hand(True))
        with hooked("all"):
            ours = _logits_per_text(lm, ids)
        x, m, p = pad_batch(ids, lm.tokenizer.pad_token_id, "left", "cpu")
        with hooked("last"):
            last = lm.model(input_ids=x, attention_mask=m, position_ids=p).logits[:, -1]
    for i in range(len(ids)):
        assert (ours[i] - by_hand[i]).abs().max() < 1e-4
        assert (ours[i] - plain[i]).abs().amax(-1).min() > 1e-3  # every position moved
        assert (last[i] - by_hand_last[i][-1]).abs().max() < 1e-4
    return ids, plain, by_hand, ours, last


@pytest.fixture
def layer_outputs():
    """`layer_outputs(lm, ids, **forward_kwargs) -> {layer: output}`, read with hooks of its own (registered after
    any steer's, so they see the steered output)."""
    return _layer_outputs


@pytest.fixture
def labelled_rows():
    """`labelled_rows(n, d, seed=0, gap=1.5, spread=None, offset=0.0) -> (X [n, 1, d], y [n])`, seeded numpy rows."""
    return _labelled_rows


@pytest.fixture
def standalone_logits():
    """`standalone_logits(folder, ids) -> logits [V]` of the last position, from a process without veracity."""
    return _standalone_logits


@pytest.fixture
def against_hand_hooks():
    """`against_hand_hooks(lm, texts, hand, hooked) -> (ids, plain, by_hand, ours, last)`: a steer's hooks checked
    against hand-written ones, every position and the last real token of a left-padded batch."""
    return _against_hand_hooks


@pytest.fixture
def steer_sweep(cli, data_dir, tmp_path):
    """`steer_sweep(method, alphas) -> (printed text, results.json)`: `veracity steer sweep` of `method` at layer 1 on
    the tiny model, 6 questions, 2 folds, no side effects."""
    def run(method: str, alphas: str):
        out = tmp_path / "s"
        text = cli(["steer", "sweep", "--model", "tiny-llama", "--device", "cpu", "--data-dir", data_dir,
                    "--limit", "6", "--method", method, "--layers", "1", "--alphas", alphas, "--folds", "2",
                    "--ce-texts", "0", "--side-effects", "none", "--acts", tmp_path / "acts", "--out", out])
        return text, json.loads((out / "results.json").read_text())
    return run


@pytest.fixture
def logits_per_text():
    """`logits_per_text(lm, ids, hooks=()) -> [logits [T, V]]`, one forward per text, `hooks` removed after."""
    return _logits_per_text
