"""One-command device check: the whole pipeline in half precision, throughputs, peak memory, parity.

On a CUDA machine (default: smollm2 and gemma3-270m in bfloat16 on cuda):

    python benchmarks/device_check.py [--out device_check.json]

runs, per model: capture (every resid and heads site, last token) and its parity with the float32
capture; per-head logistic probes trained (in float32) from the half-precision store vs from the float32
store; TruthfulQA MC in both protocols on 200 questions, half vs float32 (MC1/MC2 in points) plus CE and
KL(float32 || half) on held-out text; a 2-fold ITI validate on 200 questions with --judge none; an ITI
intervention and a residual steer baked in the model's dtype vs their hooks; batched speculative
decoding vs transformers' assisted generation (prompt by prompt) and vs plain greedy. It prints one
JSON object: throughputs (rows/s, requests/s, tokens/s), peak GPU memory per step, every parity figure
with its tolerance (`veracity.models.precision`, docs/precision.md) and `ok` (every check within it).

Without CUDA (or with --tiny) it runs the same steps on tiny random models with small counts, so CI
keeps the script working (tests/test_device_check.py); figures from tiny models check the plumbing,
not the science. `--models smollm2 --device cpu --steps capture,mc,lm --n-mc 100 --n-capture 64 --n-docs 20`
is the CPU bf16 parity run recorded in docs/results.md ("Half precision and devices").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

STEPS = ("capture", "probes", "mc", "lm", "iti", "bake", "residual", "speculative")
REAL = ("smollm2", "gemma3-270m")
TINY = ("tiny-llama", "tiny-gemma3")


# ------------------------------------------------------------------------------------------- helpers
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class Step:
    """Times a block and records the peak GPU memory it reached (None off CUDA)."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        self.seconds = 0.0
        self.peak_gib: float | None = None

    def __enter__(self):
        if self.dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.dev)
        _sync(self.dev)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync(self.dev)
        self.seconds = time.perf_counter() - self.t0
        if self.dev.type == "cuda":
            self.peak_gib = torch.cuda.max_memory_allocated(self.dev) / 2**30
        return False


def _rate(n: float, s: float) -> float:
    return n / s if s > 0 else math.inf


def _points(a: float, b: float) -> float:
    return abs(a - b) * 100.0


# ---------------------------------------------------------------------------------------------- steps
def check_capture(lm, ref, texts, batch_size, tol) -> tuple[dict, object, object]:
    from veracity.capture import capture
    from veracity.models.precision import relative_error

    sites = "resid,heads,resid.embed"
    with Step(lm.device) as st:
        acts = capture(lm, texts, sites, positions="last", batch_size=batch_size, dtype=lm.dtype, progress=False)
    ref_acts = capture(ref, texts, sites, positions="last", batch_size=batch_size, dtype=torch.float32,
                       progress=False)
    errs = {s: relative_error(acts[s], ref_acts[s]) for s in ref_acts.sites}
    worst = max(errs, key=errs.get)
    return ({"rows": len(texts), "sites": len(errs), "rows_per_s": _rate(len(texts), st.seconds),
             "seconds": st.seconds, "peak_gib": st.peak_gib, "store_dtype": str(lm.dtype).replace("torch.", ""),
             "rel_err_max": errs[worst], "rel_err_worst_site": worst, "tolerance": tol, "ok": errs[worst] <= tol},
            acts, ref_acts)


def check_probes(acts, ref_acts, labels, seed: int = 0) -> dict:
    """Per-head probes fitted (in float32) on the half-precision store vs on the float32 store, same split."""
    from veracity.probes.heads import head_accuracy_matrix

    t0 = time.perf_counter()
    half = head_accuracy_matrix(acts.stack("heads"), labels, seed=seed)
    secs = time.perf_counter() - t0
    full = head_accuracy_matrix(ref_acts.stack("heads"), labels, seed=seed)
    d = (half.accuracy - full.accuracy).abs()
    cos = torch.nn.functional.cosine_similarity(half.directions.reshape(-1, half.directions.shape[-1]),
                                                full.directions.reshape(-1, full.directions.shape[-1]), dim=-1)
    return {"heads": int(d.numel()), "fit_seconds": secs, "coef_dtype": str(half.probe.coef_.dtype),
            "mean_abs_acc_diff_points": float(d.mean()) * 100, "max_abs_acc_diff_points": float(d.max()) * 100,
            "min_direction_cosine": float(cos.min()), "mean_direction_cosine": float(cos.mean()),
            # accuracies on a few validation rows move by whole rows; the directions are the science
            "ok": half.probe.coef_.dtype == torch.float32 and float(cos.mean()) >= 0.99}


def check_mc(lm, ref, items, batch_size) -> dict:
    from veracity.evaluate.truthfulqa import PROTOCOLS, score_mc

    out = {}
    for protocol in PROTOCOLS:
        with Step(lm.device) as st:
            half = score_mc(lm, items, protocol, batch_size=batch_size)
        full = score_mc(ref, items, protocol, batch_size=batch_size)
        n_req = sum(len(r.choices) for r in half.results)
        dscore = max(abs(a - b) for h, f in zip(half.results, full.results) for a, b in zip(h.scores, f.scores))
        out[protocol] = {"questions": half.n, "requests": n_req, "requests_per_s": _rate(n_req, st.seconds),
                         "seconds": st.seconds, "peak_gib": st.peak_gib,
                         "mc1": half.mc1, "mc2": half.mc2, "mc1_float32": full.mc1, "mc2_float32": full.mc2,
                         "mc1_diff_points": _points(half.mc1, full.mc1), "mc2_diff_points": _points(half.mc2, full.mc2),
                         "max_abs_score_diff_nats": dscore,
                         "ok": _points(half.mc1, full.mc1) <= 1.0 and _points(half.mc2, full.mc2) <= 1.0}
    return out


def check_lm(lm, ref, texts) -> dict:
    from veracity.evaluate.lm_metrics import ce_per_doc, kl_per_doc, tokenize_docs

    docs = tokenize_docs(lm.tokenizer, texts, 128)
    ce_h = sum(ce_per_doc(lm.model, docs)) / len(docs)
    ce_f = sum(ce_per_doc(ref.model, docs)) / len(docs)
    kl = kl_per_doc(ref.model, lm.model, docs)  # log-softmax of both in float32
    return {"docs": len(docs), "ce": ce_h, "ce_float32": ce_f, "ce_diff": abs(ce_h - ce_f),
            "kl_float32_to_half": sum(kl) / len(kl)}


def _iti_data(lm, n, data_dir, tmp):
    from veracity.data import load_truthfulqa
    from veracity.steer.iti import load_iti_data

    data = load_iti_data(lm, data_dir=data_dir, limit=n, acts=Path(tmp) / f"iti-{lm.name}", progress=False)
    items = load_truthfulqa(data_dir)[:n]
    return data, items


def check_iti(lm, data, items, k, alpha, data_dir, ce_texts) -> dict:
    from veracity.steer.iti import ITIConfig
    from veracity.experiments.iti_validate import FoldEvalConfig, validate

    ecfg = FoldEvalConfig(judge="none", ce_texts=ce_texts, data_dir=str(data_dir) if data_dir else None)
    with Step(lm.device) as st:
        res = validate(lm, data, items, ITIConfig(seed=0), k, alpha, n_folds=2, ecfg=ecfg, log=lambda m: None)
    return {"questions": len(items), "k": k, "alpha": alpha, "seconds": st.seconds, "peak_gib": st.peak_gib,
            "questions_per_s": _rate(len(items), st.seconds),
            **{key: res.summary.get(key) for key in ("mc1", "mc2", "ce_loss", "kl")}}


@torch.no_grad()
def _logits(model, ids):
    return model(input_ids=ids).logits.float()


def _prompt_ids(lm):
    t = "Q: What happens if you crack your knuckles a lot?\nA: Nothing in particular happens if you do."
    return lm.tokenizer(t, return_tensors="pt")["input_ids"].to(lm.device)


def check_bake(lm, iv, tmp, tol) -> dict:
    from transformers import AutoModelForCausalLM

    from veracity.models.precision import relative_error
    from veracity.steer import apply, bake

    folder = bake(lm, iv, Path(tmp) / f"baked-{lm.name}")
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=lm.dtype).to(lm.device).eval()
    ids = _prompt_ids(lm)
    with apply(lm, iv, positions="all"):
        hooks = _logits(lm.model, ids)
    b = _logits(baked, ids)
    err = relative_error(b, hooks)
    same_top = float((b.argmax(-1) == hooks.argmax(-1)).float().mean())
    del baked
    return {"heads": iv.k, "alpha": iv.alpha, "baked_dtype": str(lm.dtype).replace("torch.", ""),
            "rel_err_logits": err, "top1_agreement": same_top, "tolerance": tol, "ok": err <= tol}


def check_residual(lm, ref_acts, labels, tmp, tol) -> dict:
    try:
        from veracity.steer.residual import NotBakeable, apply_residual, bake_residual, fit_diff_means
    except ImportError as e:  # steer.residual not in this checkout
        return {"skipped": f"veracity.steer.residual unavailable: {e}"}
    from transformers import AutoModelForCausalLM

    from veracity.models.precision import relative_error

    L = lm.arch.n_layers
    layers = [L // 2]
    X = torch.stack([ref_acts[f"resid.{l}"].float() for l in layers], 1)
    steer = fit_diff_means(X, labels, act_layers=layers, normalize="sigma", alpha=4.0)
    ids = _prompt_ids(lm)
    with apply_residual(lm, steer, positions="all"):
        hooks = _logits(lm.model, ids)
    plain = _logits(lm.model, ids)
    out = {"layers": layers, "alpha": steer.alpha, "hook_shift_rel": relative_error(hooks, plain)}
    try:
        folder = bake_residual(lm, steer, Path(tmp) / f"resid-{lm.name}")
    except NotBakeable as e:
        return {**out, "bake": f"not bakeable: {str(e)[:120]}", "ok": True}
    baked = AutoModelForCausalLM.from_pretrained(str(folder), dtype=lm.dtype).to(lm.device).eval()
    err = relative_error(_logits(baked, ids), hooks)
    del baked
    return {**out, "rel_err_logits": err, "tolerance": tol, "ok": err <= tol}


def check_speculative(lm, asst, prompts, gamma, max_new_tokens, batch_size, tol) -> dict:
    from veracity.compare.speculative import generate
    from veracity.evaluate.generation import generate_greedy

    tok = lm.tokenizer
    enc = [tok(p)["input_ids"] for p in prompts]
    generate(lm, asst, prompts[:2], gamma=gamma, batch_size=2, max_new_tokens=2)  # warm-up
    with Step(lm.device) as st:
        recs = generate(lm, asst, prompts, gamma=gamma, batch_size=batch_size, max_new_tokens=max_new_tokens)
    spec = [r.tokens for r in recs]
    # plain greedy, one prompt at a time (no padding): what speculative greedy must reproduce
    greedy = generate_greedy(lm, enc, max_new_tokens=max_new_tokens, batch_size=1)
    eos = tok.eos_token_id
    spec_cut = [t[:t.index(eos)] if eos in t else t for t in spec]
    gc = asst.model.generation_config
    gc.num_assistant_tokens, gc.num_assistant_tokens_schedule, gc.assistant_confidence_threshold = gamma, "constant", 0.0
    hf = []
    with Step(lm.device) as st_hf:
        for e in enc:
            ids = torch.tensor([e], device=lm.device)
            o = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), assistant_model=asst.model,
                                  do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
            hf.append(o[0, len(e):].tolist())
    n_v, n_hf = sum(map(len, spec)), sum(map(len, hf))
    same_greedy = sum(a == b for a, b in zip(spec_cut, greedy))
    same_hf = sum(a == b for a, b in zip(spec, hf))
    ties = [near_tie(lm, e, g, s_, tol) for e, g, s_ in zip(enc, greedy, spec_cut) if g != s_]
    return {"prompts": len(prompts), "gamma": gamma, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
            "tokens_per_s": _rate(n_v, st.seconds), "peak_gib": st.peak_gib,
            "assisted_tokens_per_s": _rate(n_hf, st_hf.seconds), "speedup_over_assisted":
            _rate(n_v, st.seconds) / _rate(n_hf, st_hf.seconds) if n_hf else None,
            "mean_accepted_per_step": sum(sum(r.n_matches) for r in recs) / max(1, sum(len(r.n_matches) for r in recs)),
            "identical_to_plain_greedy": same_greedy, "identical_to_assisted": same_hf,
            "divergences": ties, "ok": all(t["near_tie"] for t in ties)}


@torch.no_grad()
def near_tie(lm, prompt: list[int], greedy: list[int], other: list[int], tol: float) -> dict:
    """Where two greedy decodings of one prompt first differ, the plain model's top-2 logit margin there.

    In half precision two computation orders (one token per forward vs a block of drafts per forward)
    round the logits differently, so a top-2 margin below the logits' rounding error (tol * max|logit|)
    may go either way: such a divergence is rounding, not a bug. A larger margin is a bug."""
    j = next((k for k in range(min(len(greedy), len(other))) if greedy[k] != other[k]), min(len(greedy), len(other)))
    ids = torch.tensor([list(prompt) + greedy[:j]], device=lm.device)
    lo = lm.model(input_ids=ids).logits[0, -1].float()
    top = lo.topk(2).values
    margin, bound = float(top[0] - top[1]), tol * float(lo.abs().max())
    return {"position": j, "margin": margin, "bound": bound, "near_tie": margin <= bound}


# ----------------------------------------------------------------------------------------------- main
def run_model(name: str, args, tmp: str) -> dict:
    from veracity.data import get_dataset, load_truthfulqa
    from veracity.models import load
    from veracity.models.precision import relative_tolerance

    dtype = getattr(torch, args.dtype)
    lm = load(name, dtype=dtype, device=args.device)
    ref = load(name, dtype=torch.float32, device=args.device)
    tol = relative_tolerance(dtype, lm.arch.n_layers)
    res: dict = {"dtype": args.dtype, "layers": lm.arch.n_layers, "heads": lm.arch.n_heads,
                 "relative_tolerance": tol}
    steps = set(args.steps)
    ds = get_dataset("truthfulqa-mc2", data_dir=args.data_dir)
    texts, labels = ds.texts[:args.n_capture], ds.labels[:args.n_capture]
    acts = ref_acts = None
    if steps & {"capture", "probes", "residual"}:
        res["capture"], acts, ref_acts = check_capture(lm, ref, texts, args.batch_size, tol)
    if "probes" in steps:
        res["probes"] = check_probes(acts, ref_acts, labels)
    if "mc" in steps:
        res["mc"] = check_mc(lm, ref, load_truthfulqa(args.data_dir)[:args.n_mc], args.batch_size)
    if "lm" in steps:
        res["lm"] = check_lm(lm, ref, get_dataset("boolq-passages", data_dir=args.data_dir, limit=args.n_docs).texts)
    iv = None
    if steps & {"iti", "bake"}:
        from veracity.steer.iti import ITIConfig, fit

        data, items = _iti_data(lm, args.n_iti, args.data_dir, tmp)
        if "iti" in steps:
            res["iti_validate"] = check_iti(lm, data, items, args.k, args.alpha, args.data_dir, args.n_docs)
        iv = fit(data, ITIConfig(seed=0), k=args.k, alpha=args.alpha)
    if "bake" in steps:
        res["bake"] = check_bake(lm, iv, tmp, tol)
    if "residual" in steps:
        res["residual"] = check_residual(lm, ref_acts, labels, tmp, tol)
    if "speculative" in steps:
        a_dtype = getattr(torch, args.assistant_dtype) if args.assistant_dtype else dtype
        asst = load(name, dtype=a_dtype, device=args.device, seed=1)  # tiny: other weights, same tokenizer
        prompts = [it.question for it in load_truthfulqa(args.data_dir)[:args.n_spec]]
        res["speculative"] = check_speculative(lm, asst, prompts, args.gamma, args.max_new_tokens, args.spec_batch,
                                               tol)
        res["speculative"]["assistant"] = f"{name} in {str(a_dtype).replace('torch.', '')}"
    del lm, ref
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return res


def _all_ok(tree) -> bool:
    if isinstance(tree, dict):
        return all(_all_ok(v) for k, v in tree.items() if k != "ok") and tree.get("ok", True) is not False
    return True


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help=f"comma-separated (default: {','.join(REAL)} on CUDA, "
                    f"{','.join(TINY)} otherwise or with --tiny)")
    ap.add_argument("--tiny", action="store_true", help="tiny random models, small counts (the CPU/CI mode)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--n-capture", type=int, default=None, help="rows captured (default 1000 / tiny 24)")
    ap.add_argument("--n-mc", type=int, default=None, help="MC questions (default 200 / tiny 4)")
    ap.add_argument("--n-iti", type=int, default=None, help="ITI validate questions (default 200 / tiny 8)")
    ap.add_argument("--n-docs", type=int, default=None, help="CE/KL documents (default 100 / tiny 4)")
    ap.add_argument("--n-spec", type=int, default=None, help="speculative prompts (default 64 / tiny 4)")
    ap.add_argument("--k", type=int, default=None, help="ITI heads (default 48 / tiny 4)")
    ap.add_argument("--alpha", type=float, default=15.0)
    ap.add_argument("--gamma", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="speculative (default 64 / tiny 8)")
    ap.add_argument("--spec-batch", type=int, default=16)
    ap.add_argument("--assistant-dtype", default=None, help="speculative assistant (default: float16 on CUDA "
                    "for the real models, i.e. the same checkpoint rounded differently; tiny: a seed-1 model)")
    ap.add_argument("--batch-size", default="auto", help="capture/MC batch: int or auto (halve on out-of-memory)")
    ap.add_argument("--data-dir", default=os.environ.get("VERACITY_DATA"))
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.tiny = args.tiny or (args.device != "cuda" and args.models is None)
    small = args.tiny
    args.models = (args.models or ",".join(TINY if small else REAL)).split(",")
    defaults = dict(n_capture=(24, 1000), n_mc=(4, 200), n_iti=(8, 200), n_docs=(4, 100), n_spec=(4, 64),
                    k=(4, 48), max_new_tokens=(8, 64))
    for key, (tiny_v, real_v) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, tiny_v if small else real_v)
    if args.assistant_dtype is None and not small and args.device == "cuda":
        args.assistant_dtype = "float16"
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = set(args.steps) - set(STEPS)
    if bad:
        ap.error(f"unknown steps {sorted(bad)}; choose from {', '.join(STEPS)}")
    from veracity.models.batching import parse_batch_size

    try:
        args.batch_size = parse_batch_size(args.batch_size)
    except ValueError as e:
        ap.error(str(e))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    report = {"device": args.device, "dtype": args.dtype, "tiny": args.tiny, "steps": args.steps,
              "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
              "torch": torch.__version__, "python": platform.python_version(),
              "machine": platform.processor() or platform.machine(),
              "counts": {k: getattr(args, k) for k in ("n_capture", "n_mc", "n_iti", "n_docs", "n_spec", "k",
                                                          "max_new_tokens")},
              "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            report["models"][name] = run_model(name, args, tmp)
    report["seconds"] = time.perf_counter() - t0
    report["ok"] = _all_ok(report["models"])
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
