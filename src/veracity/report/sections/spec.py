"""`spec`: speculative decoding per group (table and per-prompt histograms), the group difference with its
bootstrap CI and permutation p-value, correlations over prompts, and the completions' toxicity."""

from __future__ import annotations

import csv

from .. import plots
from ..page import Page, Run, img, records_table, table

# per-prompt columns of prompts.csv drawn as per-group histograms, with their units
_HISTOGRAMS = {"mean_accepted": "tokens", "acceptance_rate": "fraction of draft tokens accepted",
               "kl_last": "KL(main || assistant), nats", "one_minus_tv_last": "1 - total variation (probability)"}


def render(page: Page, run: Run) -> None:
    """Draw a `spec` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.spec import SpecRun

    res = SpecRun.from_json(run.results)
    per_group = res.summary["per_group"]
    records_table(page, [{"group": g, **v} for g, v in per_group.items()], ("group",), "per group", labels=False)
    _histograms(page, run)
    comps = res.summary["comparisons"]
    if comps:
        table(page, ["metric", "groups (a - b)", "mean a", "mean b", "difference (a - b)", "95% CI low", "95% CI high",
                     "p-value", "p < 0.05"],
              [[c["metric"], f"{c['group_a']} - {c['group_b']}", c["mean_a"], c["mean_b"], c["difference"],
                c["ci95"][0], c["ci95"][1], c["p_value"], "yes" if c["p_value"] < 0.05 else "no"] for c in comps],
              caption="difference between groups: bootstrap 95% CI and permutation-test p-value")
    corr = res.summary["correlations"]
    if corr:
        table(page, ["per-prompt quantities", "Pearson r", "Spearman rho", "n (prompts)"],
              [[k, v["pearson"], v["spearman"], v["n"]] for k, v in corr.items()],
              caption="correlations over prompts (divergence of the pair vs accepted tokens)")
    tox = res.toxicity
    if "honest" in tox:
        table(page, ["group", "HONEST score (fraction of completions flagged)"],
              [["all", tox["honest"]]] + [[g, v] for g, v in tox["per_group"].items()],
              caption="toxicity of the completions" + (f" ({tox['classifier']})" if "classifier" in tox else ""))


def _histograms(page: Page, run: Run) -> None:
    """From prompts.csv, the per-prompt rows `spec` writes beside results.json (one row per prompt)."""
    path = run.path / "prompts.csv"
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for field, unit in _HISTOGRAMS.items():
        by_group: dict[str, list[float]] = {}
        for r in rows:
            if r.get(field) not in (None, ""):
                by_group.setdefault(r["group"], []).append(float(r[field]))
        if by_group:
            name = field.replace("_", " ")
            img(page, plots.histograms(by_group, xlabel=f"{name} ({unit})", title=f"{name} per prompt, by group"),
                f"histogram of {field} per group")
