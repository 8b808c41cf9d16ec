"""`veracity demo`: the main job, end to end on the embedded model and embedded facts, offline.

The story is Geometry of Truth (Marks & Tegmark 2023) and Truth is Universal (Bürger et al. 2024) on
a laptop, in three findings:
1. Find: statements about world cities ("The city of Lyon is in France.") generated from an embedded
   table (`veracity.data.facts`), affirmative and negated, balanced true/false. The residual stream at
   the last token of every layer is captured; logistic and mass-mean probes trained on some cities are
   scored on held-out cities, per layer (chance 0.5).
2. Where it fails: a probe trained on affirmative statements, tested on negated ones (and the reverse),
   falls below chance (negation flips the direction it learnt); TTPD, which separates a polarity-
   independent truth direction from the polarity direction, transfers.
3. Causal test: the truth direction (diff of class means on the affirmative training statements, unit,
   scaled by the std of the training projections) is added to the residual stream at the best layer,
   every position, while the model answers "Is it true that the city of X is in Y? Answer:"; the shift
   of log P(" Yes") - log P(" No") on held-out questions is compared with alpha = 0 (no change, exactly)
   and with random directions of the same norm, with bootstrap 95% intervals.
With a TruthfulQA folder (VERACITY_DATA or --data-dir) a fourth step fits ITI and shows answers before
and after it on held-out questions.

Splits are by city: a held-out city never appears in training, in any polarity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import torch

from .._lazy import torch_mode
from ..constraints import Checked, Count, Interval
from ..methods import options as o
from ..validation import BadInput

# Two worked examples (cities outside the embedded table) so the model answers " Yes"/" No" at all: with the
# bare question smollm2 puts ~1% of its mass on those two tokens, with these ~90%.
FEW_SHOT = ("Is it true that the city of Lille is in France? Answer: Yes\n"
            "Is it true that the city of Nanjing is in Peru? Answer: No\n")
CONDITIONS = (("affirmative", "affirmative"), ("negated", "negated"), ("affirmative", "negated"),
              ("negated", "affirmative"), ("both", "affirmative"), ("both", "negated"))


@dataclass
class LayerSeparation:
    """Held-out scores of probes trained and tested on affirmative statements (in distribution)."""

    layer: int
    accuracy: float  # logistic regression
    auroc: float  # logistic regression
    mass_mean_accuracy: float
    mass_mean_auroc: float
    negated_accuracy: float  # the same logistic probe scored on held-out negated statements
    negated_auroc: float


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    import torch
    scores, labels = torch.as_tensor(scores).float(), torch.as_tensor(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).double().mean() + 0.5 * (diff == 0).double().mean()).item()


#: results.json layout of a demo run (docs/reference/results.md); files without the field are version 0
SCHEMA_VERSION = 1


@dataclass
class DemoConfig(Checked):
    """Every setting of the demo (`veracity demo` sets model and data_dir; the rest are the library's).

    n_cities: the first n cities of the embedded table (default all, 177); alphas: the causal test's steering
    strengths in std of the projection (0 is always added as the control); causal_layer: steer there instead
    of at the layer chosen on training data (`select_causal_layer`: every `select_every`-th layer of the
    middle half, `n_select` training-city questions); data_dir: with a TruthfulQA folder, the ITI step runs
    (`iti_k` heads, `iti_alpha`, the first `tqa_questions` questions, answers of `max_new_tokens`)."""

    _constraints = {"model": o.MODEL, "seed": o.SEED, "data_dir": o.OPTIONAL_TEXT, "n_cities": [None, Count(2)],
                    "test_frac": o.FRACTION, "C": o.POSITIVE, "alphas": o.ALPHAS, "n_causal": [Count(2)],
                    "n_random": o.COUNT, "positions": o.GEN_POSITIONS,
                    "causal_layer": [None, Interval(int, 0, None)], "n_select": o.COUNT, "select_every": o.COUNT,
                    "n_examples": o.COUNT0, "iti_k": o.COUNT, "iti_alpha": o.ALPHA, "tqa_questions": [Count(4)],
                    "max_new_tokens": o.COUNT}
    _commands = ("demo",)

    model: str = "smollm2"
    seed: int = 0
    data_dir: str | None = None
    n_cities: int | None = None
    test_frac: float = 0.3
    C: float = 0.1
    alphas: Sequence[float] = (-4.0, 0.0, 4.0)
    n_causal: int = 60
    n_random: int = 2
    positions: str = "all"
    causal_layer: int | None = None
    n_select: int = 24
    select_every: int = 3
    n_examples: int = 6
    iti_k: int = 16
    iti_alpha: float = 15.0
    tqa_questions: int = 60
    max_new_tokens: int = 40

    def causal_alphas(self) -> list[float]:
        """The causal test's alphas, with the alpha = 0 control added when missing (sorted then)."""
        a = [float(x) for x in self.alphas]
        return a if 0.0 in a else sorted([*a, 0.0])


@dataclass
class DemoResult:
    """The demo's one result type: what results.json holds (docs/reference/results.md), written by `write`
    with the run's CSV tables (`files`: name -> rows, not part of results.json)."""

    findings: list[str]
    separation: list[LayerSeparation]
    best_layer: int
    transfer: list[dict]  # method, train, test, accuracy, auroc, n_train, n_test at the best layer
    causal: dict  # layer, positions, direction, sigma, n_random, baseline_auroc, conditions (per direction, alpha)
    examples: list[dict]  # the yes/no margin before and after steering, first held-out questions
    layers: list[int] = field(default_factory=list)
    statements: dict = field(default_factory=dict)
    causal_layer_selection: dict = field(default_factory=dict)
    capture: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    seconds: float = 0.0
    iti: dict | None = None
    iti_examples: list[dict] = field(default_factory=list)  # with TruthfulQA: question, before ITI, after ITI
    schema_version: int = SCHEMA_VERSION
    files: dict = field(default_factory=dict, repr=False, compare=False)

    def _transfer(self, method: str, train: str, test: str) -> dict:
        return next(r for r in self.transfer if (r["method"], r["train"], r["test"]) == (method, train, test))

    def _conditions(self) -> tuple[dict, dict]:
        top = max(self.causal["alphas"])
        c = {(r["direction"], r["alpha"]): r for r in self.causal["conditions"]}
        return c[("truth", top)], c[("random", top)]

    def headline(self) -> dict:
        """The run's headline figures: what `veracity runs list` shows for it."""
        best = next(r for r in self.separation if r.layer == self.best_layer)
        up, rnd = self._conditions()
        return {"best_layer": self.best_layer, "accuracy": best.accuracy, "auroc": best.auroc,
                "affirmative_to_negated": self._transfer("logistic", "affirmative", "negated")["accuracy"],
                "ttpd_on_negated": self._transfer("ttpd", "both", "negated")["accuracy"],
                "causal_shift": up["mean_shift"], "random_shift": rnd["mean_shift"]}

    def tables(self) -> list[tuple[str, list[str], list[list]]]:
        """The console tables, each (title, columns, rows): separation by layer (a bar of at most 10
        characters), transfer across polarity, the causal test, and with TruthfulQA the answers before and after
        ITI. Every table fits 80 columns with short headers."""
        sep = [[r.layer, r.accuracy, r.auroc, r.mass_mean_accuracy, r.negated_accuracy, r.negated_auroc,
                "#" * int(round(max(0.0, r.accuracy - 0.5) * 20)) + (" <- best" if r.layer == self.best_layer else "")]
               for r in self.separation]
        out = [("held-out truth probes by layer (affirmative statements)",
                ["layer", "logistic", "AUROC", "mass-mean", "negated", "AUROC", "accuracy"], sep),
               (f"where it fails: train on one polarity, test on the other (layer {self.best_layer})",
                ["method", "train", "test", "accuracy", "AUROC"],
                [[r["method"], r["train"], r["test"], r["accuracy"], r["auroc"]] for r in self.transfer]),
               ("change of log P(Yes) - log P(No), held-out questions (mean, 95% CI)",
                ["direction", "alpha", "mean shift [95% CI]", "true", "false", "says Yes"],
                [[r["direction"], f"{r['alpha']:+g}", _fmt_ci(r), f"{r['mean_shift_true']:+.2f}",
                  f"{r['mean_shift_false']:+.2f}", f"{r['yes_rate']:.2f}"] for r in self.causal["conditions"]])]
        if self.iti:
            out.append((f"answers before and after ITI (K={self.iti['k']}, alpha={self.iti['alpha']:g}, first "
                        "held-out questions)", ["question", "before ITI", "after ITI"],
                        [[e["question"], e["before ITI"], e["after ITI"]] for e in self.iti_examples]))
        return out

    def to_json(self) -> dict:
        """The results.json payload (its fields: docs/reference/results.md)."""
        d = {"schema_version": self.schema_version, "findings": self.findings, "separation": self.separation,
             "best_layer": self.best_layer, "layers": self.layers, "statements": self.statements,
             "transfer": self.transfer, "causal": self.causal, "causal_layer_selection": self.causal_layer_selection,
             "examples": self.examples, "capture": self.capture, "timings": self.timings, "seconds": self.seconds}
        if self.iti is not None:
            d["iti"], d["iti_examples"] = self.iti, self.iti_examples
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DemoResult":
        """Read a results.json payload back, for the report; a newer schema_version than this veracity reads is
        refused."""
        from ..runs import schema_version

        v = schema_version(d, "demo", SCHEMA_VERSION)
        return cls(d["findings"], [LayerSeparation(**r) for r in d["separation"]], d["best_layer"], d["transfer"],
                   d["causal"], d["examples"], d.get("layers", []), d.get("statements", {}),
                   d.get("causal_layer_selection", {}), d.get("capture", {}), d.get("timings", {}),
                   d.get("seconds", 0.0), d.get("iti"), d.get("iti_examples", []), schema_version=v)

    def write(self, run) -> None:
        """The CSV tables (`files`), then results.json (last: it marks the run finished)."""
        for name, rows in self.files.items():
            run.write_csv(name, rows)
        run.finish(self.to_json(), headline=self.headline())



def bootstrap_ci(x: torch.Tensor, seed: int = 0, n_boot: int = 2000, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean over rows, seeded."""
    import torch
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x), (n_boot, len(x)), generator=g)
    means = x[idx].mean(1)
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return float(x.mean()), lo, hi


def _masks(stmts, test_cities: set[str]) -> dict[str, torch.Tensor]:
    import torch
    pol = torch.tensor([s.polarity for s in stmts])
    test = torch.tensor([s.city in test_cities for s in stmts])
    aff, neg = pol == 1, pol == -1
    return {"train:affirmative": ~test & aff, "train:negated": ~test & neg, "train:both": ~test,
            "test:affirmative": test & aff, "test:negated": test & neg}


def probe_all_layers(X: torch.Tensor, y: torch.Tensor, polarity: torch.Tensor, masks: dict[str, torch.Tensor],
                     layers: list[int], C: float = 0.1) -> tuple[list[dict], list[dict]]:
    """Fit logistic and mass-mean probes on each training set (and TTPD on both polarities), every layer at
    once, and score them on each held-out set. Returns (scores, predictions): scores has one record per
    (method, train, test, layer) with accuracy and AUROC; predictions one per held-out row and probe
    (decision score and 0/1 prediction), from which every score can be recomputed."""
    import torch
    from ..probes import LogisticProbe
    from ..probes.mass_mean import MassMeanProbe
    from ..probes.ttpd import TTPDProbe

    fits = []
    for train in ("affirmative", "negated", "both"):
        m = masks[f"train:{train}"]
        fits.append(("logistic", train, LogisticProbe(C=C).fit(X[m], y[m])))
        fits.append(("mass-mean", train, MassMeanProbe().fit(X[m], y[m])))
    m = masks["train:both"]
    fits.append(("ttpd", "both", TTPDProbe(C=C).fit(X[m], y[m], polarity[m])))
    scores, preds = [], []
    for method, train, probe in fits:
        for test in ("affirmative", "negated"):
            rows = masks[f"test:{test}"].nonzero().flatten()
            z = torch.as_tensor(probe.decision_function(X[rows])).reshape(len(rows), len(layers)).float()
            yt = y[rows]
            for j, layer in enumerate(layers):
                pred = (z[:, j] > 0).long()
                scores.append({"method": method, "train": train, "test": test, "layer": layer,
                               "accuracy": (pred == yt).double().mean().item(), "auroc": auroc(z[:, j], yt),
                               "n_train": int(m.sum()) if train == "both" else int(masks[f"train:{train}"].sum()),
                               "n_test": len(rows)})
                preds.extend({"method": method, "train": train, "test": test, "layer": layer, "row": int(r),
                              "label": int(l), "score": float(s), "prediction": int(p)}
                             for r, l, s, p in zip(rows.tolist(), yt.tolist(), z[:, j].tolist(), pred.tolist()))
    return scores, preds


def _score(scores: list[dict], method: str, train: str, test: str, layer: int) -> dict:
    return next(s for s in scores if (s["method"], s["train"], s["test"], s["layer"]) == (method, train, test, layer))


def yes_no_token_ids(tokenizer) -> tuple[list[int], int, int]:
    """(shared prefix, yes id, no id): the tokens " Yes" and " No" share (none for smollm2; " " for a byte
    tokenizer), then the first token where they differ."""
    yes = tokenizer(" Yes", add_special_tokens=False)["input_ids"]
    no = tokenizer(" No", add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(yes), len(no)) and yes[k] == no[k]:
        k += 1
    if k == min(len(yes), len(no)):
        raise ValueError("this tokenizer does not tell ' Yes' from ' No'")
    return yes[:k], yes[k], no[k]


@torch_mode("inference_mode")
def yes_no_margins(lm, prompts: Sequence[str], batch_size: int = 32, share_prefix: bool = True) -> torch.Tensor:
    """log P(" Yes") - log P(" No") after each prompt, from the first token where " Yes" and " No" differ
    (the whole answer for single-token answers, as on smollm2; for multi-token answers, the prompt is
    extended by their shared prefix). float32 log-softmax over the vocabulary.

    share_prefix: the prompts' longest common token prefix (the few-shot examples) runs once and its KV cache
    is reused for every row (right padding, position ids continuing from it): two thirds of the demo's
    causal-test tokens. Hooks that act on every position act on that forward too, so the margins equal the
    unshared path (tested); pass False for hooks that act on one position only. Without it: left padding
    with position ids counted from each row's first real token, so padding changes nothing."""
    import torch
    from ..capture.engine import tokenize
    from ..models.cache import cache_kwargs, returned_cache
    from ..models.padding import expand_cache, pad_after_prefix, pad_token_id
    from ..models.scoring import logits_at

    prefix, yes, no = yes_no_token_ids(lm.tokenizer)
    tok = lm.tokenizer
    pad_id = pad_token_id(tok)
    ids = [t + prefix for t in tokenize(tok, prompts)]
    out = torch.empty(len(prompts), dtype=torch.float32)
    P = 0
    if share_prefix and len(ids) > 1:
        m = min(len(t) for t in ids) - 1  # every row keeps at least one token of its own
        while P < m and all(t[P] == ids[0][P] for t in ids):
            P += 1
    if P < 2:
        lp = lm.adapter.next_token_logprobs(ids, batch_size=batch_size)
        return lp[:, yes] - lp[:, no]
    head = returned_cache(lm.model(input_ids=torch.tensor([ids[0][:P]], device=lm.device), use_cache=True,
                                   logits_to_keep=1))
    for b in range(0, len(ids), batch_size):
        rows = [t[P:] for t in ids[b: b + batch_size]]
        n = len(rows)
        input_ids, mask, pos = pad_after_prefix(rows, P, pad_id, lm.device)
        last = [len(r) - 1 for r in rows]
        flat = logits_at(lm.model, list(range(n)), last,  # the head reads each row's last real position only
                         input_ids=input_ids, attention_mask=mask, position_ids=pos,
                         **cache_kwargs(lm.model, expand_cache(head, n)), use_cache=True)
        lp = torch.log_softmax(flat.float(), -1)
        out[b: b + n] = (lp[:, yes] - lp[:, no]).cpu()
    return out


def causal_test(lm, X_layer: torch.Tensor, y_train: torch.Tensor, layer: int, prompts: Sequence[str],
                labels: torch.Tensor, alphas: Sequence[float], n_random: int = 2, positions: str = "all",
                seed: int = 0, batch_size: int = 32) -> dict:
    """Steer along the truth direction at `layer` and measure the model's yes/no judgment on `prompts`.

    The direction is mean(true) - mean(false) of X_layer (training rows), unit, times the std of the
    training rows' projections on it (`fit_diff_means(normalize="sigma")`): alpha is in standard deviations.
    Controls: alpha = 0 (the hooks run and add zero) and `n_random` seeded Gaussian directions rescaled to
    the same norm. Per prompt, shift = margin(steered) - margin(unsteered); conditions report the mean
    shift with a bootstrap 95% interval, also for true and false statements separately, and the paired
    difference truth - random."""
    import torch
    from ..steer.residual import ResidualSteer, apply_residual, fit_diff_means

    steer = fit_diff_means({layer: X_layer}, y_train, normalize="sigma",
                           provenance={"fit_on": "affirmative training statements", "model": lm.name})
    v = steer.vectors[0]
    g = torch.Generator().manual_seed(seed)
    randoms = []
    for i in range(n_random):
        r = torch.randn(v.shape, generator=g)
        randoms.append(ResidualSteer([layer], (r / r.norm() * v.norm())[None], method="random",
                                     provenance={"seed": seed, "index": i}))
    share = positions == "all"  # a last-position hook must not see the cached head as its row
    base = yes_no_margins(lm, prompts, batch_size, share)
    labels = torch.as_tensor(labels)
    margins: dict[str, dict[float, torch.Tensor]] = {"truth": {}, "random": {}}
    for a in alphas:
        with apply_residual(lm, steer, positions=positions, alpha=a):
            margins["truth"][float(a)] = yes_no_margins(lm, prompts, batch_size, share)
        if a != 0:  # the random control at alpha 0 is the same zero vector
            rs = []
            for r in randoms:
                with apply_residual(lm, r, positions=positions, alpha=a):
                    rs.append(yes_no_margins(lm, prompts, batch_size, share))
            margins["random"][float(a)] = torch.stack(rs).mean(0)
        else:
            margins["random"][0.0] = margins["truth"][0.0]
    conditions = []
    for k, direction in enumerate(("truth", "random")):
        for a in alphas:
            shift = margins[direction][float(a)] - base
            mean, lo, hi = bootstrap_ci(shift, seed=seed + k)
            rec = {"direction": direction, "alpha": float(a), "mean_shift": mean, "ci_low": lo, "ci_high": hi,
                   "mean_shift_true": shift[labels == 1].mean().item(),
                   "mean_shift_false": shift[labels == 0].mean().item(),
                   "yes_rate": (margins[direction][float(a)] > 0).float().mean().item(), "n": len(shift)}
            if direction == "truth":
                d = shift - (margins["random"][float(a)] - base)
                rec["minus_random"], rec["minus_random_low"], rec["minus_random_high"] = bootstrap_ci(d, seed=seed + 2)
            conditions.append(rec)
    return {"layer": layer, "positions": positions, "alphas": [float(a) for a in alphas], "n_random": n_random,
            "sigma": float(steer.provenance["scales"][0]), "vector_norm": float(v.norm()),
            "direction": "diff of class means, affirmative training statements (unit x projection std)",
            "baseline_auroc": auroc(base, labels), "baseline_yes_rate": (base > 0).float().mean().item(),
            "conditions": conditions, "base": base, "margins": margins, "steer": steer}


@torch_mode("inference_mode")
def select_causal_layer(lm, X: torch.Tensor, y: torch.Tensor, layers: Sequence[int], candidates: Sequence[int],
                        prompts: Sequence[str], alpha: float = 4.0, positions: str = "all", seed: int = 0,
                        batch_size: int = 32) -> list[dict]:
    """Pick the causal test's layer on TRAINING data only: at each candidate layer, fit the truth direction
    on the training statements (as `causal_test` does), add it at +alpha std while the model answers
    training-city questions, and compare the mean change of log P(Yes) - log P(No) with one random direction
    of the same norm. Returns one record per candidate; the caller steers at the largest `minus_random`.
    (The probe's best layer was chosen on held-out accuracy and need not be where the model reads the
    direction: session measurements on smollm2 found the two apart.)"""
    import torch
    from ..steer.residual import ResidualSteer, apply_residual, fit_diff_means

    share = positions == "all"
    base = yes_no_margins(lm, prompts, batch_size, share)
    g = torch.Generator().manual_seed(seed + 1000)
    out = []
    for layer in candidates:
        li = layers.index(layer)
        steer = fit_diff_means({layer: X[:, li]}, y, normalize="sigma")
        v = steer.vectors[0]
        r = torch.randn(v.shape, generator=g)
        rnd = ResidualSteer([layer], (r / r.norm() * v.norm())[None], method="random")
        with apply_residual(lm, steer, positions=positions, alpha=alpha):
            t = (yes_no_margins(lm, prompts, batch_size, share) - base).mean().item()
        with apply_residual(lm, rnd, positions=positions, alpha=alpha):
            q = (yes_no_margins(lm, prompts, batch_size, share) - base).mean().item()
        out.append({"layer": layer, "alpha": alpha, "truth_shift": t, "random_shift": q, "minus_random": t - q,
                    "n": len(prompts)})
    return out


def _fmt_ci(c: dict, key: str = "mean_shift", lo: str = "ci_low", hi: str = "ci_high") -> str:
    return f"{c[key]:+.2f} [{c[lo]:+.2f}, {c[hi]:+.2f}]"


def findings(n_cities: tuple[int, int], sep: LayerSeparation, scores: list[dict], causal: dict) -> list[str]:
    """The three findings, one sentence each, worded from the numbers (a claim the numbers do not support is
    not made)."""
    L = sep.layer
    acc = lambda m, tr, te: _score(scores, m, tr, te, L)["accuracy"]  # noqa: E731
    f1 = (f"Find: trained on affirmative statements about {n_cities[0]} cities and tested on {n_cities[1]} held-out "
          f"cities, a logistic probe on the residual stream scores {sep.accuracy:.2f} accuracy (AUROC {sep.auroc:.2f}) "
          f"at its best layer, {L}; mass-mean {sep.mass_mean_accuracy:.2f}; chance is 0.50.")
    auc = lambda m, tr, te: _score(scores, m, tr, te, L)["auroc"]  # noqa: E731
    a2n, n2a = auc("logistic", "affirmative", "negated"), auc("logistic", "negated", "affirmative")
    fails = a2n < 0.5 and n2a < 0.5  # threshold-free: the held-out ranking itself is inverted
    f2 = (f"Where it fails: tested on negated statements, the probe trained on affirmative ones scores accuracy "
          f"{acc('logistic', 'affirmative', 'negated'):.2f} and AUROC {a2n:.2f} (mass-mean "
          f"{acc('mass-mean', 'affirmative', 'negated'):.2f} / {auc('mass-mean', 'affirmative', 'negated'):.2f}); "
          f"trained on negated, tested on affirmative, {acc('logistic', 'negated', 'affirmative'):.2f} / {n2a:.2f}"
          + (": the ranking is inverted, negation flips the direction it learnt" if fails else "")
          + f". TTPD, fitted on both polarities, scores {acc('ttpd', 'both', 'negated'):.2f} on negated and "
          f"{acc('ttpd', 'both', 'affirmative'):.2f} on affirmative held-out statements (a logistic probe fitted on "
          f"both: {acc('logistic', 'both', 'negated'):.2f} and {acc('logistic', 'both', 'affirmative'):.2f}).")
    top = max(causal["alphas"])
    c = {(r["direction"], r["alpha"]): r for r in causal["conditions"]}
    up, rnd, down = c[("truth", top)], c[("random", top)], c.get(("truth", -top))
    verdict = ("more than" if up["minus_random_low"] > 0 else
               "less than" if up["minus_random_high"] < 0 else "not distinguishably from")
    chosen = f", chosen on {causal['chosen_on']}" if causal.get("chosen_on") else ""
    f3 = (f"Causal test: adding the truth direction at layer {causal['layer']}{chosen} ({top:+g} std, {causal['positions']} "
          f"positions) changes log P(Yes) - log P(No) by {_fmt_ci(up)} on {up['n']} held-out questions, {verdict} a "
          f"random direction of the same norm ({_fmt_ci(rnd)}; difference {_fmt_ci(up, 'minus_random', 'minus_random_low', 'minus_random_high')})"
          + (f"; {-top:+g} std changes it by {_fmt_ci(down)}" if down else "")
          + "; alpha 0 by exactly 0 (95% bootstrap intervals).")
    return [f1, f2, f3]



def default_out() -> Path:
    """Where a demo run goes without `out`: runs/demo-<timestamp>."""
    return Path("runs") / f"demo-{time.strftime('%Y%m%d-%H%M%S')}"


# ------------------------------------------------------------------------------------------ the run, in steps

def capture_step(lm, stmts, test_cities: set[str], store: Path, progress: bool = True):
    """Capture the last-token residual stream of every statement, every layer, into the run's store.
    Returns (X [N, L, D] float32, layers, labels, polarities, the store's summary)."""
    import torch
    from ..capture import capture_dataset
    from ..data import TextDataset

    ds = TextDataset("facts:cities", [s.text for s in stmts], [s.label for s in stmts],
                     ["affirmative" if s.polarity > 0 else "negated" for s in stmts],
                     [{"city": s.city, "country": s.country, "true_country": s.true_country, "polarity": s.polarity,
                       "held_out": s.city in test_cities} for s in stmts])
    acts = capture_dataset(lm, ds, "resid", out=store, progress=progress, batch_size=32)
    return (acts.stack("resid").float(), acts.layers("resid"), torch.tensor([s.label for s in stmts]),
            torch.tensor([s.polarity for s in stmts]), acts.summary())


def probe_step(X: torch.Tensor, y: torch.Tensor, pol: torch.Tensor, masks: dict, layers: list[int], C: float):
    """Every probe on every layer (`probe_all_layers`). Returns (scores, predictions, separation per layer,
    the best layer's row (first of the ties by accuracy, then AUROC), transfer at the best layer)."""
    scores, preds = probe_all_layers(X, y, pol, masks, layers, C=C)
    rows = []
    for l in layers:
        lr, mm = _score(scores, "logistic", "affirmative", "affirmative", l), _score(scores, "mass-mean", "affirmative", "affirmative", l)
        neg = _score(scores, "logistic", "affirmative", "negated", l)
        rows.append(LayerSeparation(l, lr["accuracy"], lr["auroc"], mm["accuracy"], mm["auroc"], neg["accuracy"],
                                    neg["auroc"]))
    best = max(rows, key=lambda r: (r.accuracy, r.auroc))
    transfer = [{"method": m, "train": tr, "test": te, **{k: _score(scores, m, tr, te, best.layer)[k] for k in
                                                          ("accuracy", "auroc", "n_train", "n_test")}}
                for m in ("logistic", "mass-mean", "ttpd") for tr, te in CONDITIONS
                if m != "ttpd" or tr == "both"]
    return scores, preds, rows, best, transfer


def causal_step(lm, cfg: DemoConfig, stmts, test_cities: set[str], X: torch.Tensor, y: torch.Tensor,
                train: torch.Tensor, layers: list[int], best_layer: int, log: Callable[[str], None]):
    """Choose the causal layer on training-city questions (unless `causal_layer` is set), then `causal_test`
    on the held-out affirmative questions. Returns (causal, the layer selection records, held-out statements)."""
    import torch
    alphas = cfg.causal_alphas()
    held = [s for s in stmts if s.polarity == 1 and s.city in test_cities][:cfg.n_causal]
    selection = []
    if cfg.causal_layer is None:
        n = len(layers)
        candidates = [l for l in layers[n // 4: (3 * n) // 4 + 1: max(1, cfg.select_every)]] or [best_layer]
        sel = [s for s in stmts if s.polarity == 1 and s.city not in test_cities][:cfg.n_select]
        log(f"      choosing the causal layer on {len(sel)} training-city questions: layers "
            f"{', '.join(map(str, candidates))}, {max(alphas):+g} std, truth vs a random direction")
        selection = select_causal_layer(lm, X[train], y[train], layers, candidates,
                                        [FEW_SHOT + s.question for s in sel], alpha=max(max(alphas), 1.0),
                                        positions=cfg.positions, seed=cfg.seed)
        steer_layer = max(selection, key=lambda r: r["minus_random"])["layer"]
    else:
        steer_layer = cfg.causal_layer
    if steer_layer not in layers:
        raise BadInput(f"causal_layer {steer_layer} is not a layer of this model (0..{len(layers) - 1})")
    log(f"[5/5] causal test at layer {steer_layer}: the truth direction added ({cfg.positions} positions) while "
        f"the model answers {len(held)} held-out questions, alpha in {', '.join(f'{a:g}' for a in alphas)} "
        f"(std of the projection), {cfg.n_random} random directions of the same norm as control")
    causal = causal_test(lm, X[train][:, layers.index(steer_layer)], y[train], steer_layer,
                         [FEW_SHOT + s.question for s in held], torch.tensor([s.label for s in held]), alphas,
                         n_random=cfg.n_random, positions=cfg.positions, seed=cfg.seed)
    causal["chosen_on"] = "training-city questions" if selection else "the causal_layer option"
    return causal, selection, held


def causal_tables(causal: dict, held, n_examples: int) -> tuple[list[dict], list[dict]]:
    """(per-prompt margins for causal_prompts.csv, the first `n_examples` questions before and after)."""
    top = max(causal["alphas"])
    m = causal["margins"]
    per_prompt = [{"row": i, "question": s.question, "label": s.label, "base": float(causal["base"][i]),
                   **{f"{d}_{a:+g}": float(m[d][a][i]) for d in ("truth", "random") for a in causal["alphas"]}}
                  for i, s in enumerate(held)]
    examples = [{"question": s.question, "truth": "true" if s.label else "false",
                 "before (alpha 0)": round(float(causal["base"][i]), 3),
                 f"after +{top:g} std": round(float(m["truth"][top][i]), 3),
                 f"after -{top:g} std": round(float(m["truth"][-top][i]), 3) if -top in m["truth"] else None,
                 f"random +{top:g} std": round(float(m["random"][top][i]), 3)}
                for i, s in enumerate(held[:n_examples])]
    return per_prompt, examples


def iti_step(lm, cfg: DemoConfig, data_dir, intervention_path: Path, progress: bool = True) -> dict:
    """ITI on the first `tqa_questions` TruthfulQA questions: heads at the last token of every (question,
    answer) row, fitted on one fold; the first three questions of the other fold answered before and after."""
    from ..data import load_truthfulqa
    from ..evaluate.generation import generate_answers
    from ..steer import apply
    from ..probes.splits import question_folds
    from ..steer.iti import ITIConfig, fit_fold, load_iti_data

    data = load_iti_data(lm, data_dir=data_dir, limit=cfg.tqa_questions, progress=progress)
    folds = question_folds(data.questions, 2, seed=cfg.seed)
    fit = fit_fold(data, folds[0], ITIConfig(seed=cfg.seed, max_k=cfg.iti_k), fold=0, test_questions=folds[1])
    items = {it.index: it for it in load_truthfulqa(data_dir)}
    shown = [int(q) for q in folds[1][:3]]
    questions = [items[q].question for q in shown]
    iv = fit.intervention(min(cfg.iti_k, len(fit.heads)), cfg.iti_alpha)
    iv.write(intervention_path)
    before = generate_answers(lm, questions, shown, max_new_tokens=cfg.max_new_tokens)
    with apply(lm, iv, positions="last"):
        after = generate_answers(lm, questions, shown, max_new_tokens=cfg.max_new_tokens)
    return {"examples": [{"question": q, "before ITI": b.answer, "after ITI": a.answer}
                         for q, b, a in zip(questions, before, after)],
            "iti": {"source": "truthfulqa", "k": iv.k, "alpha": iv.alpha, "heads": iv.heads,
                    "val_acc_top": [float(fit.head_scores[l, h]) for l, h in iv.heads]}}


def run_demo(config: DemoConfig | None = None, out: str | Path | None = None, *, overwrite: bool = False,
             log: Callable[[str], None] | None = None, progress: bool = True, **options) -> DemoResult:
    """Run the demo into the run folder `out` (default `default_out()`) and return its result. `veracity demo`
    then renders the folder's report.html; from Python that is one line:
    `veracity.report.render_report([run_folder], run_folder / "report.html")`.

    `log` gets one line per step (`veracity demo` prints them); `progress` shows the capture's progress bar.
    Keyword `options` (model=..., n_cities=...) build the DemoConfig when none is given. Files: results.json
    (everything), separation.csv (per layer, in distribution), transfer.csv (every method x train x test x
    layer), predictions.csv (every held-out decision score), causal.csv, causal_prompts.csv (per prompt
    margins), examples.csv, statements.csv, the capture store and the steering vector (truth_direction.*)."""
    from ..probes.splits import held_out_groups
    from ..data import resolve_data_dir
    from ..data.facts import city_statements
    from ..models import load_checked
    from ..runs import RunFolder

    if config is None:
        config = DemoConfig(**{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
    elif options:
        raise TypeError(f"run_demo takes a DemoConfig or keyword options, not both ({', '.join(options)})")
    cfg = config
    say = log or (lambda m: None)
    out = Path(out) if out else default_out()
    data_dir = resolve_data_dir(cfg.data_dir)
    alphas = cfg.causal_alphas()
    stmts = city_statements(seed=cfg.seed, limit=cfg.n_cities)
    record = {"model": cfg.model, "dataset": "facts:cities", "n_cities": cfg.n_cities, "test_frac": cfg.test_frac,
              "C": cfg.C, "alphas": alphas, "n_causal": cfg.n_causal, "n_random": cfg.n_random,
              "positions": cfg.positions, "causal_layer": cfg.causal_layer, "n_select": cfg.n_select,
              "select_every": cfg.select_every, "few_shot": FEW_SHOT, "n_examples": cfg.n_examples,
              "data_dir": data_dir, "iti_k": cfg.iti_k, "iti_alpha": cfg.iti_alpha,
              "tqa_questions": cfg.tqa_questions, "max_new_tokens": cfg.max_new_tokens}
    run = RunFolder(out, "demo", record, seed=cfg.seed, overwrite=overwrite, defer=True)  # checked, not created
    t0 = time.time()
    timings: dict[str, float] = {}
    say(f"[1/5] loading {cfg.model} (the first run converts the GGUF once, ~30 s)")
    lm = load_checked(cfg.model)
    run.start()
    say(f"      {lm.arch.model_type}: {lm.arch.n_layers} layers, hidden size {lm.arch.hidden_size}")
    timings["load"] = time.time() - t0

    t = time.time()
    test_cities = held_out_groups([s.city for s in stmts], cfg.test_frac, cfg.seed)
    n_cities_total = len({s.city for s in stmts})
    say(f"[2/5] capturing {len(stmts)} statements about {n_cities_total} cities (residual stream, last "
        f"token, every layer), e.g. {stmts[0].text!r} / {stmts[3].text!r}")
    X, layers, y, pol, capture_summary = capture_step(lm, stmts, test_cities, run.file("capture"), progress)
    timings["capture"] = time.time() - t

    t = time.time()
    masks = _masks(stmts, test_cities)
    n_split = (n_cities_total - len(test_cities), len(test_cities))
    say(f"[3/5] probing every layer: trained on {n_split[0]} cities, scored on {n_split[1]} held-out cities")
    scores, preds, separation, best, transfer = probe_step(X, y, pol, masks, layers, cfg.C)
    say(f"[4/5] where it fails: train on one polarity, test on the other (layer {best.layer})")
    timings["probes"] = time.time() - t

    t = time.time()
    causal, selection, held = causal_step(lm, cfg, stmts, test_cities, X, y, masks["train:affirmative"], layers,
                                          best.layer, say)
    causal["steer"].write(run.file("truth_direction"))
    per_prompt, examples = causal_tables(causal, held, cfg.n_examples)
    timings["causal"] = time.time() - t

    iti = None
    if data_dir is not None and (Path(data_dir) / "truthfulqa").is_dir():
        t = time.time()
        say(f"[+] ITI on the first {cfg.tqa_questions} TruthfulQA questions: fitted on one fold, shown on the other")
        iti = iti_step(lm, cfg, data_dir, run.file("intervention"), progress)
        timings["iti"] = time.time() - t
    else:
        say("      (ITI on TruthfulQA skipped: no data folder; set VERACITY_DATA or --data-dir)")

    files = {"statements.csv": [{"row": i, "text": s.text, "label": s.label, "polarity": s.polarity, "city": s.city,
                                 "held_out": s.city in test_cities} for i, s in enumerate(stmts)],
             "separation.csv": separation, "transfer.csv": scores, "predictions.csv": preds,
             "causal.csv": causal["conditions"]}
    if selection:
        files["causal_layer_selection.csv"] = selection
    files.update({"causal_prompts.csv": per_prompt, "examples.csv": examples})
    if iti is not None:
        files["iti_examples.csv"] = iti["examples"]
    result = DemoResult(
        findings(n_split, best, scores, causal), separation, best.layer, transfer,
        {k: v for k, v in causal.items() if k not in ("base", "margins", "steer")}, examples, layers,
        {"n": len(stmts), "cities": n_cities_total, "train_cities": n_split[0], "test_cities": n_split[1],
         "rows": {k: int(v.sum()) for k, v in masks.items()}},
        {"chosen": causal["layer"], "on": "training cities" if selection else "causal_layer", "candidates": selection},
        capture_summary, timings, time.time() - t0, iti["iti"] if iti else None, iti["examples"] if iti else [],
        files=files)
    result.write(run)
    return result
