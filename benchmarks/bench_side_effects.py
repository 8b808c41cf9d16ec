"""What the side effects cost: the same `veracity steer sweep` (caa, layer x alpha, two folds) with and
without `--side-effects all`, in one process, after a warm-up that fills the activation cache. Prints JSON
with both wall times and their ratio (target: at most 1.5x) and the side-effect sample sizes.

    python benchmarks/bench_side_effects.py --model smollm2 --limit 100 --layers 15 --alphas 0,2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--limit", type=int, default=100, help="TruthfulQA questions (both folds together)")
    ap.add_argument("--layers", default="15")
    ap.add_argument("--alphas", default="0,2")
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
    out["ratio"] = out["seconds_with"] / out["seconds_without"]
    out["target_ratio"] = 1.5
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
