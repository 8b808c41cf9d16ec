"""`veracity probe` and `veracity ccs` end to end on the tiny random llama (fast, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from veracity.capture import Activations
from veracity.probes.splits import stratified_split


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, tiny_llama):
    from veracity.capture import capture

    words = ["cat", "dog", "fish", "bird", "cow", "ant"]
    texts, labels, groups = [], [], []
    for i in range(120):
        topic = ["animals", "things", "places"][i % 3]
        lab = (i // 3) % 2
        texts.append(f"{topic}: the {words[i % 6]} is {'true' if lab else 'false'} {i}")
        labels.append(lab)
        groups.append(topic)
    out = tmp_path_factory.mktemp("cap") / "store"
    capture(tiny_llama, texts, "resid,heads", labels=labels, groups=groups, out=out, progress=False,
            dtype=torch.float32)
    return out


def test_probe_command_loto_writes_tables_and_figures(tiny_store, tmp_path, cli):
    out = tmp_path / "probe1"
    text = cli(["probe", "--acts", str(tiny_store), "--site", "resid", "--layers", "0,-1",
                "--methods", "logistic,mass-mean,mlp-tiny", "--split", "leave-one-topic-out",
                "--seeds", "2", "--out", str(out)])
    assert "average accuracy" in text and "maximum accuracy" in text
    res = json.loads((out / "results.json").read_text())
    cells = res["experiment"]["cells"]
    assert {c["method"] for c in cells} == {"logistic", "mass-mean", "mlp-tiny"} and len(cells) == 6
    # logistic (deterministic, so every seed agrees) = sklearn's standardised L2 logistic regression,
    # trained on two topics and scored on the third, averaged over the three held-out topics
    store = Activations.open(tiny_store)
    y, g = store.labels.numpy(), np.asarray(store.groups)
    for c in (c for c in cells if c["method"] == "logistic"):
        X = store[f"resid.{c['layer']}"].float().numpy()
        accs = [accuracy_score(y[g == t], make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
                               .fit(X[g != t], y[g != t]).predict(X[g == t])) for t in sorted(set(g))]
        assert c["mean"] == pytest.approx(np.mean(accs), abs=1e-9) and c["std"] == pytest.approx(0.0, abs=1e-12)
    for f in ("scores.csv", "summary.csv", "accuracy_vs_layer.png", "cosine_heatmap.png", "config.json"):
        assert (out / f).exists(), f
    # rerunning into a finished folder is refused without --overwrite
    assert "--overwrite" in cli(["probe", "--acts", str(tiny_store), "--layers", "-1", "--methods", "logistic",
                                 "--out", str(out)], code=2)


def test_probe_command_heads_matrix(tiny_store, tiny_llama, tmp_path, cli):
    out = tmp_path / "heads"
    cli(["probe", "--acts", str(tiny_store), "--heads", "--seeds", "2", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    acc = res["accuracy_mean"]
    assert len(acc) == tiny_llama.arch.n_layers and len(acc[0]) == tiny_llama.arch.n_heads
    # each head's figure = sklearn's standardised logistic regression on that head's activations, scored on
    # the stratified 20% split of each seed, averaged over the two seeds
    store = Activations.open(tiny_store)
    y = store.labels.numpy()
    splits = [stratified_split(y.tolist(), 0.2, seed) for seed in (0, 1)]
    for layer in (0, tiny_llama.arch.n_layers - 1):
        T = store[f"heads.{layer}"].float().numpy()  # [N, heads, head_dim]
        for h in range(tiny_llama.arch.n_heads):
            want = np.mean([accuracy_score(y[sp.test_idx], make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
                                           .fit(T[sp.train_idx, h], y[sp.train_idx]).predict(T[sp.test_idx, h]))
                            for sp in splits])
            assert acc[layer][h] == pytest.approx(want), (layer, h)
    assert (out / "head_accuracy.png").exists() and (out / "head_accuracy.csv").exists()


def test_ccs_command_captures_pairs_and_prints_baselines(tmp_path, data_dir, tiny_llama, cli):
    out = tmp_path / "ccs"
    cli(["ccs", "--model", "tiny-llama", "--dataset", "boolq", "--limit", "16", "--layers", "all", "--no-zero-shot",
         "--epochs", "20", "--n-restarts", "3", "--data-dir", str(data_dir), "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    layers = res["ccs"]["layers"]
    assert len(layers) >= 2
    # the supervised ceiling = sklearn's standardised logistic regression on x+ - x- over the same split
    store = Activations.open(out / "acts")
    n = store.n_rows // 2
    y = store.labels[:n].numpy()
    sp = stratified_split(y.tolist(), 0.4, 0)  # the ccs defaults: --test-size 0.4, --seed 0
    for row in layers:
        assert row["ccs_accuracy_either_sign"] >= row["ccs_accuracy"] - 1e-9
        X = store[f"resid.{row['layer']}"].float().numpy()
        d = X[:n] - X[n:]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(d[sp.train_idx], y[sp.train_idx])
        want = accuracy_score(y[sp.test_idx], clf.predict(d[sp.test_idx]))
        assert row["logistic_accuracy"] == pytest.approx(want)
        assert 0 <= row["random_accuracy"] <= 1
    assert res["ccs"]["zero_shot"] is None
    assert (out / "acts" / "manifest.json").exists()
    # the store is reused with --acts
    cli(["ccs", "--model", "tiny-llama", "--dataset", "boolq", "--limit", "16", "--epochs", "10",
         "--n-restarts", "2", "--acts", str(out / "acts"), "--data-dir", str(data_dir), "--out", str(tmp_path / "ccs2")])
    res2 = json.loads((tmp_path / "ccs2" / "results.json").read_text())
    # zero-shot = "the model prefers x+": summed log-probs of each side's tokens after the shared prefix,
    # by one unpadded plain forward per text, scored on the same test rows
    from veracity.data import get_dataset

    lm = tiny_llama
    meta = get_dataset("boolq", data_dir=data_dir, limit=16, seed=0).meta

    def tail_logprob(ids: list, k: int) -> float:
        with torch.no_grad():
            lp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        return float(sum(lp[t - 1, ids[t]] for t in range(k, len(ids))))

    prefer = []
    for m in meta:
        a, b = lm.tokenizer(m["x_plus"])["input_ids"], lm.tokenizer(m["x_minus"])["input_ids"]
        k = next(i for i, (u, v) in enumerate(zip(a, b)) if u != v)
        prefer.append(tail_logprob(a, k) > tail_logprob(b, k))
    want = np.mean(np.asarray(prefer)[sp.test_idx] == (y[sp.test_idx] == 1))
    assert res2["ccs"]["zero_shot"]["accuracy"] == pytest.approx(want)


def test_probe_command_captures_the_model_as_a_store_would(tmp_path, cli, data_dir):
    """Without --acts the model's activations of --dataset are captured in memory: the same probes and numbers
    as `veracity capture` into a store and `veracity probe --acts` on it (per layer and per head)."""
    tiny = ["--model", "tiny-llama", "--device", "cpu"]
    cli(["capture", *tiny, "--dataset", "synthetic", "--limit", "24", "--sites", "resid,heads",
         "--out", str(tmp_path / "cap")])
    opts = ["--layers", "1,-1", "--methods", "logistic,mass-mean", "--split", "random", "--seeds", "2"]
    for extra in ([], ["--heads"]):
        name = "heads" if extra else "layers"
        cli(["probe", "--acts", str(tmp_path / "cap"), *opts, *extra, "--out", str(tmp_path / f"store-{name}")])
        cli(["probe", *tiny, "--dataset", "synthetic", "--limit", "24", *opts, *extra,
             "--out", str(tmp_path / f"model-{name}")])
        a, b = (json.loads((tmp_path / f"{w}-{name}" / "results.json").read_text()) for w in ("store", "model"))
        if not extra:
            for e in (a, b):
                e["experiment"].pop("elapsed_s")
        assert a == b and a["headline"], name
        recorded = json.loads((tmp_path / f"model-{name}" / "config.json").read_text())
        assert (recorded["model"], recorded["dataset"], recorded["acts"]) == ("tiny-llama", "synthetic", None)


def test_probe_takes_captures_dtype_names(tmp_path, cli):
    """`--dtype` accepts what `veracity capture --dtype` does (one list, `capture.engine.STORE_DTYPES`): the alias
    fp16 is float16, same numbers and the same recorded dtype."""
    base = ["probe", "--model", "tiny-llama", "--device", "cpu", "--dataset", "synthetic", "--limit", "24",
            "--layers", "-1", "--methods", "logistic", "--split", "random", "--seeds", "1"]
    for name in ("float16", "fp16"):
        cli([*base, "--dtype", name, "--out", str(tmp_path / name)])
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("float16", "fp16"))
    for e in (a, b):
        e["experiment"].pop("elapsed_s")
    assert a == b
    assert {json.loads((tmp_path / n / "config.json").read_text())["dtype"] for n in ("float16", "fp16")} == {"float16"}
