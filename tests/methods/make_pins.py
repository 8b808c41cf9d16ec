"""The pinned numbers of every study's fold evaluation (tests/methods/data/one_evaluator_pins.json).

Produced once, on commit 0cbf2ba (before the fold evaluators were merged into one), by
``PYTHONPATH=src OMP_NUM_THREADS=1 python tests/methods/make_pins.py`` from the repository root; kept so the
numbers can be regenerated the same way (run against the old code: ``git worktree add --detach /tmp/old 0cbf2ba``
and ``PYTHONPATH=/tmp/old/src``). smollm2 runs a subset of the tiny model's cases (CPU time). `tests/methods/test_one_evaluator.py` runs the same cases through
today's code and compares: MC/CE/KL and every other float to 1e-6, generations, judge labels and choices
exactly. Each case goes through a study's public entry point: `evaluate_fold` as `veracity eval` calls it,
`evaluate_intervention` as ITI validate and the ITI sweep call it (binary task and side effects on),
`evaluate_prepared` as compare-interventions and the steer sweep call it, and the sycophancy study's
measurements. Steers are seeded random tensors (no fitting), judges are fixed functions of the answer text.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PINS = HERE / "data" / "one_evaluator_pins.json"
N_QUESTIONS = {"tiny-llama": 8, "smollm2": 6}


def truth_fn(questions, answers):
    """A fixed 'truth judge': a function of the answer's length only."""
    return [(len(a) % 7) / 6 for a in answers]


def info_fn(questions, answers):
    """A fixed 'info judge': more words, more informative."""
    return [min(1.0, len(a.split()) / 5) for a in answers]


def iti_steer(lm, seed: int = 0, k: int = 4, alpha: float = 3.0):
    """A seeded random ITI intervention (k heads) for `lm`'s shape."""
    from veracity.steer.intervention import Intervention

    a = lm.arch
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(a.n_layers * a.n_heads, generator=g)[:k].tolist()
    heads = [(i // a.n_heads, i % a.n_heads) for i in flat]
    d = torch.nn.functional.normalize(torch.randn(k, a.head_dim, generator=g), dim=1)
    return Intervention(heads, d, torch.rand(k, generator=g) + 0.5, alpha, a.n_layers, a.n_heads, a.head_dim)


def residual_steer(lm, seed: int = 1, alpha: float = 2.0):
    """A seeded random residual steer at the middle decoder layer."""
    from veracity.steer.residual import ResidualSteer

    g = torch.Generator().manual_seed(seed)
    hidden = lm.model.config.hidden_size
    return ResidualSteer([lm.arch.n_layers // 2], torch.randn(1, hidden, generator=g) * 0.5, alpha)


def trained_copy(lm, seed: int = 2):
    """A stand-in for a trained model: a copy of `lm` with one perturbed weight (the original untouched)."""
    other = copy.deepcopy(lm)
    g = torch.Generator().manual_seed(seed)
    w = other.model.lm_head.weight if not other.model.config.tie_word_embeddings else None
    p = w if w is not None else next(m for n, m in other.model.named_parameters() if n.endswith("o_proj.weight"))
    with torch.no_grad():
        p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return other


def texts(data_dir):
    from veracity.evaluate.lm_metrics import load_texts

    return load_texts("boolq", 2, data_dir)


def to_plain(x):
    """JSON-ready: dataclasses, tuples, numpy scalars and tensors become plain values."""
    import numpy as np

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_plain(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) or isinstance(x, torch.Tensor):
        return to_plain(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    return x


def drop_timings(d):
    """Timings (costs' *_s) change from run to run: not pinned."""
    if isinstance(d, dict):
        return {k: drop_timings(v) for k, v in d.items() if not k.endswith("_s")}
    if isinstance(d, list):
        return [drop_timings(v) for v in d]
    return d


def cases(lm, name: str, data_dir) -> dict:
    """Every study's evaluation of `lm` on its first questions: case name -> plain result."""
    from veracity.data import load_true_false, load_truthfulqa
    from veracity.evaluate.judges import get_judge
    from veracity.experiments.sycophancy import SycophancyConfig, true_false_sycophancy, truthfulqa_sycophancy
    from veracity.methods.evaluate import MethodEvalConfig, evaluate_prepared
    from veracity.methods.fold import FoldEvalConfig, evaluate_fold, evaluate_intervention
    from veracity.methods.prepare import PreparedMethod, parse_method
    from veracity.steer.apply import intervention_factory

    tiny = name == "tiny-llama"
    items = load_truthfulqa(data_dir)[:N_QUESTIONS[name]]
    idx = [it.index for it in items]
    tx = texts(data_dir)
    judges = get_judge(truth_fn, "truth"), get_judge(info_fn, "info")
    iv, rs = iti_steer(lm), residual_steer(lm)
    gen = 12 if tiny else 16
    out: dict = {}
    # veracity eval: evaluate_fold, every measure, each protocol; with and without an intervention
    for proto in ("truthfulqa", "lm-eval", "binary") if tiny else ("truthfulqa", "lm-eval"):
        for steered in ((False, True) if proto == "truthfulqa" and tiny else (True,)):
            fac = intervention_factory(lm, iv, "last") if steered else None
            r = evaluate_fold(lm, items, idx[::-1], fold=1, protocol=proto, truth_judge=judges[0],
                              info_judge=judges[1], intervention=fac, lm_texts=tx, n_docs=2, max_tokens=24,
                              max_new_tokens=gen, batch_size=4)
            out[f"eval/{proto}/{'iti' if steered else 'plain'}"] = to_plain(r)
    if tiny:
        r = evaluate_fold(lm, items, idx[:3], protocol="truthfulqa", metrics=("mc", "judge"), truth_judge=judges[0],
                          instruction="informative", max_new_tokens=gen, batch_size=2)
        out["eval/informative"] = to_plain(r)
    # iti validate / iti sweep: evaluate_intervention with the binary task and side effects
    se = dict(side_effects=("sycophancy", "health"), side_effect_n={"sycophancy": 3, "health": 3})
    for label, steer, extra in (("iti", iv, {}), ("plain", None, {}),
                                ("iti-legacy-all", iv, {"mc_shift_from": "legacy", "generate_positions": "all"})
                                )[:3 if tiny else 1]:
        cfg = FoldEvalConfig(judge=truth_fn, ce_tokens=24, batch_size=4, binary=True, **se, **extra)
        r = evaluate_intervention(lm, items, steer, cfg, tx, fold=2)
        out[f"iti/{label}"] = to_plain(r)
    if tiny:
        cfg = FoldEvalConfig(protocol="lm-eval", judge="none", ce_tokens=24, batch_size=4)
        out["iti/lm-eval-nokl"] = to_plain(evaluate_intervention(lm, items, iv, cfg, tx, kl=False))
    # compare-interventions / steer sweep: evaluate_prepared
    mcfg = MethodEvalConfig(max_new_tokens=gen, ce_tokens=24, batch_size=4, **se)
    methods = [("baseline", None, lm), ("few-shot+caa", rs, lm)]
    if tiny:
        methods += [("instruction+iti", iv, lm), ("system", None, lm), ("lora-sft", None, trained_copy(lm)), ("lora-sft+iti", iv, trained_copy(lm))]
    cache: dict = {}
    for m, steer, model in methods:
        pm = PreparedMethod(parse_method(m), model, steer, generate_positions="all" if "caa" in m else "last")
        r = evaluate_prepared(pm, lm, items, mcfg, tx, cache, judges)
        out[f"prepared/{m}"] = drop_timings(to_plain(r))
    if tiny:
        pm = PreparedMethod(parse_method("few-shot+iti"), lm, iv)
        mcfg = dataclasses.replace(mcfg, protocol="lm-eval", side_effects=())
        out["prepared/lm-eval"] = drop_timings(to_plain(evaluate_prepared(pm, lm, items, mcfg, None, {}, None)))
    # sycophancy: its MC on TruthfulQA and on true/false statements, plain and under ITI
    scfg = SycophancyConfig(limit=len(items), batch_size=4)
    rows, per_item, info = truthfulqa_sycophancy(lm, items, scfg, iv, log=lambda m: None)
    out["sycophancy/truthfulqa"] = to_plain({"rows": rows, "per_item": per_item, "probe": info})
    if tiny:
        st = load_true_false(data_dir)[:8] + load_true_false(data_dir)[-8:]
        rows, per_item, info = true_false_sycophancy(lm, st, scfg, iv, log=lambda m: None)
        out["sycophancy/true-false"] = to_plain({"rows": rows, "per_item": per_item, "probe": info})
    return out


def main() -> None:
    from veracity.models import load

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data_dir = os.environ.get("VERACITY_DATA") or str(HERE.parents[2] / "shared" / "data")
    torch.set_num_threads(1)
    got = {}
    for name in sys.argv[1:] or list(N_QUESTIONS):
        got[name] = cases(load(name, device="cpu"), name, data_dir)
    old = json.loads(PINS.read_text()) if PINS.exists() else {}
    PINS.parent.mkdir(exist_ok=True)
    PINS.write_text(json.dumps({**old, **got}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
