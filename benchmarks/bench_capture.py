"""Capture benchmark on smollm2 (one run, ratios measured against baselines in the same run).

- overhead: batched capture of every head and every residual layer at the last token, over a plain
  batched forward of the same batches (target <= 1.15);
- speedup: over the per-prompt loop with output_hidden_states=True used by reference research code
  (target >= 1.8 on a 2-core CPU);
- peak_rss_gib: peak RSS of a 5,000-row capture to a store, in a fresh process (target < model size + 1 GiB).

Usage: python benchmarks/bench_capture.py [--data-dir DIR] [--n 256] [--rss-rows 5000]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def rss_child(rows: int, out: str) -> None:
    from veracity.capture import capture_dataset
    from veracity.models import load

    lm = load("smollm2", device="cpu")
    model_bytes = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    ds = _synthetic(rows)
    capture_dataset(lm, ds, "heads,resid", out=out, batch_size=32, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(json.dumps({"peak_rss_gib": peak, "model_gib": model_bytes / 2**30}))


def _synthetic(rows: int):
    from veracity.data import TextDataset, load_synthetic

    st = load_synthetic(n=rows, seed=0)
    return TextDataset(name=f"synthetic-{rows}", texts=[s.text for s in st], labels=[s.label for s in st],
                       groups=[s.topic for s in st], meta=[{} for _ in st])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=os.environ.get("VERACITY_DATA"))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-rows", type=int, default=5000)
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_rows, args.rss_child)

    from veracity.capture import capture, pad_batch, tokenize
    from veracity.data import get_dataset
    from veracity.models import load

    lm = load("smollm2", device="cpu")
    # `limit` counts questions (all their choices kept): take the first n question-answer prompts
    texts = get_dataset("truthfulqa-mc2", data_dir=args.data_dir).texts[: args.n]
    ids = tokenize(lm.tokenizer, texts)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    pad = lm.tokenizer.pad_token_id
    batches = [pad_batch([ids[i] for i in order[b: b + args.batch_size]], pad, "right", "cpu")
               for b in range(0, len(order), args.batch_size)]

    @torch.inference_mode()
    def plain_forward():
        for input_ids, mask, pos in batches:
            lm.model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=False)

    def batched_capture():
        capture(lm, texts, "heads,resid", batch_size=args.batch_size, progress=False, padding_side="right")

    @torch.inference_mode()
    def per_prompt_loop():
        out = []
        for t in texts:
            enc = lm.tokenizer(t, return_tensors="pt")
            hs = lm.model(**enc, output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0, -1] for h in hs[1:]]).half())
        return out

    plain_forward(), batched_capture()  # warm-up
    t_plain = _time(plain_forward, args.repeats)
    t_cap = _time(batched_capture, args.repeats)
    t_loop = _time(per_prompt_loop, max(1, args.repeats - 1))

    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, __file__, "--rss-child", os.path.join(d, "store"),
                            "--rss-rows", str(args.rss_rows)], capture_output=True, text=True, check=True,
                           env={**os.environ, "VERACITY_DATA": args.data_dir or ""})
        rss = json.loads(r.stdout.strip().splitlines()[-1])

    print(json.dumps({
        "overhead": t_cap / t_plain,
        "speedup": t_loop / t_cap,
        "peak_rss_gib": rss["peak_rss_gib"],
        "targets": {"overhead": "<= 1.15", "speedup": ">= 1.8",
                    "peak_rss_gib": f"< {rss['model_gib'] + 1:.2f} (model {rss['model_gib']:.2f} GiB + 1)"},
        "details": {"model": "smollm2", "prompts": len(texts), "batch_size": args.batch_size,
                    "sites": "heads.* + resid.* (60 sites), last token", "seconds_plain_forward": t_plain,
                    "seconds_capture": t_cap, "seconds_per_prompt_loop": t_loop, "rss_rows": args.rss_rows,
                    "threads": torch.get_num_threads()},
    }, indent=2))


if __name__ == "__main__":
    main()
