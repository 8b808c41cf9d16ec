"""ITI as honest_llama runs it (`--reproduce honest-llama`), each rule pinned by a hand-built example written
from the original's description (/work/shared/notes/honest-llama-facts.md and its validate_2fold.py / utils.py):
probe rows, sigma rows, folds and the within-fold split, head ties, sigma's N-1, the legacy MC shift."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from veracity.data import get_dataset, load_truthfulqa
from veracity.steer.apply import intervention_factory, legacy_mc_start
from veracity.steer.iti import (REPRODUCE, ITIConfig, ITIData, _rank, fit_fold, fold_splits,
                                original_val_splits)

# ------------------------------------------------------------------------------------------- data sets
CSV_HEAD = ["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"]


@pytest.fixture()
def tiny_tqa(tmp_path):
    """Three questions; the MC file lists them in another order, one with other wording (as the real files)."""
    d = tmp_path / "data" / "truthfulqa"
    d.mkdir(parents=True)
    rows = [["Adversarial", "Misc", "Is water wet?", "Yes", "Yes; It is wet;", "No", "s"],
            ["Adversarial", "Paranormal", "What happens at midnight? ", "Nothing", "Nothing", "You turn into a pumpkin; Ghosts", "s"],
            ["Non-Adversarial", "Logic", "Are all plants plants?", "Yes", "Yes, all are", "No", "s"]]
    with open(d / "TruthfulQA.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEAD)
        w.writerows(rows)
    mc = [{"question": "Are all women women?", "mc1_targets": {"Yes.": 1, "No.": 0},
           "mc2_targets": {"Yes, all women are women.": 1, "No.": 0}},
          {"question": "Is water wet?", "mc1_targets": {"Yes.": 1, "No.": 0},
           "mc2_targets": {"Yes.": 1, "It is wet.": 1, "No.": 0}},
          {"question": "What happens at midnight?", "mc1_targets": {"Nothing.": 1, "Pumpkin.": 0},
           "mc2_targets": {"Nothing.": 1, "You turn into a pumpkin.": 0}}]
    (d / "mc_task_v0.json").write_text(json.dumps(mc))
    return d.parent


def test_tqa_mc2_rows_are_the_mc_file_in_its_order_and_wording(tiny_tqa):
    ds = get_dataset("truthfulqa-iti-mc2", data_dir=tiny_tqa)
    assert ds.texts == ["Q: Are all women women? A: Yes, all women are women.", "Q: Are all women women? A: No.",
                        "Q: Is water wet? A: Yes.", "Q: Is water wet? A: It is wet.", "Q: Is water wet? A: No.",
                        "Q: What happens at midnight? A: Nothing.",
                        "Q: What happens at midnight? A: You turn into a pumpkin."]
    assert ds.labels == [1, 0, 1, 1, 0, 1, 0]
    # question ids are the CSV rows evaluation uses (the reworded question joined by elimination)
    assert [m["question_index"] for m in ds.meta] == [2, 2, 0, 0, 0, 1, 1]
    assert [m["mc_index"] for m in ds.meta] == [0, 0, 1, 1, 1, 2, 2]


def test_csv_rows_kept_one_flag_away(tiny_tqa):
    ds = get_dataset("truthfulqa-iti", data_dir=tiny_tqa)
    assert ds.texts[:3] == ["Q: Is water wet? A: Yes", "Q: Is water wet? A: It is wet", "Q: Is water wet? A: No"]
    assert [m["question_index"] for m in ds.meta] == [0, 0, 0, 1, 1, 1, 2, 2]


def test_gen_end_q_rows_byte_for_byte(tiny_tqa):
    """For each CSV question in order, one RandomState(seed).randint(n) draw picks the appended question (it
    may be the question itself); answers split as the hub's generation split: empty pieces kept, question
    text unstripped."""
    seed = 7
    rs = np.random.RandomState(seed)
    draws = [rs.randint(3) for _ in range(3)]
    q = ["Is water wet?", "What happens at midnight? ", "Are all plants plants?"]
    want = []
    for i, (corr, inc) in enumerate([(["Yes", "It is wet", ""], ["No"]),
                                     (["Nothing"], ["You turn into a pumpkin", "Ghosts"]),
                                     (["Yes, all are"], ["No"])]):
        want += [f"Q: {q[i]} A: {a} Q: {q[draws[i]]}" for a in corr + inc]
    ds = get_dataset("truthfulqa-iti-gen-end-q", data_dir=tiny_tqa, seed=seed)
    assert ds.texts == want
    assert "Q: Is water wet? A:  Q: " in ds.texts[2]  # the empty answer after the trailing ';'
    assert [m["question_index"] for m in ds.meta] == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert get_dataset("truthfulqa-iti-gen-end-q", data_dir=tiny_tqa, seed=seed).texts == want  # seeded
    other = [get_dataset("truthfulqa-iti-gen-end-q", data_dir=tiny_tqa, seed=s).texts for s in range(6)]
    assert len({tuple(t) for t in other}) > 1  # the seed matters


def test_real_mc2_rows_match_evaluation_items(data_dir):
    items = load_truthfulqa(data_dir)
    ds = get_dataset("truthfulqa-iti-mc2", data_dir=data_dir)
    assert len(ds) == sum(len(it.mc2_choices) for it in items) == 5882
    for text, lab, m in zip(ds.texts, ds.labels, ds.meta):
        it = items[m["question_index"]]
        assert text == f"Q: {it.mc_question} A: {it.mc2_choices[m['choice_index']]}"
        assert lab == it.mc2_labels[m["choice_index"]] and m["mc_index"] == it.mc_index
    assert [m["mc_index"] for m in ds.meta] == sorted(m["mc_index"] for m in ds.meta)


# ------------------------------------------------------------------------------------------------ folds
def _literal_original(n: int, k: int, seed: int, val_ratio: float = 0.2, eval_draws: bool = True):
    """validate_2fold.py's fold / split lines, verbatim in logic, on the global numpy stream; between folds the
    draws its CE and KL evaluation make (datasets' unseeded shuffle: one np.random.random(); then
    np.random.choice(100, 100, replace=False)), each twice."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        fold_idxs = np.array_split(np.arange(n), k)
        out = []
        for i in range(k):
            train_idxs = np.concatenate([fold_idxs[j] for j in range(k) if j != i])
            test_idxs = fold_idxs[i]
            train_set_idxs = np.random.choice(train_idxs, size=int(len(train_idxs) * (1 - val_ratio)), replace=False)
            val_set_idxs = np.array([x for x in train_idxs if x not in train_set_idxs])
            out.append((test_idxs, train_set_idxs, val_set_idxs))
            if eval_draws:
                for _ in range(2):  # run_ce_loss, run_kl_wrt_orig
                    np.random.random()
                    np.random.choice(100, 100, replace=False)
        return out
    finally:
        np.random.set_state(state)


def _data_with_order(order) -> ITIData:
    order = np.asarray(order)
    q = np.repeat(np.sort(order), 2)
    return ITIData(torch.zeros(len(q), 1, 1, 2), torch.tensor([1, 0] * len(order)), q, order=order)


@pytest.mark.parametrize("n,k,seed", [(20, 2, 42), (23, 3, 42), (17, 2, 0), (817, 2, 42)])
def test_original_folds_and_split_equal_literal_reimplementation(n, k, seed):
    order = np.random.default_rng(n).permutation(np.arange(100, 100 + n))  # MC position -> question id
    got = fold_splits(_data_with_order(order), ITIConfig(split="original", seed=seed), k, contiguous=True)
    want = _literal_original(n, k, seed)
    for (test, train, (fit_q, val_q)), (w_test, w_fit, w_val) in zip(got, want):
        assert test.tolist() == sorted(order[w_test].tolist())
        assert fit_q.tolist() == order[w_fit].tolist()  # same draws, same order
        assert val_q.tolist() == order[w_val].tolist()
        assert sorted(train.tolist()) == sorted(order[np.concatenate([w_fit, w_val])].tolist())


def test_eval_draws_change_later_folds_only():
    trains = [np.arange(10, 20), np.arange(0, 10)]
    with_draws = original_val_splits(trains, 42)
    without = original_val_splits(trains, 42, eval_draws=False)
    assert with_draws[0][0].tolist() == without[0][0].tolist()
    lit = _literal_original(20, 2, 42, eval_draws=False)
    assert without[1][0].tolist() == lit[1][1].tolist()


def test_contiguous_folds_cut_the_mc_order_small_n():
    """n = 7 questions, MC order [3, 0, 6, 1, 5, 2, 4]: np.array_split gives blocks of 4 and 3."""
    data = _data_with_order([3, 0, 6, 1, 5, 2, 4])
    folds = fold_splits(data, ITIConfig(), 2, contiguous=True)
    assert [f[0].tolist() for f in folds] == [[0, 1, 3, 6], [2, 4, 5]]
    # shuffled folds: sorted ids permuted by the seed, independent of the MC order
    sh = fold_splits(data, ITIConfig(seed=1), 2, contiguous=False)
    perm = np.random.default_rng(1).permutation(7)
    assert [f[0].tolist() for f in sh] == [sorted(perm[:4].tolist()), sorted(perm[4:].tolist())]


def test_seeded_split_unchanged_for_veracity_default():
    data = _data_with_order([3, 0, 6, 1, 5, 2, 4])
    (_, train, (fit_q, val_q)), _ = fold_splits(data, ITIConfig(seed=0), 2)
    perm = train[np.random.default_rng(0).permutation(len(train))]
    n_val = max(1, round(0.2 * len(train)))
    assert val_q.tolist() == perm[:n_val].tolist() and fit_q.tolist() == perm[n_val:].tolist()


# ------------------------------------------------------------------------------------------ head ranking
def test_tie_order_original_vs_stable():
    """accs [[.5, .7, .5], [.7, .6, .5]], flattened [.5, .7, .5, .7, .6, .5]. Read as "among equal accuracies
    the higher flattened index wins" (reverse-stable) the order is 3, 1, 4, 5, 2, 0; veracity's stable order
    takes (layer, head) order; "original" is the literal np.argsort(flat)[::-1], whose tie order is numpy's."""
    s = torch.tensor([[0.5, 0.7, 0.5], [0.7, 0.6, 0.5]])
    assert _rank(s, "reverse-stable") == [(1, 0), (0, 1), (1, 1), (1, 2), (0, 2), (0, 0)]
    assert _rank(s, "stable") == [(0, 1), (1, 0), (1, 1), (0, 0), (0, 2), (1, 2)]
    lit = np.argsort(np.array([0.5, 0.7, 0.5, 0.7, 0.6, 0.5]))[::-1]
    assert _rank(s, "original") == [(int(i) // 3, int(i) % 3) for i in lit]
    # whatever numpy does with ties, the accuracies come out in descending order
    assert [float(s[l, h]) for l, h in _rank(s, "original")] == pytest.approx([0.7, 0.7, 0.6, 0.5, 0.5, 0.5])


def test_original_ranking_is_the_literal_call_on_large_arrays():
    """30 x 9 heads with many ties: the same order as the literal expression (numpy's default sort)."""
    accs = np.random.default_rng(0).integers(0, 12, size=(30, 9)) / 80.0
    lit = np.argsort(accs.reshape(30 * 9))[::-1]
    assert _rank(torch.tensor(accs), "original") == [(int(i) // 9, int(i) % 9) for i in lit]


def test_sklearn_probe_is_the_originals():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    g = torch.Generator().manual_seed(0)
    n_q, L, H, hd = 30, 2, 2, 4
    X = torch.randn(n_q * 4, L, H, hd, generator=g)
    y = torch.tensor([1, 1, 0, 0] * n_q)
    X[y == 1, 1, 0] += 1.0
    data = ITIData(X, y, np.repeat(np.arange(n_q), 4))
    ff = fit_fold(data, np.arange(n_q), ITIConfig(probe="sklearn", ranking="original", seed=42))
    fr, vr = data.rows(ff.fit_questions), data.rows(ff.val_questions)
    for l in range(L):
        for h in range(H):
            clf = LogisticRegression(random_state=42, max_iter=1000).fit(X[fr, l, h].numpy(), y[fr].numpy())
            assert float(ff.head_scores[l, h]) == pytest.approx(
                accuracy_score(y[vr].numpy(), clf.predict(X[vr, l, h].numpy())), abs=1e-7)
    assert ff.heads[0] == (1, 0)


def _fp16_unfriendly_data(n_q=30, L=2, H=2, hd=4, seed=0):
    """Rows whose float32 values are not float16 numbers (offset 10, so float16 rounding shows), with a true
    signal on head (1, 0): four rows per question, two true and two false."""
    g = torch.Generator().manual_seed(seed)
    X = 10.0 + torch.randn(n_q * 4, L, H, hd, generator=g)
    y = torch.tensor([1, 1, 0, 0] * n_q)
    X[y == 1, 1, 0] += 0.7
    return ITIData(X, y, np.repeat(np.arange(n_q), 4))


def test_sklearn_probe_original_precision_is_float64_of_float16():
    """precision="original": each head's LogisticRegression sees the activations rounded to float16 and converted
    to float64 (scikit-learn's conversion of the original's float16 arrays): the same accuracies as that literal
    call; the float32 default hands scikit-learn float32 arrays, which it fits in float32."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score

    from veracity.steer.iti import _sklearn_probes

    data = _fp16_unfriendly_data()
    L, H = data.X.shape[1:3]
    cfg = ITIConfig(probe="sklearn", ranking="original", seed=42, precision="original")
    ff = fit_fold(data, np.arange(30), cfg)
    fr = np.concatenate([data.rows([q]) for q in ff.fit_questions])
    vr = data.rows(ff.val_questions)
    X64 = data.X.numpy().astype(np.float16).astype(np.float64)
    yn = data.labels.numpy()
    for l in range(L):
        for h in range(H):
            clf = LogisticRegression(random_state=42, max_iter=1000).fit(X64[fr, l, h], yn[fr])
            assert float(ff.head_scores[l, h]) == pytest.approx(
                accuracy_score(yn[vr], clf.predict(X64[vr, l, h])), abs=1e-7)
    flat = lambda rows: data.X[rows].reshape(len(rows), L * H, -1)
    _, coef = _sklearn_probes(flat(fr), data.labels[fr], flat(vr), data.labels[vr], 42, precision="original")
    clf = LogisticRegression(random_state=42, max_iter=1000).fit(X64[fr, 1, 0], yn[fr])
    assert np.array_equal(coef[2].numpy(), clf.coef_[0].astype(np.float32))
    _, coef32 = _sklearn_probes(flat(fr), data.labels[fr], flat(vr), data.labels[vr], 42)
    assert not torch.equal(coef, coef32)  # the rule changes what scikit-learn fits


def test_com_original_is_numpy_float16_mean():
    """precision="original": the centre of mass is the original's float16 numpy arithmetic over the fold's
    probe-train then validation questions' rows (np.mean per class, float16 difference, float16 np.linalg.norm);
    on the head with a signal it agrees with veracity's float32 mass-mean direction to float16 rounding."""
    data = _fp16_unfriendly_data(seed=1)
    cfg = ITIConfig(probe="sklearn", ranking="original", seed=42, precision="original")
    ff = fit_fold(data, np.arange(30), cfg)
    rows = np.concatenate([data.rows([q]) for q in (*ff.fit_questions, *ff.val_questions)])
    X16, yn = data.X.numpy().astype(np.float16)[rows], data.labels.numpy()[rows]
    for i, (l, h) in enumerate(ff.heads):
        d = np.mean(X16[yn == 1, l, h], axis=0) - np.mean(X16[yn == 0, l, h], axis=0)
        d = d / np.linalg.norm(d)
        assert d.dtype == np.float16
        assert np.array_equal(ff.directions[i].numpy(), d.astype(np.float32))
    ref = fit_fold(data, np.arange(30), ITIConfig(probe="sklearn", ranking="original", seed=42))
    assert ref.heads == ff.heads
    assert ff.heads[0] == (1, 0) and float(ff.directions[0] @ ref.directions[0]) > 0.999  # the signal head
    assert not torch.equal(ff.directions, ref.directions)


# ------------------------------------------------------------------------------------------------- sigma
def test_sigma_original_is_torch_std_n_minus_1_over_tuning_rows():
    """One head, head_dim 2. True rows (1, 0), false rows (-1, 0): unit com direction e0. Sigma rows project
    to 1, 2, 3, 4 on it: torch.std (N-1) = sqrt(5/3); sigma from the training rows (N) = 1."""
    X = torch.tensor([[1.0, 0.0], [-1.0, 0.0]] * 10).reshape(20, 1, 1, 2)
    y = torch.tensor([1, 0] * 10)
    tuning = torch.tensor([[1.0, 5.0], [2.0, -1.0], [3.0, 0.0], [4.0, 7.0]]).reshape(4, 1, 1, 2)
    data = ITIData(X, y, np.repeat(np.arange(10), 2), tuning=tuning, tuning_question=np.array([0, 3, 5, 9]))
    orig = fit_fold(data, np.arange(10), ITIConfig(sigma_from="original"))
    assert torch.allclose(orig.directions, torch.tensor([[1.0, 0.0]]))
    assert float(orig.sigmas[0]) == pytest.approx((5 / 3) ** 0.5, rel=1e-6)
    train = fit_fold(data, np.arange(10), ITIConfig(sigma_from="train"))
    assert float(train.sigmas[0]) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="tqa_gen_end_q"):
        fit_fold(ITIData(X, y, data.question), np.arange(10), ITIConfig(sigma_from="original"))
    # the limit restricts sigma rows to the kept questions
    assert data.restrict(np.arange(5)).tuning_question.tolist() == [0, 3]


# ------------------------------------------------------------------------------------------- MC shift
@pytest.mark.real
def test_legacy_shift_start_on_smollm2_tokenizer(smollm2):
    """"Q: Is it raining?" is 7 SmolLM2 tokens, "\\nA:" 3 more: the answer " Yes it is." starts at position
    10. The legacy rule shifts from 7 + 4 = 11 (the answer's second token), veracity from 10."""
    tok = smollm2.tokenizer
    ctx = "Q: Is it raining?\nA:"
    assert len(tok("Q: Is it raining?")["input_ids"]) == 7 and len(tok(ctx)["input_ids"]) == 10
    assert tok.convert_ids_to_tokens(tok(ctx + " Yes it is.")["input_ids"])[10:] == ["ĠYes", "Ġit", "Ġis", "."]
    assert legacy_mc_start(tok, ctx) == 11


def _iv(lm, alpha=4.0):
    from veracity.steer.intervention import Intervention

    g = torch.Generator().manual_seed(0)
    a = lm.arch
    heads = [(0, 0), (1, 1)]
    return Intervention(heads, torch.nn.functional.normalize(torch.randn(2, a.head_dim, generator=g), dim=-1),
                        torch.ones(2), alpha, a.n_layers, a.n_heads, a.head_dim)


def test_legacy_shift_leaves_two_answer_tokens_unshifted(tiny_llama):
    from veracity.evaluate.truthfulqa import make_requests, score_requests, score_requests_reference

    lm, tok = tiny_llama, tiny_llama.tokenizer
    ctx = "Q: Is it raining?\nA:"
    reqs = make_requests(tok, ctx, [" Yes it is.", " No, sunny."], "truthfulqa")
    P = len(reqs[0][0])
    assert P == len(tok(ctx)["input_ids"]) and legacy_mc_start(tok, ctx) == P + 1  # "\nA:" is 3 tokens here too
    base = score_requests(lm.model, reqs, per_token=True)
    new = intervention_factory(lm, _iv(lm))
    leg = intervention_factory(lm, _iv(lm), mc_shift_from="legacy").for_mc_context(tok, ctx, P)
    s_new = score_requests(lm.model, reqs, per_token=True, intervention=new)
    s_leg = score_requests(lm.model, reqs, per_token=True, intervention=leg)
    ref_leg = score_requests_reference(lm.model, reqs, per_token=True, intervention=leg)
    for b, a, l, r in zip(base, s_new, s_leg, ref_leg):
        assert a[0] == b[0] and (abs(a[1:] - b[1:]) > 1e-4).all()  # answer-start: one unshifted
        assert (l[:2] == b[:2]).all() and (abs(l[2:] - b[2:]) > 1e-4).all()  # legacy: two unshifted
        np.testing.assert_allclose(l, r, atol=1e-4)  # cached prompt == full forward with absolute positions


def test_legacy_shift_refused_inside_the_prompt(tiny_llama):
    fac = intervention_factory(tiny_llama, _iv(tiny_llama), mc_shift_from="legacy")
    with pytest.raises(ValueError, match="inside"):
        fac.for_mc_context(tiny_llama.tokenizer, "Q: x?\nA:", 10_000)


def test_score_mc_uses_the_legacy_start(tiny_llama, data_dir):
    from veracity.evaluate.truthfulqa import score_mc

    items = load_truthfulqa(data_dir)[:3]
    leg = intervention_factory(tiny_llama, _iv(tiny_llama), mc_shift_from="legacy")
    new = intervention_factory(tiny_llama, _iv(tiny_llama))
    fast = score_mc(tiny_llama, items, intervention=leg)
    ref = score_mc(tiny_llama, items, intervention=leg, reference_path=True)
    other = score_mc(tiny_llama, items, intervention=new)
    for a, b, c in zip(fast.results, ref.results, other.results):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
        assert not np.allclose(a.scores, c.scores)


# --------------------------------------------------------------------------------------- preset + CLI
def test_preset_conflicts_refused(data_dir, tmp_path, cli):
    for extra in (["--sigma-from", "train"], ["--data", "csv"], ["--mc-shift-from", "answer-start"]):
        assert "--reproduce honest-llama sets" in cli(["iti", "validate", "--model", "tiny-llama", "--reproduce",
                                                       "honest-llama", *extra, "--data-dir", str(data_dir),
                                                       "--out", str(tmp_path / "r")], code=2)
        assert not (tmp_path / "r").exists()
    cli(["iti", "validate", "--model", "tiny-llama", "--reproduce", "honest-lama", "--data-dir", str(data_dir),
         "--out", str(tmp_path / "r")], code=2)
    assert not (tmp_path / "r").exists()


def test_validate_reproduce_records_settings_and_answers(data_dir, tmp_path, cli):
    """--reproduce on tiny-llama (12 questions): the preset in config.json and results.json, the remaining
    differences printed, contiguous MC-order folds, and answers before/after written per question."""
    out = tmp_path / "run"
    text = cli(["iti", "validate", "--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir),
                "--acts", str(tmp_path / "acts"), "--limit", "12", "--num-heads", "4", "--alpha", "5", "--ce-texts", "2",
                "--reproduce", "honest-llama", "--out", str(out)])
    assert "deliberate differences that remain" in text and "RandomState" in text
    cfg = json.loads((out / "config.json").read_text())
    flat = json.dumps(cfg)
    for key in ("honest-llama", "remaining_differences", "legacy"):
        assert key in flat
    results = json.loads((out / "results.json").read_text())
    iti = results["config"]["iti"]
    assert (iti["sigma_from"], iti["split"], iti["ranking"], iti["probe"], iti["precision"], iti["seed"]) == (
        "original", "original", "original", "sklearn", "original", 42)
    assert results["config"]["eval"]["mc_shift_from"] == "legacy" and results["config"]["contiguous"]
    items = load_truthfulqa(data_dir)[:12]
    mc_order = [it.index for it in sorted(items, key=lambda it: it.mc_index)]
    assert [f["test"] for f in results["config"]["fold_questions"]] == [sorted(mc_order[:6]), sorted(mc_order[6:])]
    assert results["summary_baseline"] and "mc2" in results["summary_baseline"]
    assert REPRODUCE["honest-llama"]["seed"] == 42


def test_validate_answers_before_and_after(tiny_llama, data_dir, tmp_path):
    from veracity.steer.iti import load_iti_data
    from veracity.experiments.iti_validate import merge_answers, validate
    from veracity.methods.fold import FoldEvalConfig

    data = load_iti_data(tiny_llama, data_dir=data_dir, limit=6, acts=tmp_path / "acts", progress=False).first_questions(6)
    items = load_truthfulqa(data_dir)[:6]
    ecfg = FoldEvalConfig(judge=lambda qs, ans: [0.75] * len(ans), ce_texts=0, data_dir=str(data_dir))
    res = validate(tiny_llama, data, items, ITIConfig(max_k=4), 4, 8.0, 2, ecfg=ecfg, log=lambda m: None,
                   baseline=True)
    rows = merge_answers(res.folds)
    assert sorted(r["index"] for r in rows) == list(range(6))
    for r in rows:
        assert r["answer_before"] is not None and r["answer"] is not None and r["fold"] in (0, 1)
        assert r["true_score"] == 0.75 and r["true_before"] is True
    assert any(r["answer_before"] != r["answer"] for r in rows)  # alpha 8 on 4 heads changes some answer


def test_fit_and_sweep_take_the_preset(data_dir, tmp_path, cli):
    common = ["--model", "tiny-llama", "--device", "cpu", "--data-dir", str(data_dir), "--acts", str(tmp_path / "acts"),
              "--limit", "12", "--reproduce", "honest-llama"]
    cli(["iti", "fit", *common, "--num-heads", "3", "--out", str(tmp_path / "iv")])
    prov = json.loads((tmp_path / "iv.json").read_text())["provenance"]
    assert (prov["sigma_from"], prov["probe"], prov["ranking"], prov["seed"], prov["reproduce"]) == (
        "original", "sklearn", "original", 42, "honest-llama")
    assert prov["sigma_dataset"].startswith("truthfulqa-iti-gen-end-q")
    cli(["iti", "sweep", *common, "--alphas", "0,5", "--num-heads", "2", "--folds", "2", "--judge", "none",
         "--ce-texts", "2", "--side-effects", "none", "--out", str(tmp_path / "sw")])
    con = json.loads((tmp_path / "sw" / "config.json").read_text())
    assert "honest-llama" in json.dumps(con) and "legacy" in json.dumps(con)
