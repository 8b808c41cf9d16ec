"""Benchmark: TruthfulQA MC scoring, prefix-cached batched fast path vs one full forward per choice.

One run on `smollm2` over the first N questions (default 100). Prints JSON with top-level keys
`speedup` (reference seconds / fast seconds) and `max_abs_diff` (largest |score difference| over all
choices, nats). Targets: speedup >= 3, max_abs_diff <= 1e-4. Also `head_speedup`: the same fast path with the
LM head on every padded position (as before `models.scoring.head_at`) over the fast path as it runs, with
`head_max_abs_diff` between the two; the head matters most with a large vocabulary (Gemma-3: 262k tokens).

    python benchmarks/bench_mc.py [--n 100] [--protocol truthfulqa] [--model smollm2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--protocol", default="truthfulqa", choices=["truthfulqa", "lm-eval"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()

    from veracity.data.truthfulqa import load_truthfulqa
    from veracity.evaluate.truthfulqa import build_mc_question, make_requests, score_requests, \
        score_requests_reference, shared_prefix_for
    from veracity.models import load

    lm = load(args.model, device="cpu")
    items = load_truthfulqa(args.data_dir)[:args.n]
    reqs = []
    for it in items:
        q = build_mc_question(it, args.protocol)
        reqs.append(make_requests(lm.tokenizer, q.context, q.choices, args.protocol))
    n_choices = sum(len(r) for r in reqs)
    n_tokens = sum(len(p) + len(c) for r in reqs for p, c in r)

    # warm-up (allocator, kernels) on one question, outside the timings
    score_requests(lm.model, reqs[0], batch_size=args.batch_size)
    score_requests_reference(lm.model, reqs[0][:2])

    t0 = time.perf_counter()  # the fast path as score_mc runs it: the instruction + primer cached once
    shared = shared_prefix_for(lm.tokenizer, args.protocol)
    fast = [score_requests(lm.model, r, batch_size=args.batch_size, shared=shared) for r in reqs]
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = [score_requests_reference(lm.model, r) for r in reqs]
    t_slow = time.perf_counter() - t0
    import contextlib

    import veracity.models.scoring as scoring

    @contextlib.contextmanager
    def full_head(model, rows, cols):  # the head on every position: score_requests indexes the full logits
        yield [False]

    kept, scoring.head_at = scoring.head_at, full_head
    try:
        t0 = time.perf_counter()
        shared = shared_prefix_for(lm.tokenizer, args.protocol)
        whole = [score_requests(lm.model, r, batch_size=args.batch_size, shared=shared) for r in reqs]
        t_whole = time.perf_counter() - t0
    finally:
        scoring.head_at = kept
    head_diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(fast, whole))

    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(fast, slow))
    out = {"speedup": t_slow / t_fast, "max_abs_diff": diff, "fast_s": t_fast, "reference_s": t_slow,
           "head_speedup": t_whole / t_fast, "head_max_abs_diff": head_diff, "full_head_s": t_whole,
           "vocab": int(lm.model.get_output_embeddings().weight.shape[0]),
           "model": args.model, "protocol": args.protocol, "questions": len(items), "choices": n_choices,
           "reference_tokens": n_tokens, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine(),
           "targets": {"speedup": ">= 3", "max_abs_diff": "<= 1e-4"}}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
