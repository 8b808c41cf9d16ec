"""Memory bounds: `AutoBatch` halves a batch that runs out of memory, remembers the size, and the three
batched jobs (capture, MC scoring, greedy generation) finish with the results of an unconstrained run.

Out-of-memory is simulated by a forward pre-hook on decoder layer 0 that raises torch's OutOfMemoryError
(or a RuntimeError saying "out of memory", as older torch and other backends do) for any batch wider than
a limit: the device's memory, as seen by the job.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from veracity.capture import capture
from veracity.evaluate.generation import generate_greedy
from veracity.evaluate.truthfulqa import make_requests, score_requests
from veracity.models.batching import AutoBatch, as_batcher, is_oom, parse_batch_size

TEXTS = [f"Statement {i}: the {'red ' * (i % 5)}sky is {'blue' if i % 2 else 'green'}." for i in range(11)]


@contextlib.contextmanager
def memory_limit(lm, max_rows: int, error: str = "torch"):
    """Every forward with more than `max_rows` rows fails as if the device ran out of memory."""
    seen: list[int] = []

    def pre(mod, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        seen.append(h.shape[0])
        if h.shape[0] > max_rows:
            if error == "torch":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            raise RuntimeError("[enforce fail] DefaultCPUAllocator: not enough memory: out of memory (simulated)")
    h = lm.arch.layer(lm.model, 0).register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield seen
    finally:
        h.remove()


def test_autobatch_halves_remembers_and_keeps_order():
    calls: list[list[int]] = []

    def fn(chunk):
        if len(chunk) > 3:
            raise torch.OutOfMemoryError("out of memory")
        calls.append(chunk)

    b = AutoBatch(8)
    b.map(list(range(20)), fn)
    assert [x for c in calls for x in c] == list(range(20))  # every item once, in order
    assert b.size == 2 and b.history == [8, 4]  # 8 -> 4 -> 2, then 2 kept for every later chunk
    assert all(len(c) <= 2 for c in calls)
    b.map(list(range(5)), fn)  # a later call starts at the remembered size: no new failure
    assert b.history == [8, 4]
    assert as_batcher(b) is b


def test_autobatch_reraises_other_errors_and_oom_at_one():
    def bad(chunk):
        raise ValueError("not memory")

    with pytest.raises(ValueError):
        AutoBatch(4).map([1, 2, 3], bad)

    def always(chunk):
        raise torch.OutOfMemoryError("out of memory")

    b = AutoBatch(4)
    with pytest.raises(torch.OutOfMemoryError):
        b.map([1, 2, 3], always)
    assert b.history == [3]  # tried the whole list (3), then 1 item, which failed too and was raised


def test_is_oom_and_parse():
    assert is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))
    assert parse_batch_size("auto") == "auto" and parse_batch_size("12") == 12 and parse_batch_size(3) == 3
    for bad in ("0", "-2", "big", 0):
        with pytest.raises(ValueError):
            parse_batch_size(bad)
    assert AutoBatch("auto", "cpu").size == 16 and AutoBatch("auto", "cuda").size == 128
    with pytest.raises(ValueError):
        AutoBatch(0)


@pytest.mark.parametrize("error", ["torch", "runtime"])
def test_capture_finishes_after_oom(tiny_llama, error):
    ref = capture(tiny_llama, TEXTS, "resid,heads.1", positions="mean", batch_size=8, dtype=torch.float32,
                  progress=False)
    b = AutoBatch(8)
    with memory_limit(tiny_llama, 3, error) as seen:
        got = capture(tiny_llama, TEXTS, "resid,heads.1", positions="mean", batch_size=b, dtype=torch.float32,
                      progress=False)
    assert seen[:2] == [8, 4] and sum(s for s in seen if s <= 3) == len(TEXTS) and b.size == 2
    for k in ref.sites:
        # smaller batches pad to other lengths; the real tokens' values agree to float32 round-off
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-5)


def test_mc_scoring_finishes_after_oom(tiny_llama):
    tok = tiny_llama.tokenizer
    conts = [" yes", " no", " maybe so", " perhaps not at all", " x", " it is blue", " the sky", " green"]
    reqs = make_requests(tok, "Q: Is the sky blue?\nA:", conts, "lm-eval")
    ref = score_requests(tiny_llama.model, reqs, batch_size=8, pad_id=tok.pad_token_id)
    b = AutoBatch(8)
    with memory_limit(tiny_llama, 3) as seen:
        got = score_requests(tiny_llama.model, reqs, batch_size=b, pad_id=tok.pad_token_id)
    assert 8 in seen and b.history == [8, 4] and b.size == 2
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_generation_finishes_after_oom(tiny_llama):
    enc = [tiny_llama.tokenizer(t)["input_ids"] for t in TEXTS[:7]]
    ref = generate_greedy(tiny_llama, enc, max_new_tokens=6, batch_size=8)
    b = AutoBatch(8)
    with memory_limit(tiny_llama, 2) as seen:
        got = generate_greedy(tiny_llama, enc, max_new_tokens=6, batch_size=b)
    assert seen[0] == 7 and b.history == [7, 3] and b.size == 1
    assert got == ref  # greedy tokens identical


def test_cli_batch_size_auto_and_bad(tmp_path, cli):
    cli(["capture", "--model", "tiny-llama", "--dataset", "synthetic", "--limit", "6", "--batch-size", "auto",
         "--device", "cpu", "--out", str(tmp_path / "s")])
    assert "--batch-size" in cli(["capture", "--model", "tiny-llama", "--batch-size", "lots",
                                  "--out", str(tmp_path / "t")], code=2)
    assert not (tmp_path / "t").exists()
