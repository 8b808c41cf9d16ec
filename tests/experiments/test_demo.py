"""`veracity demo`: the embedded facts, the helpers against hand/numpy/sklearn references, the whole run on
tiny-llama (structure and internal consistency: every score recomputed from the saved predictions, the
alpha = 0 control exactly zero), the answer read and the probe step on both real models (smollm2 and Gemma-3-270M),
and on smollm2 the whole run's findings (slow, real)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from veracity.data.facts import CITIES, COUNTRIES, city_statements, city_text
from veracity.experiments.demo import DemoConfig, auroc, bootstrap_ci, yes_no_margins
from veracity.experiments.registry import STUDIES
from veracity.probes.splits import held_out_groups


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------ facts

def test_city_statements_are_balanced_and_labelled_by_their_meaning():
    stmts = city_statements(seed=3)
    assert len({c for c, _ in CITIES}) == len(CITIES) >= 100  # every city once: labels are unambiguous
    assert len(stmts) == 4 * len(CITIES)
    truth = dict(CITIES)
    for s in stmts:
        negated = " is not in " in s.text
        assert s.polarity == (-1 if negated else 1)
        assert s.text == city_text(s.city, s.country, negated)
        assert s.true_country == truth[s.city] and s.country in COUNTRIES
        assert s.label == int((s.country == truth[s.city]) != negated)  # "not in" the wrong country is true
    for pol in (1, -1):
        labs = [s.label for s in stmts if s.polarity == pol]
        assert sum(labs) * 2 == len(labs)
    by_city = {}
    for s in stmts:
        by_city.setdefault(s.city, set()).add(s.country)
    assert all(len(v) == 2 for v in by_city.values())  # one right and one wrong country per city
    assert city_statements(seed=3) == stmts and city_statements(seed=4) != stmts
    assert len(city_statements(limit=5)) == 20


def test_city_split_holds_out_whole_cities():
    cities = [c for c, _ in CITIES] * 4
    test = held_out_groups(cities, 0.3, seed=1)
    assert len(test) == round(0.3 * len(CITIES)) and test < set(cities)
    assert test == held_out_groups(cities, 0.3, seed=1) != held_out_groups(cities, 0.3, seed=2)
    # the demo's draw, by hand: random.Random(seed).shuffle of the sorted distinct cities
    import random

    uniq = sorted(set(cities))
    random.Random(1).shuffle(uniq)
    assert test == set(uniq[:round(0.3 * len(uniq))])
    # the judges' draw, by hand: numpy's default_rng(seed).shuffle
    uq = sorted(set(cities))
    np.random.default_rng(1).shuffle(uq)
    assert held_out_groups(cities, 0.3, seed=1, draw="numpy") == set(uq[:round(0.3 * len(uq))])


def test_auroc_and_bootstrap_match_references():
    from sklearn.metrics import roc_auc_score

    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=50).round(1), rng.integers(0, 2, 50)  # rounded: ties count half, as sklearn
    assert auroc(torch.tensor(s), torch.tensor(y)) == pytest.approx(roc_auc_score(y, s))
    x = rng.normal(1.0, 2.0, 200)
    mean, lo, hi = bootstrap_ci(torch.tensor(x), seed=0)
    assert mean == pytest.approx(x.mean())
    se = x.std(ddof=1) / np.sqrt(len(x))  # the bootstrap interval is close to the normal one for 200 rows
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.4 * se) and hi == pytest.approx(x.mean() + 1.96 * se, abs=0.4 * se)
    assert bootstrap_ci(torch.zeros(10)) == (0.0, 0.0, 0.0)


def test_yes_no_margins_match_one_prompt_at_a_time(tiny_llama):
    """Batched, left-padded margins equal an unpadded forward per prompt (byte tokenizer: ' Yes' and ' No'
    share ' ', so the margin is taken at 'Y' vs 'N' after the prompt plus ' ')."""
    tok = tiny_llama.tokenizer
    prompts = ["Is it true that the city of Oslo is in Norway? Answer:", "Q? Answer:", "A much longer prompt here. Answer:"]
    got = yes_no_margins(tiny_llama, prompts, batch_size=2)
    sp, y, n = tok(" ", add_special_tokens=False)["input_ids"], tok("Y", add_special_tokens=False)["input_ids"][0], \
        tok("N", add_special_tokens=False)["input_ids"][0]
    for p, g in zip(prompts, got):
        ids = torch.tensor([tok(p)["input_ids"] + sp])
        with torch.no_grad():
            lp = torch.log_softmax(tiny_llama.model(input_ids=ids).logits[0, -1].float(), -1)
        assert float(g) == pytest.approx(float(lp[y] - lp[n]), abs=1e-4)


def test_yes_no_margins_shared_prefix_equals_unshared(tiny_llama):
    """The few-shot head run once with its KV cache reused == every prompt run whole, with and without a
    residual steer acting on every position (the demo's causal test)."""
    from veracity.experiments.demo import FEW_SHOT
    from veracity.steer.residual import ResidualSteer, apply_residual

    prompts = [FEW_SHOT + q for q in ("Is it true that the city of Oslo is in Norway? Answer:",
                                      "Is it true that the city of Lima is in Chad? Answer:", "Is it? Answer:")]
    D = tiny_llama.arch.hidden_size
    steer = ResidualSteer([1], torch.randn(1, D, generator=torch.Generator().manual_seed(0)), method="random")
    for ctx in (None, steer):
        if ctx is None:
            a, b = yes_no_margins(tiny_llama, prompts, 2, True), yes_no_margins(tiny_llama, prompts, 2, False)
        else:
            with apply_residual(tiny_llama, steer, positions="all", alpha=3.0):
                a, b = yes_no_margins(tiny_llama, prompts, 2, True), yes_no_margins(tiny_llama, prompts, 2, False)
        assert torch.allclose(a, b, atol=1e-4), (a, b)
    assert not torch.allclose(a, yes_no_margins(tiny_llama, prompts, 2, False), atol=1e-3)  # the steer moved it


@pytest.mark.real
def test_yes_no_margins_on_real_model(real_lm):
    """The demo's answer read on both real tokenizers (" Yes" / " No" one token each; Gemma's adds <bos>):
    the few-shot head's KV cache shared across rows (Gemma 3: a sliding-window cache) == each prompt alone by
    hand, and under a residual steer on every position == the unshared path."""
    from veracity.experiments.demo import FEW_SHOT
    from veracity.steer.residual import ResidualSteer, apply_residual

    lm, tok = real_lm, real_lm.tokenizer
    prompts = [FEW_SHOT + f"Is it true that the city of {c} is in {k}? Answer:"
               for c, k in (("Oslo", "Norway"), ("Lima", "Chad"), ("Kyoto", "Japan"))]
    (y,), (n,) = tok(" Yes", add_special_tokens=False)["input_ids"], tok(" No", add_special_tokens=False)["input_ids"]
    got = yes_no_margins(lm, prompts, batch_size=2)
    for p, g in zip(prompts, got):
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(input_ids=torch.tensor([tok(p)["input_ids"]])).logits[0, -1].float(), -1)
        assert float(g) == pytest.approx(float(lp[y] - lp[n]), abs=1e-4)
    L, D = lm.arch.n_layers, lm.arch.hidden_size
    steer = ResidualSteer([L // 2], torch.randn(1, D, generator=torch.Generator().manual_seed(0)), method="random")
    with apply_residual(lm, steer, positions="all", alpha=3.0):
        a, b = yes_no_margins(lm, prompts, 2, True), yes_no_margins(lm, prompts, 2, False)
    assert torch.allclose(a, b, atol=1e-4), (a, b)
    assert (a - got).abs().max() > 1e-2  # the steer moved the answers


# ------------------------------------------------------------------------------------------ the run

@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The demo run, and its report rendered as a notebook user does (`veracity demo` does the same)."""
    from veracity.experiments.demo import run_demo
    from veracity.report import render_report

    out = tmp_path_factory.mktemp("demo") / "run"
    res = run_demo(out=out, model="tiny-llama", n_cities=20, n_causal=12, alphas=(-2.0, 2.0), n_random=1,
                   n_examples=4, progress=False, data_dir=out.parent / "no-data")
    render_report([out], out / "report.html")
    return out, res


def test_demo_writes_findings_report_and_tables(tiny_demo):
    out, res = tiny_demo
    for f in ("results.json", "config.json", "report.html", "separation.csv", "transfer.csv", "predictions.csv",
              "causal.csv", "causal_prompts.csv", "examples.csv", "statements.csv", "truth_direction.json"):
        assert (out / f).exists(), f
    saved = json.loads((out / "results.json").read_text())
    assert saved["kind"] == "demo" and len(saved["findings"]) == 3
    # the layout of results.json before DemoConfig / DemoResult (old demo folders still read, `veracity report`)
    assert list(saved) == ["kind", "headline", "schema_version", "findings", "separation", "best_layer", "layers",
                           "statements", "transfer", "causal", "causal_layer_selection", "examples", "capture",
                           "timings", "seconds"]
    assert saved["headline"] == res.headline() and list(saved["headline"]) == list(STUDIES["demo"].headline)
    assert [f.split(":")[0] for f in saved["findings"]] == ["Find", "Where it fails", "Causal test"]
    assert len(saved["separation"]) == 4 and saved["layers"] == [0, 1, 2, 3]
    assert saved["causal"]["alphas"] == [-2.0, 0.0, 2.0]  # alpha 0 always added as the control
    assert "iti" not in saved  # no TruthfulQA folder: the ITI step is skipped
    html = (out / "report.html").read_text()
    assert html.index(saved["findings"][0][:40]) < html.index("<img")  # findings lead, then the figures
    for caption in ("separation by layer", "transfer across polarity at the best layer",
                    "causal test: mean shift per condition", "log P(Yes) - log P(No) before and after steering"):
        assert caption in html, caption
    assert html.count("<img") >= 3


def test_demo_scores_recompute_from_saved_predictions(tiny_demo):
    from sklearn.metrics import roc_auc_score

    out, res = tiny_demo
    stmts = _csv(out / "statements.csv")
    held = {int(r["row"]) for r in stmts if r["held_out"] == "True"}
    train_cities = {r["city"] for r in stmts if r["held_out"] == "False"}
    assert train_cities.isdisjoint({r["city"] for r in stmts if r["held_out"] == "True"})
    preds: dict[tuple, list[dict]] = {}
    for p in _csv(out / "predictions.csv"):
        preds.setdefault((p["method"], p["train"], p["test"], int(p["layer"])), []).append(p)
    scores = _csv(out / "transfer.csv")
    assert len(scores) == len(preds) == 7 * 2 * 4  # (2 methods x 3 training sets + TTPD) x 2 tests x 4 layers
    for s in scores:
        rows = preds[(s["method"], s["train"], s["test"], int(s["layer"]))]
        pol = 1 if s["test"] == "affirmative" else -1
        assert {int(p["row"]) for p in rows} == {int(r["row"]) for r in stmts if int(r["polarity"]) == pol} & held
        lab = np.array([int(p["label"]) for p in rows])
        sc = np.array([float(p["score"]) for p in rows])
        assert all(int(p["prediction"]) == int(float(p["score"]) > 0) for p in rows)
        assert all(int(p["label"]) == int(stmts[int(p["row"])]["label"]) for p in rows)
        assert float(s["accuracy"]) == pytest.approx(np.mean((sc > 0) == lab), abs=1e-9)
        assert float(s["auroc"]) == pytest.approx(roc_auc_score(lab, sc), abs=1e-6)
    best = res.best_layer
    sep = {r.layer: r for r in res.separation}
    assert sep[best].accuracy == max(r.accuracy for r in res.separation)
    for t in res.transfer:
        s = next(s for s in scores if (s["method"], s["train"], s["test"], int(s["layer"])) ==
                 (t["method"], t["train"], t["test"], best))
        assert t["accuracy"] == pytest.approx(float(s["accuracy"]))


def test_demo_causal_control_is_exactly_zero_and_means_match(tiny_demo):
    out, res = tiny_demo
    rows = _csv(out / "causal_prompts.csv")
    assert len(rows) == 12
    base = np.array([float(r["base"]) for r in rows])
    assert all(float(r["truth_+0"]) == float(r["base"]) for r in rows)  # the hooks ran and added zero
    for c in res.causal["conditions"]:
        col = np.array([float(r[f"{c['direction']}_{c['alpha']:+g}"]) for r in rows])
        assert c["mean_shift"] == pytest.approx(float(np.mean(col - base)), abs=1e-5)
        assert c["ci_low"] <= c["mean_shift"] + 1e-9 and c["mean_shift"] <= c["ci_high"] + 1e-9
        if c["alpha"] == 0:
            assert c["mean_shift"] == 0.0 and c["ci_low"] == 0.0 and c["ci_high"] == 0.0
        else:
            assert c["mean_shift"] != 0.0
    # the examples are the first held-out questions, in order, with their measured margins
    ex = _csv(out / "examples.csv")
    assert [e["question"] for e in ex] == [r["question"] for r in rows[:4]]
    assert [float(e["before (alpha 0)"]) for e in ex] == pytest.approx(base[:4].tolist(), abs=1e-3)
    labels = [int(r["label"]) for r in rows]
    assert sum(labels) * 2 == len(labels)  # each held-out city gives one true and one false question


def test_demo_with_truthfulqa_adds_the_iti_step(tmp_path, data_dir):
    """With a TruthfulQA folder the ITI step runs: answers before and after on the first held-out questions."""
    from veracity.experiments.demo import run_demo
    from veracity.report import render_report

    res = run_demo(out=tmp_path / "run", model="tiny-llama", n_cities=8, n_causal=4, alphas=(2.0,), n_random=1,
                   data_dir=data_dir, tqa_questions=6, max_new_tokens=4, iti_k=2, progress=False)
    render_report([tmp_path / "run"], tmp_path / "run" / "report.html")
    assert res.iti["source"] == "truthfulqa" and res.iti["k"] == 2
    assert [set(e) for e in res.iti_examples] == [{"question", "before ITI", "after ITI"}] * len(res.iti_examples)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "questions answered before and after ITI" in html


def test_demo_cli_writes_the_report(tiny_demo, tmp_path, monkeypatch, cli):
    """`veracity demo` renders report.html right after the library's run (the run itself stubbed by a copy
    of the tiny run: the library does not write the page, the command does)."""
    import shutil

    import veracity.experiments.demo as demo

    src, _ = tiny_demo
    def copy(config, out, **kw):
        shutil.copytree(src, out, ignore=shutil.ignore_patterns("report.html"))
        return demo.DemoResult.from_json(json.loads((out / "results.json").read_text()))

    monkeypatch.setattr(demo, "run_demo", copy)
    text = cli(["demo", "--model", "tiny-llama", "--out", str(tmp_path / "run")])
    html = (tmp_path / "run" / "report.html").read_text()
    assert "<title>veracity demo</title>" in html and '<ol class="findings">' in html
    # the command prints the result's tables and findings (the library prints nothing)
    for title, _, _ in demo.DemoResult.from_json(json.loads((src / "results.json").read_text())).tables():
        assert title.split(" (")[0] in " ".join(text.split()), title
    assert "- Find: trained on affirmative statements" in " ".join(text.split())


def test_demo_config_and_library_output(tiny_demo, capsys):
    """DemoConfig refuses a bad setting in one line naming it; alpha 0 is always added; run_demo takes a Config
    or keyword options, not both; the library printed nothing (the command prints)."""
    from veracity.experiments.demo import run_demo
    from veracity.validation import BadInput

    for bad in ({"test_frac": 1.0}, {"positions": "first"}, {"alphas": []}, {"n_causal": 1}, {"causal_layer": -1}):
        with pytest.raises(BadInput, match="--" + next(iter(bad)).replace("_", "-")):
            DemoConfig(**bad)
    assert DemoConfig(alphas=(2.0, -2.0)).causal_alphas() == [-2.0, 0.0, 2.0]
    assert DemoConfig(alphas=(1.0, 0.0)).causal_alphas() == [1.0, 0.0]
    with pytest.raises(TypeError, match="not both"):
        run_demo(DemoConfig(), "unused", model="tiny-llama")
    assert capsys.readouterr().out == ""


def test_demo_cli_refuses_a_bad_out_before_work(tmp_path, cli):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x.txt").write_text("mine")
    assert "Traceback" not in cli(["demo", "--model", "tiny-llama", "--out", str(tmp_path / "taken")], code=2)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["x.txt"]


@pytest.mark.real
def test_demo_probe_step_on_real_model(real_lm):
    """The demo's capture and probe steps on both real models (40 cities, 160 statements, three layers):
    every held-out logistic score equals scikit-learn's (StandardScaler + LogisticRegression solved to
    convergence in float64), every mass-mean score the midpoint rule by hand, and the findings hold on both
    architectures at the middle layer: accuracy >= 0.75, affirmative -> negated below chance, TTPD >= 0.75."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from veracity.capture import capture
    from veracity.experiments.demo import _masks, _score, probe_all_layers

    lm, L = real_lm, real_lm.arch.n_layers
    layers = [L // 4, L // 2, (3 * L) // 4]
    stmts = city_statements(seed=0, limit=40)
    masks = _masks(stmts, held_out_groups([s.city for s in stmts], 0.3, seed=0))
    acts = capture(lm, [s.text for s in stmts], ",".join(f"resid.{l}" for l in layers), batch_size=32,
                   progress=False)  # the demo's storage dtype (float16), then float32 as the demo does
    assert acts.layers("resid") == layers
    X = acts.stack("resid").float()
    y, pol = torch.tensor([s.label for s in stmts]), torch.tensor([s.polarity for s in stmts])
    scores, preds = probe_all_layers(X, y, pol, masks, layers, C=0.1)
    got = {(p["method"], p["train"], p["test"], p["layer"], p["row"]): p["score"] for p in preds}
    for train in ("affirmative", "negated", "both"):
        tr = masks[f"train:{train}"]
        for j, layer in enumerate(layers):
            Xtr, ytr = X[tr, j].double().numpy(), y[tr].numpy()
            sc = StandardScaler().fit(Xtr)
            clf = LogisticRegression(C=0.1, solver="newton-cholesky", tol=1e-10, max_iter=100)
            clf.fit(sc.transform(Xtr), ytr)
            mu1, mu0 = Xtr[ytr == 1].mean(0), Xtr[ytr == 0].mean(0)
            temp = ((Xtr - (mu1 + mu0) / 2) @ (mu1 - mu0)).std(ddof=1)  # the probe's temperature
            for test in ("affirmative", "negated"):
                rows = masks[f"test:{test}"].nonzero().flatten().tolist()
                Xte = X[rows, j].double().numpy()
                want = {"logistic": clf.decision_function(sc.transform(Xte)),
                        "mass-mean": (Xte - (mu1 + mu0) / 2) @ (mu1 - mu0) / temp}
                for method, w in want.items():
                    ours = np.array([got[(method, train, test, layer, r)] for r in rows])
                    # 2e-3 of the scale: float32 input with features far from zero (Gemma 3 layer 4: |mean| /
                    # std up to 282) stops the logistic fit ~1e-3 from the optimum; elsewhere ~1e-5
                    np.testing.assert_allclose(ours, w, rtol=0, atol=2e-3 * max(1.0, np.abs(w).max()),
                                               err_msg=f"{lm.name} {method} {train}->{test} layer {layer}")
    mid = L // 2
    assert _score(scores, "logistic", "affirmative", "affirmative", mid)["accuracy"] >= 0.75
    assert _score(scores, "logistic", "affirmative", "negated", mid)["accuracy"] < 0.5
    assert _score(scores, "ttpd", "both", "negated", mid)["accuracy"] >= 0.75


@pytest.fixture(scope="module")
def smollm2_demo(tmp_path_factory):
    from veracity.experiments.demo import run_demo

    out = tmp_path_factory.mktemp("demo-smollm2") / "run"
    return run_demo(out=out, progress=False, data_dir=out.parent / "no-data")


@pytest.mark.slow
@pytest.mark.real
def test_demo_on_smollm2_finds_truth_and_its_failure_across_negation(smollm2_demo):
    """The acceptance figures of the demo on the embedded model: accuracy >= 0.75 at the best layer, the
    affirmative <-> negated transfer inverted (AUROC well below 0.5) and repaired by TTPD."""
    res = smollm2_demo
    best = next(r for r in res.separation if r.layer == res.best_layer)
    assert best.accuracy >= 0.75
    t = {(r["method"], r["train"], r["test"]): r for r in res.transfer}
    for cross in (("affirmative", "negated"), ("negated", "affirmative")):  # ranking inverted, accuracy at most chance
        assert t[("logistic", *cross)]["auroc"] < 0.3 and t[("logistic", *cross)]["accuracy"] <= 0.5
    assert t[("ttpd", "both", "negated")]["accuracy"] >= 0.75 and t[("ttpd", "both", "affirmative")]["accuracy"] >= 0.75


@pytest.mark.slow
@pytest.mark.real
def test_demo_on_smollm2_truth_direction_moves_the_answer_towards_yes(smollm2_demo):
    """At the layer chosen on training cities (16 on this model), +4 std moves the held-out answers towards
    " Yes" by more than a random direction of the same norm (measured +2.21 against +0.54), and -4 std less
    than +4 std."""
    res = smollm2_demo
    assert res.causal_layer_selection["on"] == "training cities"
    c = {(r["direction"], r["alpha"]): r for r in res.causal["conditions"]}
    top = max(res.causal["alphas"])
    assert c[("truth", top)]["minus_random_low"] > 0  # more " Yes" than a random direction of the same norm
    assert c[("truth", -top)]["mean_shift"] < c[("truth", top)]["mean_shift"]


def test_demo_causal_layer_is_chosen_on_training_cities(tiny_demo):
    """The causal layer is the candidate with the largest truth-minus-random shift on TRAINING-city questions
    (never the held-out ones the causal test reports), and the saved records are consistent."""
    out, res = tiny_demo
    sel = res.causal_layer_selection
    assert sel["on"] == "training cities" and sel["candidates"]
    assert sel["chosen"] == max(sel["candidates"], key=lambda r: r["minus_random"])["layer"] == res.causal["layer"]
    for r in sel["candidates"]:
        assert r["minus_random"] == pytest.approx(r["truth_shift"] - r["random_shift"])
    assert len(_csv(out / "causal_layer_selection.csv")) == len(sel["candidates"])
