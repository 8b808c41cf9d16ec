"""Driver, CLI and judges on tiny inputs: folds, summary keys, both True*Info conventions, files written,
judges trained with a question-disjoint split, save/load, and P(" yes") by hand."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
import torch

from veracity.experiments import truthfulqa as drv
from veracity.evaluate import judges as jg


def test_make_folds_seeded_disjoint():
    from veracity.probes.splits import question_folds

    def make_folds(q, k, seed=0, contiguous=False):
        return [f.tolist() for f in question_folds(q, k, seed, contiguous, min_folds=1)]

    f = make_folds(range(10), 3, seed=1)
    assert sorted(sum(f, [])) == list(range(10)) and [len(x) for x in f] == [4, 3, 3]
    assert f == make_folds(range(10), 3, seed=1) != make_folds(range(10), 3, seed=2)
    assert make_folds(range(4), 2, contiguous=True) == [[0, 1], [2, 3]]


def test_summary_by_hand():
    folds = [drv.FoldMetrics(0, 2, mc1=0.5, mc2=0.4, true=0.5, info=1.0, true_info_per_answer=0.5, ce_loss=2.0, kl=0.1),
             drv.FoldMetrics(1, 2, mc1=0.0, mc2=0.2, true=1.0, info=0.5, true_info_per_answer=0.5, ce_loss=4.0, kl=0.3)]
    s = drv.summarize(folds)
    assert s["true"] == 0.75 and s["info"] == 0.75 and s["true_info"] == pytest.approx(0.5625)
    assert s["true_info_per_answer"] == 0.5 and s["mc1"] == 0.25 and s["ce_loss"] == 3.0 and s["kl"] == 0.2
    line = drv.summary_line(s)
    assert line.startswith("True*Info (product of fold means) 56.25, True*Info (per-answer rate) 50.00, True 75.00")
    assert "CE Loss 3.0000, KL wrt Orig 0.2000" in line


def test_driver_end_to_end_tiny(tiny_llama, data_dir, tmp_path):
    from veracity.data.truthfulqa import load_truthfulqa

    items = load_truthfulqa(data_dir)
    truth = jg.CallableJudge(lambda q, a: [1.0 if len(x) % 2 else 0.0 for x in a], "truth", "parity")
    info = jg.CallableJudge(lambda q, a: [0.9] * len(a), "info", "always")
    cfg = drv.EvalConfig(model="tiny-llama", folds=2, limit=4, max_new_tokens=4, n_docs=3, max_tokens=24)
    out = drv.run_truthfulqa_eval(tiny_llama, items, cfg, truth_judge=truth, info_judge=info, data_dir=data_dir,
                                  out=tmp_path / "run")
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["summary"]) >= {"mc1", "mc2", "ce_loss", "kl", "true", "info", "true_info"}
    assert res["summary"]["kl"] == 0.0 and res["protocol"] == "truthfulqa" and len(res["folds"]) == 2
    qs = res["questions"]
    assert sorted(q["index"] for q in qs) == [0, 1, 2, 3]
    for q in qs:
        assert q["true"] == (len(q["answer"]) % 2 == 1) and q["info"] is True
    t = np.mean([np.mean([q["true"] for q in qs if q["fold"] == k]) for k in (0, 1)])
    assert res["summary"]["true"] == pytest.approx(t) and res["summary"]["true_info"] == pytest.approx(t * 1.0)
    assert res["summary"]["mc2"] == pytest.approx(np.mean([np.mean([q["mc2"] for q in qs if q["fold"] == k])
                                                           for k in (0, 1)]))
    assert (tmp_path / "run" / "answers.csv").read_text().startswith("index,fold,question,answer")
    assert out.summary == res["summary"]
    # the typed result reads its own file back: the same results.json, the same headline and tables
    back = drv.EvalOutput.from_json(res)
    assert res["schema_version"] == drv.SCHEMA_VERSION == 2
    old = {**res, "schema_version": 1, "summary": {**res["summary"], "binary_loglik-truthfulqa": 0.5}}
    assert drv.EvalOutput.from_json(old).summary["binary_loglik_truthfulqa"] == 0.5  # schema 1's spelling
    assert json.loads(json.dumps(back.to_json())) == {k: v for k, v in res.items() if k not in ("kind", "headline")}
    assert back.headline() == res["headline"] and back.tables() == out.tables()
    with pytest.raises(ValueError, match="upgrade veracity"):
        drv.EvalOutput.from_json(dict(res, schema_version=drv.SCHEMA_VERSION + 1))


def test_evaluate_fold_with_intervention_and_subset(tiny_llama, data_dir):
    from veracity.data.truthfulqa import load_truthfulqa

    items = load_truthfulqa(data_dir)[:6]
    model = tiny_llama.model
    phases = []

    @contextlib.contextmanager
    def shift(phase):
        phases.append(phase)
        h = model.get_input_embeddings().register_forward_hook(lambda m, a, o: o + 0.3)
        try:
            yield
        finally:
            h.remove()

    base = drv.evaluate_fold(tiny_llama, items, [1, 4], metrics=("mc", "kl", "ce"), n_docs=2, max_tokens=20,
                             data_dir=data_dir)
    moved = drv.evaluate_fold(tiny_llama, items, [1, 4], metrics=("mc", "kl", "ce"), n_docs=2, max_tokens=20,
                              data_dir=data_dir, intervention=shift)
    assert [q.index for q in moved.questions] == [1, 4] and set(phases) == {"mc", "lm"}
    assert base.metrics.kl == 0.0 and moved.metrics.kl > 1e-4
    assert moved.mc_scores[0]["scores"] != base.mc_scores[0]["scores"]


def test_cli_eval_no_judge(tmp_path, data_dir, cli):
    text = cli(["eval", "truthfulqa", "--model", "tiny-llama", "--protocol", "lm-eval", "--limit", "2",
                "--metrics", "mc,ce,kl,judge", "--judge", "none", "--lm-docs", "2", "--lm-tokens",
                "16", "--out", str(tmp_path / "e"), "--data-dir", str(data_dir)])
    assert "MC2" in text and "KL wrt Orig" in text
    # no judge: the unmeasured columns and figures are left out, not printed as dashes
    assert "Info acc" not in text and "True*Info" not in text and " - " not in text
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["protocol"] == "lm-eval" and "true" not in res["summary"] and "mc1" in res["summary"]


# ------------------------------------------------------------------------------------------------ judges
@pytest.fixture(scope="module")
def small_labels(tmp_path_factory, data_dir):
    p = tmp_path_factory.mktemp("j") / "truth.jsonl"
    lines = (data_dir / "truthfulqa" / "finetune_truth.jsonl").read_text().splitlines()[:900]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_local_judge_split_save_load(small_labels, data_dir, tmp_path):
    j = jg.train_local_judge("truth", data_dir, labels_path=small_labels, seed=3, Cs=(1.0,), boosters=(None,))
    r = j.report
    assert j.booster is None and r.booster is None
    qs, ans, y = jg.read_labels("truth", path=small_labels)
    held = set(r.heldout_questions)
    train_qs = {q for q in qs if q not in held}
    assert held and train_qs and not (held & train_qs) and r.n_heldout == sum(q in held for q in qs)
    assert r.heldout_accuracy > r.heldout_majority_baseline  # learns something beyond the base rate
    j.save(tmp_path / "truth")
    k = jg.get_judge(f"local:{tmp_path}", "truth")
    np.testing.assert_allclose(k.score(qs[:20], ans[:20]), j.score(qs[:20], ans[:20]))
    ev = jg.evaluate_judge(k, labels_path=small_labels)
    assert ev["accuracy"] == pytest.approx(r.heldout_accuracy) and ev["n"] == r.n_heldout
    z = k.features(qs[:3], ans[:3]) @ k.coef + k.intercept  # P = sigmoid(w.x + b), by hand
    np.testing.assert_allclose(k.score(qs[:3], ans[:3]), 1 / (1 + np.exp(-np.asarray(z).ravel())))


def test_local_judge_booster_stage(small_labels, data_dir, tmp_path):
    """Stage 2 (boosted trees on the dense features + the stage-1 score) is saved, reloaded and used."""
    j = jg.train_local_judge("truth", data_dir, labels_path=small_labels, seed=3, Cs=(1.0,),
                             boosters=((0.1, 40, 7),))
    assert j.booster is not None and j.report.booster == "0.1/40/7" and "booster 0.1/40/7" in j.report.validation_accuracy
    assert j.report.heldout_accuracy > j.report.heldout_majority_baseline
    qs, ans, _ = jg.read_labels("truth", path=small_labels)
    k = jg.LocalJudge.load(j.save(tmp_path / "truth"))
    assert k.describe()["stages"] == "logistic+boosted-trees"
    np.testing.assert_allclose(k.score(qs[:20], ans[:20]), j.score(qs[:20], ans[:20]))
    d = k.dense(qs[:5], ans[:5])  # by hand: the booster reads [dense features, logistic score]
    z = np.asarray(k.features(qs[:5], ans[:5]) @ k.coef + k.intercept).ravel()
    np.testing.assert_allclose(k.score(qs[:5], ans[:5]), k.booster.predict_proba(np.column_stack([d, z]))[:, 1])
    # retrained without a booster into the same folder (overwrite): the stale booster file goes away
    jg.train_local_judge("truth", data_dir, labels_path=small_labels, seed=3, Cs=(1.0,), boosters=(None,)).save(
        tmp_path / "truth", overwrite=True)
    assert jg.LocalJudge.load(tmp_path / "truth").booster is None


def test_hf_judge_p_yes_by_hand(tiny_llama):
    j = jg.HFJudge(tiny_llama, "info", batch_size=2)
    qs, ans = ["Why?", "What is the answer to everything?"], ["Because.", "Forty-two, obviously."]
    got = j.score(qs, ans)
    for q, a, g in zip(qs, ans, got):
        ids = tiny_llama.tokenizer(f"Q: {q}\nA: {a}\nHelpful:", return_tensors="pt").input_ids
        with torch.no_grad():
            p = torch.softmax(tiny_llama.model(ids).logits[0, -1].double(), -1)[j.yes_id]
        assert g == pytest.approx(float(p), rel=1e-4)
    assert jg.get_judge("none", "truth") is None
    assert math.isclose(jg.CallableJudge(lambda q, a: [0.25] * len(a)).score(["q"], ["a"])[0], 0.25)


def test_driver_resumes_an_interrupted_run(tiny_llama, data_dir, tmp_path, interrupt_fold):
    """Interrupted during fold 1: the rerun into the same folder evaluates fold 1 only and writes the same
    results.json as an uninterrupted run."""
    from veracity.data.truthfulqa import load_truthfulqa
    from veracity.runs import RunExists

    items = load_truthfulqa(data_dir)
    truth = jg.CallableJudge(lambda q, a: [1.0 if len(x) % 2 else 0.0 for x in a], "truth", "parity")
    info = jg.CallableJudge(lambda q, a: [0.9] * len(a), "info", "always")
    cfg = drv.EvalConfig(model="tiny-llama", folds=2, limit=4, max_new_tokens=4, n_docs=3, max_tokens=24)
    kw = dict(truth_judge=truth, info_judge=info, data_dir=data_dir)
    drv.run_truthfulqa_eval(tiny_llama, items, cfg, out=tmp_path / "whole", **kw)
    calls = interrupt_fold(drv, "evaluate_fold")
    with pytest.raises(KeyboardInterrupt):
        drv.run_truthfulqa_eval(tiny_llama, items, cfg, out=tmp_path / "cut", **kw)
    assert not (tmp_path / "cut" / "results.json").exists() and (tmp_path / "cut" / "progress.json").exists()
    logs = []
    drv.run_truthfulqa_eval(tiny_llama, items, cfg, out=tmp_path / "cut", log=logs.append, **kw)
    assert calls == [0, 1, 1] and "fold 0: done in an earlier run" in logs
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert json.loads((tmp_path / "cut" / "results.json").read_text()) == whole
    # the checkpoint of other settings is refused, not mixed in
    (tmp_path / "cut" / "results.json").unlink()
    with pytest.raises(RunExists, match="another configuration"):
        drv.run_truthfulqa_eval(tiny_llama, items, drv.EvalConfig(**{**cfg.__dict__, "max_new_tokens": 5}),
                                out=tmp_path / "cut", **kw)
