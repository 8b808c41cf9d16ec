"""What the side effects cost: the same `veracity steer sweep` (caa, layer x alpha, two folds) with and
without `--side-effects all`, in one process, after a warm-up that fills the activation cache. Prints JSON
with, per TruthfulQA size, both wall times and their ratio (target: at most 1.5x) and the side-effect
sample sizes each row used.

The default samples scale with a row's held-out questions (`veracity.methods.side_effects.default_sizes`:
full from 250 per fold, proportional below, at least 20), so the ratio should hold at every size; measure
the sizes directly (several in one run: `--limit 200,817`), not by extrapolation.

    python benchmarks/bench_side_effects.py --model smollm2 --limit 200,817 --layers 15 --alphas 2

At 817 questions each row scores 409 held-out questions; `--alphas 0` keeps only the plain-model row of
each fold (the same side-effect work against the same scoring, without fitting a steer): half the rows,
about half an hour per size on an idle CPU instead of over an hour.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

ALL = ("sycophancy", "boolq", "honest", "health")


def measure(a, limit: int | None) -> dict:
    """Both sweeps at one TruthfulQA size (`limit` questions, None: all 817)."""
    from veracity.data.truthfulqa import load_truthfulqa
    from veracity.experiments.steer_sweep import SteerSweepConfig, run_steer_sweep
    from veracity.methods.side_effects import default_sizes
    from veracity.models import load
    from veracity.steer.residual_tqa import load_residual_data

    load_residual_data(load(a.model), data_dir=a.data_dir, limit=limit)  # warm-up: the capture is cached
    n_q = min(limit or 10 ** 9, len(load_truthfulqa(a.data_dir)))
    base = dict(model=a.model, method="caa", layers=tuple(int(x) for x in a.layers.split(",")),
                alphas=tuple(float(x) for x in a.alphas.split(",")), folds=a.folds, ce_texts=a.ce_texts,
                limit=limit, data_dir=a.data_dir)
    out: dict = {"questions": n_q, "folds": a.folds,
                 "side_effect_n_per_fold_size": {k: default_sizes(k) for k in sorted({n_q // a.folds,
                                                                                      -(-n_q // a.folds)})}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, se in (("without", ()), ("with", ALL)):
            t0 = time.perf_counter()
            res = run_steer_sweep(SteerSweepConfig(**base, side_effects=se), Path(tmp) / name, log=lambda m: None)
            out[f"seconds_{name}"] = time.perf_counter() - t0
            out[f"grid_{name}"] = res.grid
            with sqlite3.connect(Path(tmp) / name / "results.sqlite") as db:  # each row's own seconds
                out[f"row_seconds_{name}"] = {f"{cell} fold={f}": round(s, 1) for cell, f, s in  # the sweep store
                                              db.execute("SELECT cell, fold, seconds FROM results ORDER BY fold, cell")}
    out["ratio"] = out["seconds_with"] / out["seconds_without"]
    wo, wi = out["row_seconds_without"], out["row_seconds_with"]
    out["side_effects_s_per_row"] = round(sum(wi[k] - wo[k] for k in wo) / len(wo), 1)
    out["scoring_s_per_row"] = round(sum(wo.values()) / len(wo), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", default="all",
                    help="TruthfulQA questions (both folds together): a number, 'all', or several, e.g. 200,817")
    ap.add_argument("--layers", default="15")
    ap.add_argument("--alphas", default="2", help="'0': only the plain-model row of each fold (half the rows)")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--ce-texts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    limits = [None if x.strip() in ("all", "817") else int(x) for x in a.limit.split(",") if x.strip()]
    out: dict = {"model": a.model, "layers": a.layers, "alphas": a.alphas, "target_ratio": 1.5, "sizes": []}
    for limit in limits:
        out["sizes"].append(measure(a, limit))
    out["ratios"] = {str(s["questions"]): round(s["ratio"], 3) for s in out["sizes"]}
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
