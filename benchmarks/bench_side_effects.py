"""What the side effects cost: the same `veracity steer sweep` (caa, layer x alpha, two folds) with and
without `--side-effects all`, in one process, after a warm-up that fills the activation cache. Prints JSON
with both wall times and their ratio (target: at most 1.5x) and the side-effect sample sizes.

The side effects cost a fixed amount per row (their samples do not grow with the sweep), so the ratio
depends on how many TruthfulQA questions each row scores: the default is a sweep's default, all of them.

    python benchmarks/bench_side_effects.py --model smollm2 --layers 15 --alphas 2
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=None, help="TruthfulQA questions (both folds together; default all)")
    ap.add_argument("--layers", default="15")
    ap.add_argument("--alphas", default="2")
    ap.add_argument("--ce-texts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from veracity.experiments.side_effects import DEFAULT_N
    from veracity.experiments.steer_sweep import SteerSweepConfig, run_steer_sweep
    from veracity.models import load
    from veracity.steer.residual_tqa import load_residual_data

    load_residual_data(load(a.model), data_dir=a.data_dir, limit=a.limit)  # warm-up: the capture is cached
    base = dict(model=a.model, method="caa", layers=tuple(int(x) for x in a.layers.split(",")),
                alphas=tuple(float(x) for x in a.alphas.split(",")), folds=2, ce_texts=a.ce_texts, limit=a.limit,
                data_dir=a.data_dir)
    out: dict = {"model": a.model, "limit": a.limit, "layers": base["layers"], "alphas": base["alphas"],
                 "side_effect_n": DEFAULT_N}
    with tempfile.TemporaryDirectory() as tmp:
        for name, se in (("without", ()), ("with", ("sycophancy", "boolq", "honest", "health"))):
            t0 = time.perf_counter()
            res = run_steer_sweep(SteerSweepConfig(**base, side_effects=se), Path(tmp) / name, log=lambda m: None)
            out[f"seconds_{name}"] = time.perf_counter() - t0
            out[f"grid_{name}"] = res.grid
            with sqlite3.connect(Path(tmp) / name / "results.sqlite") as db:  # each row's own seconds
                out[f"row_seconds_{name}"] = {f"layer={l} alpha={al:g} fold={f}": round(s, 1) for l, al, f, s in
                                              db.execute("SELECT layer, alpha, fold, seconds FROM results ORDER BY fold, layer")}
    out["ratio"] = out["seconds_with"] / out["seconds_without"]
    out["target_ratio"] = 1.5
    # per row: what the side effects add (with - without, same row) against the row's own scoring time; the
    # scoring grows with the questions per fold, the side effects do not, so the ratio at another size is
    # 1 + added / (scoring x that size / this size)
    wo, wi = out["row_seconds_without"], out["row_seconds_with"]
    added = sum(wi[k] - wo[k] for k in wo) / len(wo)
    scoring = sum(wo.values()) / len(wo)
    n = a.limit or 817
    out["side_effects_s_per_row"], out["scoring_s_per_row"] = round(added, 1), round(scoring, 1)
    out["ratio_extrapolated_to_817_questions"] = round(1 + added / (scoring * 817 / n), 3)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
