"""How much each deliberate difference between veracity's ITI and honest_llama's matters, on one model (issue 13).

Fits both settings on the cached head activations and changes one rule at a time from the original's
(`REPRODUCE["honest-llama"]`): probe rows, folds, within-fold split, probe solver, tie order, sigma; then
scores MC on each fold's held-out questions with the original's fold interventions under both MC shift rules.

    flock /tmp/veracity-heavy.lock python benchmarks/iti_reproduce_diffs.py --model smollm2 --out runs/iti-reproduce-diffs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch


def top(ff, k):
    return set(ff.heads[:k])


def overlaps(a, b, k):
    return [len(top(x, k) & top(y, k)) for x, y in zip(a, b)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--k", type=int, default=48)
    ap.add_argument("--alpha", type=float, default=15.0)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--mc-limit", type=int, default=None, help="MC on the first N held-out questions of each fold")
    ap.add_argument("--no-mc", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/iti-reproduce-diffs.json"))
    a = ap.parse_args()

    from veracity.data import load_truthfulqa
    from veracity.evaluate.truthfulqa import score_mc
    from veracity.models import load
    from veracity.steer.apply import intervention_factory
    from veracity.steer.iti import ITIConfig, _rank, fit_folds, fold_splits, load_iti_data

    t0 = time.time()
    lm = load(a.model)
    items = load_truthfulqa()
    mc2 = load_iti_data(lm, data="tqa-mc2", sigma_rows=True, sigma_seed=42, progress=False)
    csv = load_iti_data(lm, data="csv", progress=False)
    K, F = a.k, a.folds
    orig = ITIConfig(sigma_from="original", split="original", ranking="original", probe="sklearn", seed=42)
    vera = ITIConfig(seed=0)
    out: dict = {"model": a.model, "k": K, "alpha": a.alpha, "folds": F,
                 "rows": {"tqa-mc2": len(mc2.labels), "csv": len(csv.labels), "gen_end_q": len(mc2.tuning)}}

    def log(msg):
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    R = fit_folds(mc2, orig, F, contiguous=True)  # the original, all heads ranked with a direction
    log("original fitted")
    V = fit_folds(mc2, vera, F, contiguous=False)  # veracity's default
    log("veracity default fitted")
    out["top_overlap_default_vs_original"] = overlaps(V, R, K)

    # folds: the original's contiguous MC-order blocks vs contiguous CSV-order blocks vs veracity's shuffle
    mc_f0 = set(fold_splits(mc2, orig, F, True)[0][0].tolist())
    csv_f0 = set(np.array_split(np.sort(mc2.questions), F)[0].tolist())
    sh_f0 = set(fold_splits(mc2, vera, F, False)[0][0].tolist())
    out["fold0_shared_questions"] = {"n": len(mc_f0), "mc_order_vs_csv_order": len(mc_f0 & csv_f0),
                                     "mc_order_vs_shuffled": len(mc_f0 & sh_f0)}

    # one rule at a time, from the original's settings (data and split compared under the batched probe,
    # which is cheap; the probe itself against the sklearn fit)
    def variant(data, contiguous=True, **kw):
        return fit_folds(data, dataclasses.replace(orig, **kw), F, contiguous=contiguous)

    B = variant(mc2, probe="batched")
    out["one_at_a_time_top_overlap"] = {
        "probe batched (vs sklearn)": overlaps(B, R, K),
        "data csv (vs tqa-mc2), batched probe": overlaps(variant(csv, sigma_from="train", probe="batched"), B, K),
        "split seeded (vs original), batched probe": overlaps(variant(mc2, split="seeded", probe="batched"), B, K),
        "folds shuffled seed 42 (vs contiguous MC order), batched probe":
            overlaps(variant(mc2, contiguous=False, probe="batched"), B, K),
    }
    log("variants fitted")
    out["probe_val_acc_equal_heads"] = [int((r.head_scores == b.head_scores).sum()) for r, b in zip(R, B)]
    out["probe_val_acc_max_abs_diff"] = [float((r.head_scores - b.head_scores).abs().max()) for r, b in zip(R, B)]
    ties = []
    for r in R:
        s = r.head_scores
        lit, rev, st = (_rank(s, m)[:K] for m in ("original", "reverse-stable", "stable"))
        kth = float(s[lit[K - 1]])
        ties.append({"heads_at_kth_accuracy": int((s == kth).sum()), "kth_accuracy": kth,
                     "literal_vs_reverse_stable": len(set(lit) & set(rev)),
                     "literal_vs_stable": len(set(lit) & set(st))})
    out["ties"] = ties

    # sigma: the original's (tqa_gen_end_q rows, N-1) over veracity's (fold's training rows, N), same heads
    # and directions
    ratios_k, ratios_all = [], []
    for r in R:
        li = torch.tensor([l for l, _ in r.heads])
        hi = torch.tensor([h for _, h in r.heads])
        Xt = mc2.X[mc2.rows(r.train_questions)][:, li, hi].float()
        s_train = torch.einsum("nkd,kd->nk", Xt, r.directions).std(0, unbiased=False)
        ratio = (r.sigmas / s_train).numpy()
        ratios_all.append(ratio)
        ratios_k.append(ratio[:K])

    def stats(x):
        x = np.concatenate(x)
        return {"median": float(np.median(x)), "min": float(x.min()), "max": float(x.max()), "n": int(len(x))}

    out["sigma_ratio_original_over_train"] = {"top_k": stats(ratios_k), "all_heads": stats(ratios_all)}
    log("sigma done")

    if not a.no_mc:
        by = {it.index: it for it in items}
        mc = []
        for r in R:
            iv = r.intervention(K, a.alpha)
            test = [by[int(q)] for q in r.test_questions][:a.mc_limit]
            row = {"fold": r.fold, "n": len(test)}
            for rule in ("answer-start", "legacy"):
                res = score_mc(lm, test, "truthfulqa", intervention=intervention_factory(lm, iv, "last", rule))
                row[rule] = {"mc1": res.mc1, "mc2": res.mc2}
                log(f"fold {r.fold} MC {rule}: {row[rule]}")
            mc.append(row)
        out["mc_shift"] = mc
    out["seconds"] = time.time() - t0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
