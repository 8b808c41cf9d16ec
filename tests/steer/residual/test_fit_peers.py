"""Residual fits against the peer libraries, on the same pairs of tiny-llama: veracity's CAA (mean paired
difference, `fit_contrast_pairs`) equals `steering_vectors.train_steering_vector` (decoder-block output, last
token) to float tolerance; veracity's LAT direction agrees with `repeng`'s PCA-centre control vector.

The algorithms of the second check differ in one step: repeng's pca_center takes the first principal component
of the symmetric set {+-(pos_i - neg_i) / 2} (the top eigenvector of sum_i d_i d_i^T), LAT of the randomly signed
differences centred on their mean. Where the pairs share one difference direction both find it, so |cos| is
asserted high; that repeng reads the same activations is checked exactly against the eigenvector by numpy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from veracity.capture import capture
from veracity.steer.residual import fit_contrast_pairs, fit_lat

pytestmark = pytest.mark.usefixtures("one_thread")

SUBJECTS = ["The sky is blue", "Paris is in France", "Water boils at 100 C", "Pigs can fly", "Two plus two is five",
            "The moon is made of cheese", "Ice is cold", "Fish live in water"]
PAIRS = [(f"{s}. This statement is true", f"{s}. This statement is false") for s in SUBJECTS]
LAYERS = [1, 2]  # not the last layer: its hidden_states entry may follow the final norm


def _acts(lm):
    pos = capture(lm, [p for p, _ in PAIRS], "resid", positions="last", dtype=torch.float32, progress=False)
    neg = capture(lm, [n for _, n in PAIRS], "resid", positions="last", dtype=torch.float32, progress=False)
    return pos.stack("resid"), neg.stack("resid")


def test_caa_equals_steering_vectors(tiny_llama):
    sv = pytest.importorskip("steering_vectors")
    lm = tiny_llama
    pos, neg = _acts(lm)
    ours = fit_contrast_pairs(pos, neg, layers=LAYERS, normalize="raw")
    theirs = sv.train_steering_vector(lm.model, copy.deepcopy(lm.tokenizer), PAIRS, layers=LAYERS,
                                      layer_type="decoder_block", read_token_index=-1)
    for i, l in enumerate(LAYERS):
        torch.testing.assert_close(ours.vectors[i], theirs.layer_activations[l].float().cpu(), atol=1e-5, rtol=1e-5)


def _repeng(monkeypatch):
    """repeng 0.4.0 names `np.float_` in a type hint, which numpy 2 removed: the alias is lent for its import only."""
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    mod = pytest.importorskip("repeng.extract")
    monkeypatch.undo()
    return mod


def test_lat_agrees_with_repeng_pca_center(tiny_llama, monkeypatch):
    extract = _repeng(monkeypatch)
    lm = tiny_llama
    tok = copy.deepcopy(lm.tokenizer)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    data = [extract.DatasetEntry(positive=p, negative=n) for p, n in PAIRS]
    theirs = extract.read_representations(lm.model, tok, data, hidden_layers=LAYERS, batch_size=4,
                                          method="pca_center")
    pos, neg = _acts(lm)
    ours = fit_lat(pos, neg, seed=0, layers=LAYERS, normalize="unit")
    for i, l in enumerate(LAYERS):
        d = (pos[:, l] - neg[:, l]).double().numpy()
        top = np.linalg.eigh(d.T @ d)[1][:, -1]  # repeng's algorithm, by hand on veracity's activations
        r = theirs[l].astype(np.float64)
        assert abs(r @ top) / np.linalg.norm(r) == pytest.approx(1.0, abs=1e-4)
        u = ours.vectors[i].double().numpy()
        cos = float(u @ r / (np.linalg.norm(u) * np.linalg.norm(r)))
        assert cos > 0.9, f"layer {l}: cos(veracity LAT, repeng pca_center) = {cos:.4f}"  # same sign convention
