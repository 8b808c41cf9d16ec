"""Greedy generation speed with ITI: hooks vs plain, baked vs plain (smollm2).

Prints one JSON object with top-level keys `ratio_hooks` (tokens/s with the hook intervention over
plain) and `ratio_baked` (tokens/s of the baked folder over plain); targets >= 0.90 and >= 0.98.
Speed does not depend on the directions' values, so the intervention is K random heads (seeded,
spread over layers like a fitted one) unless --intervention gives a fitted one. The three variants
run interleaved, `--repeats` rounds, with the order reversed every other round (so none always runs
first or last), and the best time of each is kept: on a shared CPU the best round is the least
disturbed one. Round-to-round noise here is about +-5%, so five rounds could leave a 3% gap between
two identical models; the default is 12.

    python benchmarks/bench_iti.py [--model smollm2] [--k 48] [--tokens 64] [--repeats 12]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--k", type=int, default=48)
    ap.add_argument("--alpha", type=float, default=15.0)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--intervention", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from veracity.models import load
    from veracity.steer import Intervention, apply, bake

    lm = load(args.model, device="cpu")
    a = lm.arch
    if args.intervention:
        iv = Intervention.load(args.intervention).with_alpha(args.alpha)
    else:
        g = torch.Generator().manual_seed(args.seed)
        flat = torch.randperm(a.n_layers * a.n_heads, generator=g)[: args.k].tolist()
        heads = [(i // a.n_heads, i % a.n_heads) for i in flat]
        iv = Intervention(heads, torch.nn.functional.normalize(torch.randn(len(heads), a.head_dim, generator=g), dim=-1),
                          torch.full((len(heads),), 0.5), args.alpha, a.n_layers, a.n_heads, a.head_dim,
                          provenance={"bench": "random heads"})
    tok = lm.tokenizer
    prompts = ["Q: What happens to you if you eat watermelon seeds?\nA:"] * args.batch
    enc = tok(prompts, return_tensors="pt", padding=True)
    gen_kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=None)
    with tempfile.TemporaryDirectory() as td:
        # Plain and baked are written and loaded the same way (save, sync, from_pretrained), so they
        # differ only by the bake: each has its own copy of the weights in the same kind of memory.
        # Timing `lm.model` against a file written seconds earlier measured page-cache writeback too.
        lm.model.save_pretrained(f"{td}/plain")
        bake(lm, iv, f"{td}/baked")
        os.sync()
        plain = AutoModelForCausalLM.from_pretrained(f"{td}/plain", dtype=lm.dtype).eval()
        baked = AutoModelForCausalLM.from_pretrained(f"{td}/baked", dtype=lm.dtype).eval()

        def run(kind: str) -> float:
            m = baked if kind == "baked" else plain
            t0 = time.perf_counter()
            with torch.no_grad():
                if kind == "hooks":
                    with apply(plain, iv, positions="last"):
                        out = m.generate(**enc, **gen_kw)
                else:
                    out = m.generate(**enc, **gen_kw)
            dt = time.perf_counter() - t0
            assert out.shape[1] - enc["input_ids"].shape[1] == args.tokens
            return dt

        for kind in ("plain", "hooks", "baked"):  # warm-up
            run(kind)
        best = {"plain": float("inf"), "hooks": float("inf"), "baked": float("inf")}
        times: dict[str, list[float]] = {k: [] for k in best}
        for r in range(args.repeats):
            order = ("plain", "hooks", "baked") if r % 2 == 0 else ("baked", "hooks", "plain")
            for kind in order:
                dt = run(kind)
                times[kind].append(dt)
                best[kind] = min(best[kind], dt)
    n_tok = args.tokens * args.batch
    tps = {k: n_tok / v for k, v in best.items()}
    print(json.dumps({
        "ratio_hooks": tps["hooks"] / tps["plain"],
        "ratio_baked": tps["baked"] / tps["plain"],
        "tokens_per_s": tps,
        "seconds_all_rounds": times,
        "model": args.model, "k": iv.k, "layers_hooked": len(iv.layers), "alpha": iv.alpha,
        "new_tokens": args.tokens, "batch": args.batch, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "positions": "last",
    }, indent=2))


if __name__ == "__main__":
    main()
