"""Check veracity's `lm-eval` TruthfulQA MC protocol against the real lm-evaluation-harness.

The harness's `truthfulqa_mc1` / `truthfulqa_mc2` read the hub data set `truthful_qa` (config
`multiple_choice`), which is mc_task_v0.json in the hub's schema. Offline, this script:

1. converts `$VERACITY_DATA/truthfulqa/mc_task_v0.json` (file order kept) into `OUT/truthful_qa_mc.jsonl`
   with the hub's fields `question`, `mc1_targets{choices,labels}`, `mc2_targets{choices,labels}`;
2. writes task YAMLs in `OUT/tasks/` that `include:` the installed harness's own truthfulqa_mc1.yaml /
   truthfulqa_mc2.yaml (prompt, choices, metrics, `process_results_mc2` all theirs), overriding only the
   task name and the data source (`dataset_path: json`, `dataset_kwargs.data_files`);
3. runs the harness CLI (`lm-eval run ... --include_path OUT/tasks --log_samples`) with the harness's
   own Python (a separate venv: `--harness-python`, default `$VERACITY_LM_EVAL_PYTHON`), on the same
   model folder veracity loads, fp32, CPU;
4. scores the same questions with veracity (`score_mc(..., protocol="lm-eval")`, this Python);
5. compares every per-choice log-likelihood (matched by question + continuation text) and MC1/MC2.

Prints one JSON object (also written to OUT/check_lm_eval.json). Targets: `max_abs_loglik_diff` <= 1e-3,
`mc1_diff_points` / `mc2_diff_points` <= 0.2.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/check_lm_eval.py \\
        --harness-python /work/lmeval-venv/bin/python --limit 20 --out /tmp/lmeval-check

Exit status: 0 when the targets are met, 1 when not, 2 when the harness is missing or fails.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TASK_MC1 = "veracity_truthfulqa_mc1"
TASK_MC2 = "veracity_truthfulqa_mc2"
TOL_LOGLIK = 1e-3
TOL_POINTS = 0.2


def fail(msg: str, code: int = 2) -> None:
    print(f"check_lm_eval: {msg}", file=sys.stderr)
    sys.exit(code)


def log(msg: str) -> None:
    print(f"[check_lm_eval] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ harness probe
_PROBE = ("import importlib.metadata as m, os, lm_eval; "
          "print(m.version('lm_eval')); print(os.path.dirname(lm_eval.__file__))")


def probe_harness(python: str) -> tuple[str, Path]:
    """(lm_eval version, package dir) in `python`, or exit 2 saying how to install it."""
    how = ("install it in a separate venv: python3 -m venv /work/lmeval-venv && "
           "/work/lmeval-venv/bin/pip install torch==2.13.0 && /work/lmeval-venv/bin/pip install 'lm-eval[hf]' "
           "transformers==<the project's version>; then pass --harness-python /work/lmeval-venv/bin/python "
           "or set VERACITY_LM_EVAL_PYTHON")
    if not python:
        fail(f"no harness Python given (--harness-python or $VERACITY_LM_EVAL_PYTHON); {how}")
    exe = shutil.which(python) if os.sep not in python else (python if os.access(python, os.X_OK) else None)
    if not exe:
        fail(f"harness Python {python!r} not found; {how}")
    r = subprocess.run([exe, "-c", _PROBE], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"lm-evaluation-harness (lm_eval) is not importable with {exe}: "
             f"{(r.stderr.strip().splitlines() or ['?'])[-1]}; {how}")
    version, pkg = r.stdout.strip().splitlines()[-2:]
    return version, Path(pkg)


# ------------------------------------------------------------------------------------------ data + tasks
def convert_mc_task(src: Path, dst: Path, limit: int | None) -> list[dict]:
    """mc_task_v0.json -> JSONL in the hub `truthful_qa/multiple_choice` schema (file order kept)."""
    with open(src, encoding="utf-8") as f:
        data = json.load(f)  # dicts keep the file's key order: the hub's choice order
    rows = []
    for e in data:
        rows.append({"question": e["question"],
                     "mc1_targets": {"choices": list(e["mc1_targets"]), "labels": list(e["mc1_targets"].values())},
                     "mc2_targets": {"choices": list(e["mc2_targets"]), "labels": list(e["mc2_targets"].values())}})
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        for r in rows:  # all rows: the harness's --limit picks the first N, as on the hub copy
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return rows[:limit] if limit else rows


def write_tasks(task_dir: Path, harness_pkg: Path, jsonl: Path) -> None:
    """Task YAMLs that include the harness's own truthfulqa_mc1/mc2 definitions, reading the local JSONL."""
    src = harness_pkg / "tasks" / "truthfulqa"
    for name in ("truthfulqa_mc1.yaml", "truthfulqa_mc2.yaml", "utils.py"):
        if not (src / name).exists():
            fail(f"the installed harness has no {src / name}; cannot reuse its TruthfulQA task definitions")
    task_dir.mkdir(parents=True, exist_ok=True)
    for task, base in ((TASK_MC1, "truthfulqa_mc1.yaml"), (TASK_MC2, "truthfulqa_mc2.yaml")):
        # json.dumps gives valid YAML scalars (quoted, escaped); `include` is resolved by the harness,
        # and `!function utils.process_results_mc2` is resolved beside the included file.
        text = (f"include: {json.dumps(str(src / base))}\n"
                f"task: {task}\n"
                "tag: []\n"
                "dataset_path: json\n"
                "dataset_name: null\n"
                f"dataset_kwargs:\n  data_files:\n    validation: {json.dumps(str(jsonl))}\n")
        (task_dir / f"{task}.yaml").write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------------ harness run
def _harness_cmd(python: str, model_dir: str, tasks: str, task_dir: Path, res_dir: Path, limit: int | None,
                 batch_size: int, cache: Path | None) -> list[str]:
    cmd = [python, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={model_dir},dtype=float32",
           "--tasks", tasks, "--include_path", str(task_dir),
           "--device", "cpu", "--batch_size", str(batch_size),
           "--output_path", str(res_dir), "--log_samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    if cache is not None:
        cmd += ["--use_cache", str(cache)]
    return cmd


def run_harness(python: str, model_dir: str, task_dir: Path, out_dir: Path, limit: int | None,
                batch_size: int, two_pass: bool = True) -> tuple[dict, dict[str, list[dict]], float]:
    """Run the harness CLI; return ({task: results entry}, {task: samples}, seconds).

    two_pass: mc2 first, then mc1 with the harness's own request cache (--use_cache): every MC1 choice is
    also an MC2 choice (checked on the data), so MC1's (context, continuation) requests are answered from
    the MC2 run's log-likelihoods, ~40% less compute. Otherwise both tasks run in one invocation.
    """
    res_dir = out_dir / "harness"
    shutil.rmtree(res_dir, ignore_errors=True)
    cache = out_dir / "harness_cache" / "requests"
    shutil.rmtree(cache.parent, ignore_errors=True)
    cache.parent.mkdir(parents=True)
    passes = [TASK_MC2, TASK_MC1] if two_pass else [f"{TASK_MC1},{TASK_MC2}"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", HF_DATASETS_CACHE=str(out_dir / "hf_datasets_cache"))
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    log_path = out_dir / "harness.log"
    results: dict = {}
    t0 = time.perf_counter()
    with open(log_path, "w") as lf:
        for tasks in passes:
            cmd = _harness_cmd(python, model_dir, tasks, task_dir, res_dir / tasks.replace(",", "+"), limit,
                               batch_size, cache if two_pass else None)
            log("harness: " + " ".join(cmd))
            lf.write("$ " + " ".join(cmd) + "\n")
            lf.flush()
            r = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env, cwd=str(out_dir))
            if r.returncode != 0:
                lf.flush()
                tail = "".join(open(log_path, errors="replace").readlines()[-25:])
                fail(f"the harness exited with {r.returncode} (log: {log_path}):\n{tail}")
    secs = time.perf_counter() - t0
    for f in sorted(glob.glob(str(res_dir / "**" / "results_*.json"), recursive=True)):
        with open(f) as fh:
            results.update(json.load(fh).get("results", {}))
    samples = {}
    for task in (TASK_MC1, TASK_MC2):
        files = sorted(glob.glob(str(res_dir / "**" / f"samples_{task}_*.jsonl"), recursive=True))
        if not files or task not in results:
            fail(f"the harness wrote no results or samples for {task} under {res_dir} (log: {log_path})")
        with open(files[-1], encoding="utf-8") as f:
            samples[task] = [json.loads(line) for line in f if line.strip()]
    return results, samples, secs


def _arg_pairs(sample: dict) -> list[tuple[str, str]]:
    """(context, continuation) of each request of a logged sample (list or gen_args_N dict form)."""
    args = sample["arguments"]
    if isinstance(args, dict):
        args = [args[k] for k in sorted(args, key=lambda k: int(k.rsplit("_", 1)[-1]))]
    out = []
    for a in args:
        if isinstance(a, dict):
            out.append((a["arg_0"], a["arg_1"]))
        else:
            out.append((a[0], a[1]))
    return out


def _loglik(resp) -> float:
    """A logged response: [[ll, is_greedy]] (resps) or [ll, is_greedy] (filtered_resps)."""
    while isinstance(resp, (list, tuple)) and resp and isinstance(resp[0], (list, tuple)):
        resp = resp[0]
    return float(resp[0])


def harness_scores(samples: list[dict]) -> tuple[dict[tuple[str, str], float], dict[str, float], dict[str, str]]:
    """{(question, continuation): ll}, {question: acc}, {question: context} from one task's samples."""
    ll, acc, ctx = {}, {}, {}
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        q = s["doc"]["question"]
        pairs = _arg_pairs(s)
        for (c, cont), resp in zip(pairs, s["resps"]):
            ll[(q, cont)] = _loglik(resp)
            ctx[q] = c
        acc[q] = float(s["acc"])
    return ll, acc, ctx


# ------------------------------------------------------------------------------------------ veracity run
def run_veracity(model: str, data_dir: str | None, questions: list[str], batch_size: int, reference_path: bool):
    import torch

    from veracity.data.truthfulqa import load_truthfulqa
    from veracity.evaluate.truthfulqa import build_mc_question, score_mc
    from veracity.models import load

    lm = load(model, dtype="float32", device="cpu")
    items = sorted(load_truthfulqa(data_dir), key=lambda it: it.mc_index)[:len(questions)]
    got = [it.mc_question for it in items]
    if got != questions:
        bad = next(i for i, (a, b) in enumerate(zip(got, questions)) if a != b)
        fail(f"veracity's mc_task_v0 order differs from the converted file at {bad}: {got[bad]!r} vs {questions[bad]!r}")
    t0 = time.perf_counter()
    summ = score_mc(lm, items, "lm-eval", batch_size=batch_size, reference_path=reference_path)
    secs = time.perf_counter() - t0
    ll, mc1, mc2, ctx = {}, {}, {}, {}
    for it, r in zip(items, summ.results):
        for choice, s in zip(r.choices, r.scores):
            ll[(it.mc_question, choice)] = s
        mc1[it.mc_question], mc2[it.mc_question] = r.mc1, r.mc2
        ctx[it.mc_question] = build_mc_question(it, "lm-eval").context
    return lm, ll, mc1, mc2, ctx, secs, torch.get_num_threads()


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--harness-python", default=os.environ.get("VERACITY_LM_EVAL_PYTHON", ""),
                    help="Python of the venv with lm-eval installed (default: $VERACITY_LM_EVAL_PYTHON)")
    ap.add_argument("--model", default="smollm2", help="veracity model (alias/folder); the harness gets its folder")
    ap.add_argument("--limit", type=int, default=None, help="first N questions of mc_task_v0.json (default all)")
    ap.add_argument("--out", required=True, help="output folder (data, task YAMLs, harness logs, JSON)")
    ap.add_argument("--data-dir", default=None, help="data folder (default $VERACITY_DATA)")
    ap.add_argument("--batch-size", type=int, default=16, help="harness batch size")
    ap.add_argument("--veracity-batch-size", type=int, default=32)
    ap.add_argument("--reference-path", action="store_true", help="veracity: one full forward per choice")
    ap.add_argument("--one-pass", action="store_true",
                    help="harness: both tasks in one run, no request cache (default: mc2, then mc1 from its cache)")
    args = ap.parse_args()

    version, pkg = probe_harness(args.harness_python)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    from veracity.data.paths import data_file

    src = data_file("truthfulqa/mc_task_v0.json", args.data_dir)
    jsonl = out / "truthful_qa_mc.jsonl"
    rows = convert_mc_task(Path(src), jsonl, args.limit)
    questions = [r["question"] for r in rows]
    if len(set(questions)) != len(questions):
        fail("duplicate question texts: cannot match by question text")
    two_pass = not args.one_pass and all(set(r["mc1_targets"]["choices"]) <= set(r["mc2_targets"]["choices"])
                                         for r in rows)
    write_tasks(out / "tasks", pkg, jsonl)

    log(f"veracity: scoring {len(questions)} questions (lm-eval protocol, {args.model}, fp32, cpu)")
    lm, v_ll, v_mc1, v_mc2, v_ctx, v_secs, threads = run_veracity(
        args.model, args.data_dir, questions, args.veracity_batch_size, args.reference_path)
    model_dir = lm.source
    del lm
    log(f"veracity: {v_secs:.1f}s; harness {version} on {model_dir}")
    results, samples, h_secs = run_harness(args.harness_python, model_dir, out / "tasks", out, args.limit,
                                           args.batch_size, two_pass)
    log(f"harness: {h_secs:.1f}s")

    h1_ll, h1_acc, h1_ctx = harness_scores(samples[TASK_MC1])
    h2_ll, h2_acc, h2_ctx = harness_scores(samples[TASK_MC2])
    if set(h1_acc) != set(questions) or set(h2_acc) != set(questions):
        fail(f"the harness scored {len(h1_acc)}/{len(h2_acc)} questions, expected the {len(questions)} asked")

    ctx_mismatch = [q for q in questions if not (h1_ctx[q] == h2_ctx[q] == v_ctx[q])]
    diffs = []  # (|diff|, task, question, continuation, harness, veracity)
    missing = []
    for task, h_ll in ((TASK_MC1, h1_ll), (TASK_MC2, h2_ll)):
        for key, h in h_ll.items():
            if key not in v_ll:
                missing.append([task, key[0], key[1]])
                continue
            diffs.append((abs(h - v_ll[key]), task, key[0], key[1], h, v_ll[key]))
    diffs.sort(key=lambda d: -d[0])
    mean = lambda xs: 100.0 * sum(xs) / len(xs)  # noqa: E731
    mc1_h = mean([h1_acc[q] for q in questions])
    mc2_h = mean([h2_acc[q] for q in questions])
    mc1_v = mean([v_mc1[q] for q in questions])
    mc2_v = mean([v_mc2[q] for q in questions])
    res = results
    max_diff = diffs[0][0] if diffs else float("nan")
    report = {
        "n_questions": len(questions),
        "n_choices_compared": len(diffs),
        "n_choices_missing_in_veracity": len(missing),
        "max_abs_loglik_diff": max_diff,
        "mean_abs_loglik_diff": sum(d[0] for d in diffs) / len(diffs) if diffs else float("nan"),
        "n_choices_over_tol": sum(d[0] > TOL_LOGLIK for d in diffs),
        "mc1_harness": mc1_h,
        "mc1_veracity": mc1_v,
        "mc2_harness": mc2_h,
        "mc2_veracity": mc2_v,
        "mc1_diff_points": abs(mc1_h - mc1_v),
        "mc2_diff_points": abs(mc2_h - mc2_v),
        "mc1_harness_reported": 100.0 * res.get(TASK_MC1, {}).get("acc,none", float("nan")),
        "mc2_harness_reported": 100.0 * res.get(TASK_MC2, {}).get("acc,none", float("nan")),
        "mc1_questions_disagreeing": sum(h1_acc[q] != v_mc1[q] for q in questions),
        "n_contexts_differing": len(ctx_mismatch),
        "worst_choices": [{"task": d[1], "question": d[2], "continuation": d[3], "harness": d[4], "veracity": d[5],
                           "abs_diff": d[0]} for d in diffs[:3]],
        "harness_version": version,
        "model": args.model,
        "model_dir": model_dir,
        "dtype": "float32",
        "harness_batch_size": args.batch_size,
        "harness_passes": "mc2, then mc1 from the harness request cache" if two_pass else "mc1+mc2 in one run",
        "veracity_path": "reference" if args.reference_path else "fast",
        "harness_seconds": round(h_secs, 1),
        "veracity_seconds": round(v_secs, 1),
        "torch_threads": threads,
        "pass": bool(diffs) and not missing and not ctx_mismatch and max_diff <= TOL_LOGLIK
        and abs(mc1_h - mc1_v) <= TOL_POINTS and abs(mc2_h - mc2_v) <= TOL_POINTS,
    }
    if missing:
        report["missing_examples"] = missing[:3]
    if ctx_mismatch:
        report["context_mismatch_example"] = {"question": ctx_mismatch[0], "harness": h1_ctx[ctx_mismatch[0]],
                                              "veracity": v_ctx[ctx_mismatch[0]]}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    (out / "check_lm_eval.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    sys.exit(0 if report["pass"] else 1)


if __name__ == "__main__":
    main()
