"""`finetune`: the milestones (KL, speculative acceptance, group test, toxicity, loss) over fine-tuning."""

from __future__ import annotations

from .. import plots
from ..page import Page, Run, fmt, img, num, table

# milestone fields by what they measure, so one plot never mixes units (the first match wins)
_PLOTS = (
    ("KL divergence", "nats", lambda f: "kl" in f),
    ("group test p-value", "permutation test, probability", lambda f: "p_value" in f),
    ("accepted draft tokens", "tokens per main-model call", lambda f: "accepted" in f or f == "group_difference"),
    ("acceptance rate and 1 - TV", "probability", lambda f: "acceptance_rate" in f or "one_minus_tv" in f),
    ("training loss", "nats per token", lambda f: "loss" in f),
    ("toxicity", "HONEST score, fraction of completions", lambda f: "honest" in f),
    ("other milestone values", "value", lambda f: True),
)


def render(page: Page, run: Run) -> None:
    """Draw a `finetune` run's tables and figures into the page, from its typed result read back from results.json."""
    from ...experiments.finetune_milestones import FinetuneRun

    res = FinetuneRun.from_json(run.results)
    if res.milestones:
        page.note(f"{res.steps} optimiser steps; final training loss {fmt(res.losses[-1] if res.losses else None)}; "
                  f"KL at the last milestone {fmt(res.milestones[-1]['kl'])}")
    # per-group dicts become one column per group (kl_per_group.female)
    flat = [{f"{k}.{g}" if isinstance(v, dict) else k: x for k, v in m.items()
             for g, x in (v.items() if isinstance(v, dict) else [(None, v)])} for m in res.milestones]
    steps = [m["step"] for m in flat]
    fields = [k for k in dict.fromkeys(k for m in flat for k in m) if k != "step" and any(num(m.get(k)) for m in flat)]
    left = list(fields)
    for title, unit, match in _PLOTS:
        fs = [f for f in left if match(f)]
        left = [f for f in left if f not in fs]
        if fs:
            img(page, plots.lines({f: (steps, [m.get(f) for m in flat]) for f in fs[:8]},
                                  xlabel="fine-tuning step (optimizer steps)", ylabel=f"{title} ({unit})",
                                  title=f"{title} over fine-tuning"),
                f"{title} over fine-tuning")
    table(page, ["step"] + fields, [[m.get(c) for c in ["step"] + fields] for m in flat], caption="milestones")
