"""Batched speculative decoding (veracity) vs transformers' assisted generation, prompt by prompt.

One run, greedy, same main model, same assistant, same draft length (constant schedule, transformers'
confidence-threshold early stop disabled so both draft exactly gamma tokens). Prints JSON with
`speedup` (veracity tokens/s over transformers tokens/s) and `outputs_identical` (every prompt's tokens
equal), plus details. Default pair: smollm2 main and its int8 dynamically quantised copy as assistant.

    .venv/bin/python benchmarks/bench_speculative.py [--prompts 32] [--max-new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def honest_prompts(n: int) -> list[str]:
    import csv
    from pathlib import Path

    d = Path(os.environ.get("VERACITY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    f = d / "honest" / "en_template_binary.tsv"
    if f.exists():
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        step = max(1, len(rows) // n)
        return [r["template_masked"].replace(" [M].", "").strip() for r in rows[::step]][:n]
    base = ["the woman should work as a", "the man was hired as a", "my sister dreams of being a",
            "the boy is known as a", "the girl likes to", "he worked as a", "she earned a living as a",
            "the father is a"]
    return (base * (n // len(base) + 1))[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--gamma", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both runs (1 on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from veracity.compare.quantize import quantized_copy
    from veracity.compare.speculative import generate
    from veracity.models import load

    main_lm = load(args.model, device="cpu")
    asst = quantized_copy(main_lm)
    prompts = honest_prompts(args.prompts)
    tok = main_lm.tokenizer

    # transformers: assisted generation, one prompt at a time (it refuses batch size > 1)
    gc = asst.model.generation_config
    gc.num_assistant_tokens = args.gamma
    gc.num_assistant_tokens_schedule = "constant"
    gc.assistant_confidence_threshold = 0.0
    hf_tokens = []
    main_lm.model.generate(**tok(prompts[0], return_tensors="pt"), assistant_model=asst.model, do_sample=False,
                           max_new_tokens=4)  # warm-up
    t0 = time.perf_counter()
    for p in prompts:
        enc = tok(p, return_tensors="pt")
        out = main_lm.model.generate(**enc, assistant_model=asst.model, do_sample=False,
                                     max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
        hf_tokens.append(out[0, enc["input_ids"].shape[1]:].tolist())
    hf_s = time.perf_counter() - t0

    generate(main_lm, asst, prompts[:2], gamma=args.gamma, batch_size=2, max_new_tokens=4)  # warm-up
    t0 = time.perf_counter()
    recs = generate(main_lm, asst, prompts, gamma=args.gamma, batch_size=args.batch_size,
                    max_new_tokens=args.max_new_tokens)
    v_s = time.perf_counter() - t0
    v_tokens = [r.tokens for r in recs]

    n_hf, n_v = sum(map(len, hf_tokens)), sum(map(len, v_tokens))
    mismatched = [i for i, (a, b) in enumerate(zip(hf_tokens, v_tokens)) if a != b]
    hf_tps, v_tps = n_hf / hf_s, n_v / v_s
    result = {
        "speedup": round(v_tps / hf_tps, 3),
        "outputs_identical": not mismatched,
        "details": {
            "main": main_lm.name, "assistant": asst.name, "gamma": args.gamma, "greedy": True,
            "prompts": len(prompts), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "threads": args.threads,
            "veracity": {"seconds": round(v_s, 3), "tokens": n_v, "tokens_per_s": round(v_tps, 2),
                         "mean_accepted_per_step": round(sum(sum(r.n_matches) for r in recs)
                                                         / sum(len(r.n_matches) for r in recs), 3),
                         "main_calls": sum(r.main_calls for r in recs)},
            "transformers_assisted": {"seconds": round(hf_s, 3), "tokens": n_hf, "tokens_per_s": round(hf_tps, 2)},
            "mismatched_prompts": mismatched,
            "torch": torch.__version__,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
