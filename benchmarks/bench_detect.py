"""Detector scoring of N sampled answers: hidden states read during generation vs a second forward per answer.

- plain: N seeded samples per question (`generate_with_capture(capture=False)`), nothing hooked;
- capture: the same generation with hooks reading the detector's layers (`layers=`, as `score_answers`, a
  fold's `--detector` and `Detector.watch` read), at its positions;
- capture_all: the same reading every layer (what `veracity detect` needs to fit its grid);
- naive: plain generation, then one forward per answer over prompt + answer reading the same positions.
Each path then scores every answer with one fixed linear detector of the kept ensembles' shape (seeded random
directions on answer_last at three layers, summed) and picks the best of N per question (target: capture /
plain <= 1.05). Rounds interleave plain / capture / capture_all (the naive way only in the first
`--naive-rounds`); the JSON gives each path's best round, the median over rounds of capture / plain within a
round (the fairer figure where the machine's speed drifts between rounds) and every round's seconds.

Usage: python benchmarks/bench_detect.py [--model smollm2] [--questions 32] [--samples 5] [--max-new-tokens 24]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from statistics import median

import torch


def _naive_features(lm, answers):
    """[n, 5, layers, d] from one unpadded forward per answer (the naive way)."""
    from veracity.capture.hooks import hook_sites
    from veracity.capture.sites import Site

    sites = [Site("resid", i) for i in range(lm.arch.n_layers)]
    out = []
    for a in answers:
        P, (a0, a1) = len(a.prompt_ids), a.span
        h: dict[int, torch.Tensor] = {}
        with torch.inference_mode(), hook_sites(lm.model, lm.arch, sites, lambda s, v: h.__setitem__(s.layer, v),
                                                lambda x: x[0].float()):
            lm.model(input_ids=torch.tensor([a.prompt_ids + a.token_ids], device=lm.device), use_cache=False)
        st = torch.stack([h[i] for i in range(lm.arch.n_layers)]).cpu()  # [layers, T, d]
        if not a.token_ids:
            out.append(torch.stack([st[:, P - 1]] * 5))
            continue
        after = P + a1 if a.after_in_generation else P + a1 - 1
        out.append(torch.stack([st[:, P - 1], st[:, P + a0], st[:, P + a1 - 1], st[:, after],
                                st[:, P + a0:P + a1].mean(1)]))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--questions", type=int, default=32, help="questions per QA table draw (total, seeded)")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=6, help="interleaved rounds; each path keeps its best")
    ap.add_argument("--naive-rounds", type=int, default=1, help="rounds that also time the naive second forward")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from veracity.capture.generation import POSITIONS, answer_questions
    from veracity.data.qa import load_qa
    from veracity.models import load

    lm = load(args.model, device=args.device)
    items = load_qa(seed=0)
    items = [items[i] for i in torch.randperm(len(items), generator=torch.Generator().manual_seed(0))[:args.questions]]
    kw = dict(n_samples=args.samples, greedy=False, seed=0, max_new_tokens=args.max_new_tokens,
              batch_size=args.batch_size)
    n = lm.arch.n_layers
    layers = [n // 3, n // 2, (2 * n) // 3]
    w = torch.randn(len(layers), lm.arch.hidden_size, generator=torch.Generator().manual_seed(0))
    pos = POSITIONS.index("answer_last")

    def best_of_n(scores):
        return scores.view(len(items), args.samples).argmax(1).tolist()

    def score(feats):
        return (feats[:, pos, layers] * w).sum((1, 2))

    def plain():
        return answer_questions(lm, items, capture=False, **kw)

    def captured(read=layers):
        ans = answer_questions(lm, items, capture=True, layers=read, **kw)
        feats = torch.stack([a.features for a in ans])
        return ans, feats, score(feats)

    def naive():
        ans = answer_questions(lm, items, capture=False, **kw)
        feats = _naive_features(lm, ans)
        return ans, feats, score(feats)

    # rounds interleave the paths (order reversed every other round) and each keeps its best round: on a
    # shared or throttling CPU, back-to-back phases would each meet a different machine
    paths = {"plain": plain, "capture": captured, "capture_all": lambda: captured(None), "naive": naive}
    best, out, rounds = {k: float("inf") for k in paths}, {}, {k: [] for k in paths}
    plain()  # warm-up
    for r in range(args.repeats):
        order = [k for k in paths if k != "naive" or r < args.naive_rounds]  # the naive way is ~2x: a reference
        for k in (order if r % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            out[k] = paths[k]()
            rounds[k].append(round(time.perf_counter() - t, 2))
            best[k] = min(best[k], rounds[k][-1])
    t_plain, ans_plain = best["plain"], out["plain"]
    t_cap, (ans_cap, f_cap, s_cap) = best["capture"], out["capture"]
    t_all, (ans_all, f_all, s_all) = best["capture_all"], out["capture_all"]
    t_naive, (ans_naive, f_naive, s_naive) = best["naive"], out["naive"]
    same_tokens = [a.token_ids for a in ans_cap] == [a.token_ids for a in ans_naive] == \
        [a.token_ids for a in ans_plain] == [a.token_ids for a in ans_all]
    scale = f_naive.abs().amax(-1, keepdim=True).clamp_min(1.0)
    rel = lambda f, ls: float(((f[:, :, ls] - f_naive[:, :, ls]).abs() / scale[:, :, ls]).max())  # noqa: E731
    per_round = lambda k: [c / p for c, p in zip(rounds[k], rounds["plain"])]  # noqa: E731 (same round)
    print(json.dumps({
        "ratio_capture_over_plain": t_cap / t_plain,
        "median_round_ratio_capture_over_plain": median(per_round("capture")),
        "median_round_ratio_capture_all_over_plain": median(per_round("capture_all")),
        "ratio_capture_all_over_plain": t_all / t_plain,
        "ratio_naive_over_plain": t_naive / t_plain,
        "seconds_plain": t_plain, "seconds_capture": t_cap, "seconds_capture_all": t_all, "seconds_naive": t_naive,
        "max_abs_diff_features": float((f_cap[:, :, layers] - f_naive[:, :, layers]).abs().max()),
        "max_rel_diff_features": rel(f_cap, layers),
        "max_rel_diff_features_all_layers": rel(f_all, list(range(n))),
        "max_abs_diff_scores": float((s_cap - s_naive).abs().max()),
        "same_best_of_n": best_of_n(s_cap) == best_of_n(s_naive) == best_of_n(s_all), "same_tokens": same_tokens,
        "answers_at_token_limit": sum(len(a.token_ids) == args.max_new_tokens for a in ans_cap),
        "target": {"ratio_capture_over_plain": "<= 1.05"},
        "details": {"model": args.model, "device": args.device, "questions": len(items), "samples": args.samples,
                    "answers": len(ans_cap), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
                    "threads": torch.get_num_threads(), "repeats": args.repeats, "seconds_per_round": rounds,
                    "detector": f"random directions on answer_last at layers {layers}, summed",
                    "mean_new_tokens": sum(len(a.token_ids) for a in ans_cap) / len(ans_cap)},
    }, indent=1))


if __name__ == "__main__":
    main()
