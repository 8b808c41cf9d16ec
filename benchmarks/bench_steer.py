"""Greedy generation speed under every registered steering method's hooks, against plain generation (smollm2).

Each family in `veracity.methods.STEERS` (so a method registered later is timed with no edit here) is fitted
by `prepare_method` on the first `--train` TruthfulQA questions (its activations are captured once into the
veracity cache), then generates `--tokens` new tokens under its "generate" phase hooks
(`Steer.factory(lm)("generate")`, what every study's generation uses). Plain and steered runs are interleaved,
`--repeats` rounds with the order reversed every other round, and each keeps its best round: on a shared CPU
the best round is the least disturbed one. Prints one JSON object: per method the tokens/s ratio steered /
plain of the best rounds (target >= 0.95) and the median over rounds of each round's own ratio (the machine's
speed drifts between rounds; within one round it barely does), every round's seconds, its fit seconds, and
whether the steered tokens differ from the plain ones (a steer at its default strength that changes nothing is
suspicious, not fast).

    python benchmarks/bench_steer.py --data-dir ../shared/data [--model smollm2] [--methods caa,lat] [--tokens 64]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--methods", default=None, help="comma-separated registered steers (default: all)")
    ap.add_argument("--train", type=int, default=40, help="TruthfulQA questions the steers are fitted on")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from veracity.data import load_truthfulqa
    from veracity.methods import STEERS, MethodSettings, parse_method, prepare_method
    from veracity.models import load

    lm = load(args.model, device="cpu")
    names = args.methods.split(",") if args.methods else sorted(STEERS)
    items = load_truthfulqa(args.data_dir)[: args.train + 1]
    train, test = items[: args.train], [items[-1].index]
    steers, fit_s = {}, {}
    for name in names:
        t0 = time.perf_counter()
        pm = prepare_method(parse_method(name), lm, train, test, MethodSettings(), data_dir=args.data_dir,
                            limit=len(items))
        fit_s[name] = time.perf_counter() - t0
        steers[name] = pm.factory()

    tok = lm.tokenizer
    enc = tok(["Q: What happens to you if you eat watermelon seeds?\nA:"] * args.batch, return_tensors="pt",
              padding=True)
    gen_kw = dict(max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                  pad_token_id=tok.pad_token_id, eos_token_id=None)

    def run(name: str) -> tuple[float, list]:
        ctx = steers[name]("generate") if name != "plain" else contextlib.nullcontext()
        t0 = time.perf_counter()
        with torch.no_grad(), ctx:
            out = lm.model.generate(**enc, **gen_kw)
        dt = time.perf_counter() - t0
        assert out.shape[1] - enc["input_ids"].shape[1] == args.tokens
        return dt, out[:, enc["input_ids"].shape[1]:].tolist()

    kinds = ["plain", *names]
    tokens = {k: run(k)[1] for k in kinds}  # warm-up, and each variant's tokens
    rounds: dict = {k: [] for k in kinds}
    for r in range(args.repeats):
        for k in (kinds if r % 2 == 0 else kinds[::-1]):
            rounds[k].append(run(k)[0])
    best = {k: min(v) for k, v in rounds.items()}
    n_tok = args.tokens * args.batch
    tps = {k: n_tok / v for k, v in best.items()}
    # the machine's speed drifts between rounds: the speed ratio within each round (plain and steered seconds
    # apart), its median over rounds, next to the best rounds' ratio
    per_round = {k: [p / s for p, s in zip(rounds["plain"], rounds[k])] for k in names}
    print(json.dumps({
        "ratio": {k: tps[k] / tps["plain"] for k in names},
        "median_round_ratio": {k: statistics.median(v) for k, v in per_round.items()},
        "seconds_per_round": rounds,
        "target": 0.95,
        "tokens_per_s": tps,
        "fit_seconds": fit_s,
        "changes_tokens": {k: tokens[k] != tokens["plain"] for k in names},
        "model": args.model, "train_questions": args.train, "new_tokens": args.tokens, "batch": args.batch,
        "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
    }, indent=2))


if __name__ == "__main__":
    main()
