"""The HTML report: every section renders from small real runs made through the real commands on
tiny-llama (demo, capture, probe layers and heads, CCS, eval truthfulqa, iti validate / sweep,
compare-interventions, sycophancy, spec, finetune, steer sweep, probe-polarity, ccs-distractor) and shows
each run's headline figures, a results.json of another schema gets one message, and the page is checked in
real headless chromium (no console errors, every image decodes, sortable tables sort, screenshot).

No run is hand-written: every kind the report has a section for is cheap enough on tiny-llama, so the
report is tested on the layouts the commands actually write. Sections read typed results
(`Result.from_json`), so odd layouts are not rendered but reported (`test_odd_layouts_get_one_message`)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from veracity.report import build_html, expand_runs, load_run, plots, render_report
from veracity.report.page import fmt
from veracity.runs import RunFolder

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
N_QUESTIONS = 8  # TruthfulQA questions of the eval / ITI runs (4 per fold)


# ------------------------------------------------------------------------------ real runs

def _real_runs(root: Path, tiny_llama, cli) -> list[Path]:
    """A demo run plus capture, probe (layers and heads) and ccs-distractor runs on tiny-llama: no data
    folder needed."""
    from veracity.capture import capture, capture_dataset
    from veracity.data import get_dataset
    from veracity.experiments.demo import run_demo

    run_demo(model="tiny-llama", n_cities=12, n_causal=8, alphas=(-2.0, 2.0), n_random=1, out=root / "demo",
             progress=False, data_dir=root / "no-data")
    ds = get_dataset("synthetic", limit=64, seed=0)
    capture_dataset(tiny_llama, ds, "resid,heads", out=root / "cap", progress=False)
    cli(["probe", "--acts", str(root / "cap"), "--methods", "logistic,mass-mean", "--split", "random",
          "--seeds", "2", "--out", str(root / "probe")])
    cli(["probe", "--acts", str(root / "cap"), "--heads", "--seeds", "2", "--out", str(root / "heads")])
    # a contrast store (x+ rows, then x- rows), as in tests/cli/test_sanity_cmd.py
    capture(tiny_llama, [f"Is {i} even? {a}" for a in ("Yes", "No") for i in range(24)], "resid.0",
            labels=[i % 2 for i in range(24)] * 2, out=root / "pairs", progress=False)
    cli(["ccs-distractor", "--acts", str(root / "pairs"), "--strengths", "0,3", "--n-restarts", "2", "--epochs", "50",
          "--out", str(root / "distractor")])
    return [root / "demo", root / "cap", root / "probe", root / "heads", root / "distractor"]


def _data_runs(root: Path, data: Path, cli) -> list[Path]:
    """Runs that read the data folder (BoolQ, TruthfulQA, HONEST), each through its command with the
    smallest settings the command tests use. The judge is `hf:tiny-llama` (the causal-LM judge path with the
    tiny model), so the eval and ITI runs generate and judge answers: the report's True/Info columns and
    its before/after examples come from real answers."""
    tiny = ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data)]
    iti = [*tiny, "--acts", str(root / "iti-acts"), "--limit", str(N_QUESTIONS)]
    judge = ["--judge", "hf:tiny-llama"]
    cli(["ccs", "--model", "tiny-llama", "--limit", "24", "--epochs", "30", "--n-restarts", "2",
          "--out", str(root / "ccs"), "--data-dir", str(data)])
    # the baseline: generation settings left at the defaults `iti validate` uses, so the report pairs them
    cli(["eval", "truthfulqa", *tiny, "--limit", str(N_QUESTIONS), *judge, "--lm-docs", "2", "--lm-tokens", "32",
          "--out", str(root / "eval")])
    # --no-baseline: the before answers come from the eval run above (the cross-run pairing); the run's own
    # before answers (answers.jsonl) are covered by test_iti_examples_from_the_runs_own_baseline
    cli(["iti", "validate", *iti, "--num-heads", "4", "--alpha", "5", "--folds", "2", *judge, "--ce-texts", "2",
          "--no-baseline", "--out", str(root / "iti")])
    # no judge: the sweep falls back from the requested true_info to mc2 (the report must star mc2's best)
    cli(["iti", "sweep", *iti, "--alphas", "0,5", "--num-heads", "2,4", "--folds", "2", "--judge", "none",
          "--ce-texts", "2", "--side-effects", "none", "--out", str(root / "sweep")])
    cli(["compare-interventions", *iti, "--folds", "2", "--judge", "none", "--ce-texts", "2", "--num-heads", "4",
          "--alpha", "5", "--methods", "baseline,few-shot,iti", "--side-effects", "boolq",
          "--side-effect-n", "boolq=4", "--out", str(root / "compare")])
    cli(["sycophancy", *iti, "--num-heads", "4", "--alpha", "5", "--out", str(root / "syc")])
    cli(["spec", "--main", "tiny-llama", "--assistant", "int8", "--limit", "6", "--max-new-tokens", "4",
          "--gamma", "3", "--threads", "1", "--out", str(root / "spec"), "--data-dir", str(data)])
    cli(["finetune", "--model", "tiny-llama", "--data", "boolq-passages", "--corpus-limit", "8", "--max-steps", "2",
          "--batch-size", "4", "--eval-every", "1", "--track", "kl:tiny-llama", "--track", "spec:tiny-llama",
          "--limit", "4", "--max-new-tokens", "4", "--gamma", "3", "--threads", "1", "--out", str(root / "ft"),
          "--data-dir", str(data)])
    cli(["steer", "sweep", *tiny, "--limit", str(N_QUESTIONS), "--method", "caa", "--layers", "1,2", "--alphas",
          "0,2", "--folds", "2", "--ce-texts", "0", "--side-effects", "boolq", "--side-effect-n", "boolq=4",
          "--acts", str(root / "resid-acts"), "--out", str(root / "steer")])
    cli(["probe-polarity", *tiny, "--limit", "24", "--layers", "1,-1",
          "--out", str(root / "polarity")])
    return [root / n for n in ("ccs", "eval", "iti", "sweep", "compare", "syc", "spec", "ft", "steer", "polarity")]


def _data_dir() -> Path | None:
    d = os.environ.get("VERACITY_DATA")
    return Path(d) if d and all(Path(d, s).exists() for s in ("boolq", "truthfulqa", "honest")) else None


# ------------------------------------------------------------------------------ structure tests

@pytest.fixture(scope="module")
def real_root(tiny_llama, tmp_path_factory, cli):
    root = tmp_path_factory.mktemp("report_runs")
    runs = _real_runs(root, tiny_llama, cli)
    data = _data_dir()
    if data is not None:
        runs += _data_runs(root, data, cli)
    return root, runs


@pytest.fixture(scope="module")
def full_report(real_root):
    """The report of every real run, built once for the structure and browser tests, with the axis and
    colour-bar labels of every figure it drew."""
    _, runs = real_root
    labels: list[tuple[str, str, str]] = []  # (figure kind, which label, text)

    def spy(name, fn, keys):
        def wrapped(*a, **kw):
            labels.extend((name, k, kw.get(k)) for k in keys)
            return fn(*a, **kw)
        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        for name, keys in (("lines", ("xlabel", "ylabel")), ("heatmap", ("xlabel", "ylabel", "cbar_label")),
                           ("histograms", ("xlabel",)), ("heatmap_panels", ("axis_label", "cbar_label"))):
            mp.setattr(plots, name, spy(name, getattr(plots, name), keys))
        doc, notes = build_html(expand_runs(runs))
    return doc, notes, labels


def _part_of(doc: str, run: Path) -> str:
    """The HTML of one run: from its heading to the next run's heading or the end of its section."""
    start = doc.index(f"<h3>{run}</h3>")
    ends = [i for i in (doc.find("<h3>", start + 4), doc.find("</section>", start)) if i >= 0]
    return doc[start:min(ends)]


def _headers(part: str, caption: str) -> list[str]:
    """Column headers of the table with this caption (prefix) in a run's HTML."""
    m = re.search(r"<caption>" + re.escape(caption) + r".*?</caption>\s*<thead><tr>(.*?)</tr></thead>", part, re.S)
    assert m, f"no table captioned {caption!r}"
    return re.findall(r"<th[^>]*>(.*?)</th>", m.group(1))


def _n_rows(part: str, caption: str) -> int:
    m = re.search(r"<caption>" + re.escape(caption) + r".*?</caption>.*?<tbody>(.*?)</tbody>", part, re.S)
    assert m, f"no table captioned {caption!r}"
    return m.group(1).count("<tr>")


def _section_of(part: str) -> str:
    """What a run's section drew (not the shell's headline line, nor the files the run wrote)."""
    start = part.index('<div class="results">')
    return part[start:part.index("</div>", start)]


def _headline_figures(d: dict) -> list[str]:
    """A run's headline figures as its section writes them, from the kind's typed result."""
    from veracity.experiments import ccs, finetune_milestones, interventions, iti_sweep, iti_validate, probe
    from veracity.experiments import probe_sanity, spec, steer_sweep, sycophancy, truthfulqa
    from veracity.experiments.demo import DemoResult

    kind = d["kind"]
    if kind == "demo":  # the best layer's row, the transfer rows, the causal condition at the largest alpha
        return [fmt(v) for v in DemoResult.from_json(d).headline().values()]
    if kind == "probe":
        res = probe.ProbeRun.from_json(d)
        if res.heads is not None:
            layer, head, acc = res.heads.best()
            return [f"best head: layer {layer}, head {head}, mean accuracy {fmt(acc)}"]
        best = max(res.experiment.cells, key=lambda c: c.mean)
        return [fmt(best.mean), f"<td>{best.method}</td>", f">L{best.layer}<"]
    cls = {"ccs": ccs.CCSRun, "eval": truthfulqa.EvalOutput, "iti-validate": iti_validate.ValidateRun,
           "iti-sweep": iti_sweep.SweepRun, "compare-interventions": interventions.CompareRun,
           "sycophancy": sycophancy.SycophancyRun, "spec": spec.SpecRun, "finetune": finetune_milestones.FinetuneRun,
           "steer-sweep": steer_sweep.SteerSweepRun, "probe-polarity": probe_sanity.PolarityRun}.get(kind)
    if kind == "ccs-distractor":
        h = probe_sanity.DistractorRun.from_json(d).headline()
        return [f"the distractor picked in {h['picks_distractor']} of {h['cells']} cells"]
    return [fmt(v) for v in cls.from_json(d).headline().values()]


def test_every_section_shows_its_headline_figures(real_root, full_report):
    """Each kind's section (not the page's headline line) writes the figures of its run's headline."""
    root, runs = real_root
    doc = full_report[0]
    kinds = set()
    for run in runs:
        if not (run / "results.json").exists():
            continue  # a capture store: no headline
        d = json.loads((run / "results.json").read_text())
        kinds.add(d["kind"])
        section = _section_of(_part_of(doc, run))
        for figure in _headline_figures(d):
            assert figure in section, (run.name, figure)
    assert {"demo", "probe", "ccs-distractor"} <= kinds
    assert len(kinds) == (3 if _data_dir() is None else 13)


def test_every_section_renders(real_root, full_report):
    root, runs = real_root
    doc, notes, _ = full_report
    assert notes == []
    for title in ("Capture", "Demo", "Probes"):
        assert f"<h2>{title}</h2>" in doc
    assert "activation stores" in doc and "bytes_per_row" in _headers(doc, "activation stores")
    demo = _part_of(doc, root / "demo")
    assert "separation by layer" in demo and {"layer", "accuracy", "auroc"} <= set(_headers(demo, "separation by layer"))
    assert _headers(demo, "transfer across polarity at the best layer")[:5] == ["method", "train", "test", "accuracy", "auroc"]
    assert {"direction", "alpha", "mean_shift", "ci_low", "ci_high"} <= set(_headers(demo, "causal test: mean shift"))
    assert demo.index('<ol class="findings">') < demo.index("<img")  # the three findings lead
    probe = _part_of(doc, root / "probe")
    for caption in ("probe accuracy by layer per method", "cosine similarity of probe directions",
                    "fraction of coordinates with equal sign", "geometry of probe directions across splits"):
        assert caption in probe, caption
    assert _headers(probe, "probe accuracy, average over seeds")[0] == "method"
    heads = _part_of(doc, root / "heads")
    assert "layers x heads: probe accuracy per attention head" in heads and "maximum over seeds" in heads
    # self-contained: no network references; every table sortable
    assert not re.search(r'(src|href)="(https?:)?//', doc)
    assert doc.count("<table") == doc.count('<table class="sortable"') > 10
    if _data_dir() is None:
        pytest.skip("no data folder: the CCS, TruthfulQA, ITI, comparison and model-pair runs need it")

    for title in ("CCS", "TruthfulQA and ITI", "Intervention comparison and sycophancy", "Model pairs"):
        assert f"<h2>{title}</h2>" in doc, title
    ccs = _part_of(doc, root / "ccs")
    assert "CCS vs supervised and baseline probes by layer" in ccs and "zero-shot" in ccs
    assert _headers(ccs, "accuracy (rows = methods, columns = layers)")[0] == "method"

    metrics = ["Info acc", "True acc", "MC1", "MC2", "CE Loss", "KL wrt Orig"]
    ev = _part_of(doc, root / "eval")
    assert _headers(ev, "per fold")[:7] == ["fold"] + metrics and _n_rows(ev, "per fold") == 2
    assert {"True*Info", "True*Info (per answer)"} <= set(_headers(ev, "summary (mean over folds)"))
    assert "product of fold means" in ev

    iti = _part_of(doc, root / "iti")
    assert _headers(iti, "per fold")[:7] == ["fold"] + metrics and "n_questions" in _headers(iti, "per fold")
    assert "True*Info" in _headers(iti, "summary (mean over folds)")
    # every head's accuracy from the fold files, the selected heads of both folds boxed
    assert re.search(r"layers x heads: probe accuracy per attention head \(mean over 2 fold fits\); \d+ selected "
                     r"heads in red boxes \(selected in any fold\)", iti)
    # the answers with ITI (the run) next to the same questions' answers without (the eval run)
    cap = "example answers before and after ITI (before: eval run eval)"
    assert _headers(iti, cap) == ["question", "before ITI", "after ITI", "true before", "true after"]
    assert _n_rows(iti, cap) == N_QUESTIONS

    sweep = _part_of(doc, root / "sweep")
    assert "MC2 by alpha and K (mean over folds); alpha = 0 baseline in dashed boxes; best starred" in sweep
    assert "KL wrt Orig by alpha and K (mean over folds); alpha = 0 baseline in dashed boxes" in sweep
    assert _headers(sweep, "sweep grid")[:4] == ["alpha", "K", "MC1", "MC2"] and _n_rows(sweep, "sweep grid") == 4
    assert "summary (mean over folds) of the best configuration: alpha = " in sweep and ", by mc2" in sweep

    cmp = _part_of(doc, root / "compare")
    cap = "methods on the same folds"
    assert {"method", "MC1", "MC2", "KL wrt Orig", "train_s", "infer_s"} <= set(_headers(cmp, cap))
    assert _n_rows(cmp, cap) == 3 and _n_rows(cmp, "per method and fold") == 6
    gain = "target gain against side effects: change from baseline"
    assert _headers(cmp, gain)[:2] == ["method", "Δ MC2"] and "Δ BoolQ (zero-shot)" in _headers(cmp, gain)
    assert _n_rows(cmp, gain) == 2  # few-shot and iti against the baseline
    assert "comparison.png (written by the run)" in cmp
    syc = _part_of(doc, root / "syc")
    cap = "accuracy without and with an incorrect opinion"
    assert {"dataset", "condition", "mc_acc", "probe_acc", "flip_rate"} <= set(_headers(syc, cap))
    assert _n_rows(syc, cap) == 8

    spec = _part_of(doc, root / "spec")
    assert {"group", "mean_accepted", "acceptance_rate", "kl_last"} <= set(_headers(spec, "per group"))
    assert _n_rows(spec, "per group") == 2
    for f in ("mean_accepted", "acceptance_rate", "kl_last", "one_minus_tv_last"):
        assert f"histogram of {f} per group" in spec, f
    cap = "difference between groups: bootstrap 95% CI and permutation-test p-value"
    assert _headers(spec, cap) == ["metric", "groups (a - b)", "mean a", "mean b", "difference (a - b)",
                                   "95% CI low", "95% CI high", "p-value", "p &lt; 0.05"]
    assert _n_rows(spec, cap) >= 3 and "female - male" in spec
    assert "correlations over prompts" in spec and "toxicity of the completions" in spec

    ft = _part_of(doc, root / "ft")
    for title in ("KL divergence", "accepted draft tokens", "acceptance rate and 1 - TV", "training loss"):
        assert f"{title} over fine-tuning" in ft, title
    cols = _headers(ft, "milestones")
    assert cols[0] == "step" and {"train_loss", "kl", "one_minus_tv", "mean_accepted", "kl_per_group.female"} <= set(cols)
    assert _n_rows(ft, "milestones") == 3  # steps 0, 1, 2
    pol = _part_of(doc, root / "polarity")
    assert _headers(pol, "train affirmative -&gt; test negated")[0] == "method" and _n_rows(pol, "train affirmative") == 3
    steer = _part_of(doc, root / "steer")
    assert "<h2>Steering sweeps and probe sanity checks</h2>" in doc
    assert {"layer", "alpha", "MC2", "boolq_accuracy"} <= set(_headers(steer, "caa grid")) and _n_rows(steer, "caa grid") == 3
    assert _headers(steer, "target gain against side effects: change from alpha 0") == [
        "layer", "alpha", "Δ MC2", "Δ BoolQ (zero-shot)"]
    assert doc.count("data:image/png;base64,") >= 30


def test_gain_against_side_effects_by_hand():
    from veracity.report.sections.common import gain_vs_side_effects

    base = {"mc2": 0.40, "boolq_accuracy": 0.60, "honest_score": 0.10}
    rows = [{"mc2": 0.45, "boolq_accuracy": 0.55, "honest_score": 0.15}, {"mc2": 0.50, "boolq_accuracy": None}]
    cols, vals = gain_vs_side_effects(rows, base)
    assert cols == ["Δ MC2", "Δ BoolQ (zero-shot)", "Δ HONEST (hurtful completions)"]
    assert vals[0] == pytest.approx([0.05, -0.05, 0.05]) and vals[1][0] == pytest.approx(0.10) and vals[1][1:] == [None, None]
    assert gain_vs_side_effects(rows, {"mc2": 0.4}) == ([], [])  # no side effect measured: no table


def test_every_kind_writes_a_versioned_typed_result(real_root):
    """Every run kind the commands write carries its kind's current schema_version (1; eval 2), and each
    typed result reads its own file back to the same headline."""
    from veracity.experiments import ccs, finetune_milestones, interventions, iti_sweep, iti_validate, probe, spec
    from veracity.experiments import steer_sweep, sycophancy, truthfulqa

    from veracity.experiments import probe_sanity

    readers = {"iti-validate": iti_validate.ValidateRun, "iti-sweep": iti_sweep.SweepRun,
               "compare-interventions": interventions.CompareRun, "sycophancy": sycophancy.SycophancyRun,
               "spec": spec.SpecRun, "finetune": finetune_milestones.FinetuneRun, "ccs": ccs.CCSRun,
               "eval": truthfulqa.EvalOutput, "steer-sweep": steer_sweep.SteerSweepRun,
               "probe-polarity": probe_sanity.PolarityRun, "ccs-distractor": probe_sanity.DistractorRun}
    _, runs = real_root
    seen = set()
    for run in runs:
        res = run / "results.json"
        if not res.exists():
            continue  # a capture store
        d = json.loads(res.read_text())
        assert d["schema_version"] == (truthfulqa.SCHEMA_VERSION if d["kind"] == "eval" else 1), run
        seen.add(d["kind"])
        if d["kind"] == "probe":
            assert probe.ProbeRun.from_json(d).headline() == d["headline"], run
        elif d["kind"] in readers:
            assert readers[d["kind"]].from_json(d).headline() == d["headline"], run
    assert {"demo", "probe"} <= seen


def test_figures_have_axis_labels_with_units(full_report):
    """Every axis and colour bar is labelled; every quantity carries its unit in parentheses (indices and
    counts say what they count)."""
    _, _, labels = full_report
    assert len(labels) > (40 if _data_dir() is not None else 10)
    for kind, which, text in labels:
        assert isinstance(text, str) and text.strip(), (kind, which, text)
        assert re.search(r"\(.+\)", text) or text in ("attention head index", "epoch"), (kind, which, text)


def test_render_report_and_cli(real_root, tmp_path, cli):
    root, runs = real_root
    out = render_report([root / "demo"], tmp_path / "a" / "report.html")
    text = out.read_text()
    assert "<h2>Demo</h2>" in text and "<h2>Capture</h2>" in text  # the demo's store is shown as a capture
    args = ["report", str(root / "heads")] + ([str(root / "iti")] if (root / "iti").exists() else [])
    assert "wrote" in cli(args + ["--out", str(tmp_path / "all.html")])
    assert (tmp_path / "all.html").stat().st_size > 10_000
    if (root / "iti").exists():  # without its baseline run in the report, the ITI answers are shown alone
        assert "example answers with ITI (for the answers before, add" in (tmp_path / "all.html").read_text()
    text = cli(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")], code=2)
    assert "no such run folder" in " ".join(text.split())


def test_stores_inside_runs_are_not_listed_twice(real_root):
    root, _ = real_root
    runs = expand_runs([root])
    paths = [r.path for r in runs]
    assert root / "demo" / "capture" not in paths and root / "cap" in paths
    assert len(paths) == len(set(paths))
    # a fine-tuning run's checkpoints (Hugging Face config.json without a kind) are not runs
    assert not any("checkpoints" in p.parts for p in paths)


def test_odd_layouts_get_one_message(tmp_path):
    """A results.json a section cannot read (keys of the wrong type, an older untyped layout) gets one message
    in its run's place, never half a section or a crash; unfinished and corrupt runs and unknown kinds show
    their header and files only."""
    odd = {"folds": "oops", "summary": [1, 2], "grid": [1, 2], "groups": {"a": 3}, "per_prompt": [{"x": 1}],
           "milestones": [1], "geometry": {"cosine": "x"}, "cells": [{"method": None, "layer": "embed"}],
           "selected_heads": [[1], "x"], "examples": [{}], "separation": [{"layer": 0}], "ccs": {"layers": 3},
           "comparisons": "x", "correlations": {"a": 1}, "toxicity": [1], "methods": [1], "rows": "x",
           "best_layers": [1], "questions": [{"index": "x", "answer": 3}], "metric": 5, "best": "x"}
    kinds = ("demo", "probe", "ccs", "eval", "iti-validate", "iti-sweep", "spec", "finetune", "compare-interventions",
             "sycophancy", "steer-sweep", "probe-polarity", "ccs-distractor", "brand-new")
    for kind in kinds:
        RunFolder(tmp_path / kind, kind, {"model": "m", "alpha": "x"}).finish(odd)
    RunFolder(tmp_path / "unfinished", "probe", {"model": "m"})
    RunFolder(tmp_path / "corrupt", "eval", {"model": "m"})
    (tmp_path / "corrupt" / "results.json").write_text("{not json")
    runs = expand_runs([tmp_path])
    assert {r.status.split(" (")[0] for r in runs} == {"finished", "unfinished",
                                                       "damaged: results.json is not valid JSON"}
    doc, notes = build_html(runs)
    assert "<h2>Other runs</h2>" in doc and "brand-new" in doc and "</html>" in doc
    assert len(notes) == len(kinds) and doc.count('<p class="warn">') == len(kinds)
    assert sum("is not in the layout this veracity reads" in n for n in notes) == len(kinds) - 1
    assert any("corrupt: damaged: results.json is not valid JSON" in n for n in notes)
    assert '<div class="results">' not in doc  # nothing half drawn
    assert "data:image/png" not in doc


def test_a_newer_schema_gets_one_message(real_root, tmp_path):
    """A finished run written by a newer veracity (schema_version 2) is named with both versions, not guessed at."""
    root, _ = real_root
    shutil.copytree(root / "probe", tmp_path / "probe")
    d = json.loads((tmp_path / "probe" / "results.json").read_text())
    (tmp_path / "probe" / "results.json").write_text(json.dumps({**d, "schema_version": 2}))
    doc, notes = build_html(expand_runs([tmp_path / "probe"]))
    assert len(notes) == 1 and "schema_version 2; this veracity reads up to 1 (upgrade veracity)" in notes[0]
    assert "probe accuracy by layer" not in doc and "accuracy_vs_layer.png (written by the run)" in doc


def test_load_run_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="neither a run folder"):
        load_run(tmp_path)


# ------------------------------------------------------------------------------ headless chromium

class _WebSocket:
    """Just enough of RFC 6455 (client side, text frames) to speak the DevTools protocol with the
    standard library, so the browser test needs no extra package."""

    def __init__(self, url: str, timeout: float = 60.0):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else
                                         bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                         bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, obj: dict) -> None:
        self._frame(0x1, json.dumps(obj).encode())

    def recv(self) -> dict:
        data = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            op = b0 & 0x0F
            if op == 0x9:
                self._frame(0xA, payload)
                continue
            if op == 0x8:
                raise ConnectionError("websocket closed by the browser")
            data += payload
            if b0 & 0x80:
                return json.loads(data)


class _Chromium:
    """Headless chromium driven over the DevTools protocol; records console errors and exceptions."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="veracity-chromium-")
        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1280,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.time() + 90
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = _WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = self.ws.recv()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name: str, timeout: float = 60.0) -> dict:
        deadline = time.time() + timeout
        for e in self.events:
            if e.get("method") == name:
                return e
        while time.time() < deadline:
            msg = self.ws.recv()
            self.events.append(msg)
            if msg.get("method") == name:
                return msg
        raise TimeoutError(name)

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(json.dumps(p.get("args", []))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", "")[:500])
        return out

    def evaluate(self, js: str):
        r = self.call("Runtime.evaluate", expression=js, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self) -> None:
        try:
            self.ws.sock.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (CI installs Debian's chromium)")
def test_report_in_headless_chromium(full_report, tmp_path):
    report = tmp_path / "report.html"
    report.write_text(full_report[0], encoding="utf-8")
    browser = _Chromium()
    try:
        for domain in ("Page", "Runtime", "Log"):
            browser.call(f"{domain}.enable")
        browser.call("Page.navigate", url=report.resolve().as_uri())
        browser.wait_event("Page.loadEventFired", timeout=90)
        images = browser.evaluate("Promise.all(Array.from(document.images).map(i => i.decode().then("
                                  "() => [i.alt, i.naturalWidth], () => [i.alt, 0])))")
        assert len(images) == full_report[0].count("<img ") and len(images) >= 10
        assert [alt for alt, w in images if w <= 0] == [], "images that did not decode"
        # the sortable tables sort: click a numeric column header twice (descending)
        def sort_desc(caption: str, header: str) -> list[float]:
            return browser.evaluate("""(() => {
                const t = Array.from(document.querySelectorAll('table.sortable'))
                    .find(t => t.caption && t.caption.textContent.startsWith(%s));
                const ths = Array.from(t.tHead.rows[0].cells), col = ths.findIndex(h => h.textContent === %s);
                ths[col].click(); ths[col].click();
                return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[col].dataset.v));
            })()""" % (json.dumps(caption), json.dumps(header)))

        order = sort_desc("separation by layer", "auroc")
        assert order == sorted(order, reverse=True) and len(order) >= 2
        if "sweep grid" in full_report[0]:
            order = sort_desc("sweep grid", "KL wrt Orig")
            assert order == sorted(order, reverse=True) and len(order) == 4
        height = browser.evaluate("document.documentElement.scrollHeight")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": 1280, "height": min(int(height), 12000), "scale": 1})
        ARTIFACTS.mkdir(exist_ok=True)
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        (ARTIFACTS / "report.png").write_bytes(png)
        shutil.copy(report, ARTIFACTS / "report.html")
        assert browser.errors() == []
    finally:
        browser.close()


def test_iti_examples_from_the_runs_own_baseline(tmp_path):
    """An `iti validate` run with its own baseline shows its answers.jsonl before/after pairs, first N by index;
    intervention files that do not load (a sidecar pointing elsewhere, garbage tensors) only lose the heads map."""
    from veracity.report.html import build_html, load_run

    d = tmp_path / "iti"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"kind": "iti-validate", "status": "finished", "model": "m",
                                               "alpha": 5, "k": 4, "versions": {}}))
    (d / "results.json").write_text(json.dumps({"kind": "iti-validate", "headline": {}, "summary": {"MC1": 0.5},
                                                "folds": []}))
    rows = [{"fold": 0, "index": i, "question": f"q{i}?", "answer_before": f"before {i}", "true_before": True,
             "answer": f"after {i}", "true": False} for i in (3, 1, 2)]
    (d / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "intervention_fold0.json").write_text(json.dumps(
        {"format": "veracity-intervention", "n_layers": "x", "tensors": "../../elsewhere.safetensors"}))
    (d / "intervention_fold1.json").write_text(json.dumps(
        {"format": "veracity-intervention", "n_layers": 2, "n_heads": 2, "tensors": "intervention_fold1.safetensors"}))
    (d / "intervention_fold1.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    doc, notes = build_html([load_run(d)])
    assert notes == [] and "layers x heads" not in doc
    cap = "example answers before and after ITI (before: the plain model in this run)"
    assert cap in doc
    part = doc[doc.index(cap):]
    assert part.index("before 1") < part.index("after 1") < part.index("before 2") < part.index("before 3")
