"""TruthfulQA's binary task with and without each fold's ITI intervention of a finished (or running)
`veracity iti validate` folder: the fold interventions (intervention_fold<k>.json, which record their
held-out questions) are applied to those questions only. Prints JSON (per fold and question-weighted means,
chance 0.5); `iti validate --binary` measures the same inside the run.

    python benchmarks/iti_binary_folds.py --run runs/iti13-default-k48a15 --out runs/iti-binary-2021.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--model", default=None, help="default: the run's config.json model")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--fold", type=int, action="append", default=None,
                    help="only these folds (repeatable; default: every intervention_fold* of the run)")
    ap.add_argument("--mc", action="store_true",
                    help="also MC1/MC2 with the intervention (the run's protocol, as `iti validate` scores a fold: "
                         "finishes a validate run stopped during a fold from its saved intervention)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the plain model's binary task")
    a = ap.parse_args()

    from veracity.data.truthfulqa import load_truthfulqa
    from veracity.evaluate.binary import score_binary
    from veracity.models import load
    from veracity.steer import Intervention
    from veracity.steer.apply import intervention_factory

    cfg = json.loads((a.run / "config.json").read_text())
    lm = load(a.model or cfg["model"])
    t0 = time.time()
    folds = []
    for path in sorted(a.run.glob("intervention_fold*.json")):
        iv = Intervention.load(path.with_suffix(""))
        prov = iv.provenance
        if a.fold is not None and int(prov.get("fold", -1)) not in a.fold:
            continue
        items = {it.index: it for it in load_truthfulqa(a.data_dir, prov.get("revision", "2021"))}
        test = [items[int(q)] for q in prov["test_questions"] if int(q) in items]
        base = None if a.no_baseline else score_binary(lm, test).variants
        mc_shift = cfg.get("mc_shift_from", "answer-start")
        iti = score_binary(lm, test, intervention=intervention_factory(lm, iv, "last", mc_shift)).variants
        row = {"fold": prov.get("fold"), "n": len(test), "k": iv.k, "alpha": iv.alpha,
               "iti": {v: d["accuracy"] for v, d in iti.items()}}
        if base is not None:
            row["baseline"] = {v: d["accuracy"] for v, d in base.items()}
        if a.mc:
            from veracity.experiments.iti_validate import FoldEvalConfig, evaluate_intervention

            ecfg = FoldEvalConfig(protocol=cfg.get("protocol", "truthfulqa"), judge="none", ce_texts=0,
                                  mc_shift_from=mc_shift)
            m = evaluate_intervention(lm, test, iv, ecfg, None, fold=int(prov.get("fold", 0)))["metrics"]
            row["iti"].update(mc1=m["mc1"], mc2=m["mc2"])
        folds.append(row)
        print(json.dumps(folds[-1]), flush=True)
    n = sum(f["n"] for f in folds)
    mean = {side: {v: sum(f[side][v] * f["n"] for f in folds) / n for v in folds[0][side]}
            for side in ("baseline", "iti") if all(side in f for f in folds)} if folds else {}
    out = {"run": str(a.run), "folds": folds, "question_weighted": mean, "chance": 0.5, "seconds": time.time() - t0}
    text = json.dumps(out, indent=1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
