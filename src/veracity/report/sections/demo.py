"""`demo`: the three findings first (sentences with their numbers), then the figures and tables behind them."""

from __future__ import annotations

from dataclasses import asdict

from .. import plots
from ..page import Page, Run, esc, fmt, img, table
from .common import answers_table

# separation fields drawn by layer, and their legend names
_SEPARATION = {"accuracy": "logistic accuracy", "auroc": "logistic AUROC", "mass_mean_accuracy": "mass-mean accuracy",
               "negated_auroc": "logistic AUROC, tested on negated"}


def render(page: Page, run: Run) -> None:
    """Draw a `demo` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.demo import DemoResult

    res = DemoResult.from_json(run.results)
    page.add('<ol class="findings">' + "".join(f"<li>{esc(f)}</li>" for f in res.findings) + "</ol>")
    _separation(page, res)
    _transfer(page, res)
    _causal(page, res)
    if res.examples:
        cols = list(res.examples[0])
        table(page, cols, [[r.get(k) for k in cols] for r in res.examples],
              caption="log P(Yes) - log P(No) before and after steering (the first held-out questions, not selected)")
    if res.iti_examples:
        answers_table(page, [{"question": r["question"], "before": r["before ITI"], "after": r["after ITI"]}
                             for r in res.iti_examples],
                      "questions answered before and after ITI (the first held-out questions)")


def _separation(page: Page, res) -> None:
    rows = [asdict(r) for r in res.separation]
    layers = [r["layer"] for r in rows]
    img(page, plots.lines({name: (layers, [r[k] for r in rows]) for k, name in _SEPARATION.items()},
                          xlabel="layer (decoder block index)", ylabel="held-out score (fraction)",
                          title=f"truth probes trained on affirmative statements, held-out cities; best layer "
                                f"{res.best_layer}", hlines={"chance (0.5)": 0.5},
                          styles={_SEPARATION["negated_auroc"]: "s--"}),
        "finding 1 (and the failure of finding 2): held-out accuracy and AUROC by layer, chance 0.5")
    cols = list(rows[0])
    table(page, cols, [[r[c] for c in cols] for r in rows], caption="separation by layer",
          note="accuracy/auroc: logistic probe trained and tested on affirmative statements (held-out cities); "
               "negated_accuracy/auroc: that probe on held-out negated statements")


def _transfer(page: Page, res) -> None:
    short = {"affirmative": "aff", "negated": "neg"}
    for metric, what in (("accuracy", "held-out accuracy (fraction)"), ("auroc", "held-out AUROC (fraction)")):
        groups: dict[str, dict] = {}
        for r in res.transfer:
            key = f"{short.get(r['train'], r['train'])}->{short.get(r['test'], r['test'])}"
            groups.setdefault(key, {})[r["method"]] = r[metric]
        img(page, plots.bars(groups, xlabel="trained on -> tested on (aff = affirmative, neg = negated statements)",
                             ylabel=what, title=f"where it fails: across polarity (layer {res.best_layer})",
                             hlines={"chance (0.5)": 0.5}),
            f"finding 2: {metric} across polarities (an AUROC below 0.5 is an inverted ranking); "
            "TTPD needs both polarities to fit")
    cols = ["method", "train", "test", "accuracy", "auroc", "n_train", "n_test"]
    table(page, cols, [[r[c] for c in cols] for r in res.transfer], caption="transfer across polarity at the best layer")


def _causal(page: Page, res) -> None:
    c = res.causal
    groups: dict[str, dict] = {}
    errors: dict[str, dict] = {}
    for r in c["conditions"]:
        key, name = f"{r['alpha']:+g}", f"{r['direction']} direction"
        groups.setdefault(key, {})[name] = r["mean_shift"]
        errors.setdefault(key, {})[name] = (r["ci_low"], r["ci_high"])
    img(page, plots.bars(groups, errors=errors, xlabel="alpha (std of the projection on the direction)",
                         ylabel="shift of log P(Yes) - log P(No) (nats)",
                         title=f"causal test at layer {c['layer']} ({c['positions']} positions), 95% CI",
                         hlines={"no change (0)": 0.0}),
        "finding 3: the model's yes/no judgment moves with the truth direction, not with a random one")
    cols = list(dict.fromkeys(k for r in c["conditions"] for k in r))
    table(page, cols, [[r.get(k) for k in cols] for r in c["conditions"]], caption="causal test: mean shift per condition",
          note=f"direction: {c['direction']}; sigma {fmt(c['sigma'])}; {c['n_random']} random directions of the same "
               "norm averaged per question; baseline AUROC of the yes/no margin on these questions "
               f"{fmt(c['baseline_auroc'])}")
