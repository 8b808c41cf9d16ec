"""Acceptance on real activations: LogisticProbe vs scikit-learn, layer by layer, on smollm2.

Slow (captures 600 Azaria & Mitchell statements at every residual layer); run with `-m slow`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from veracity.probes import LogisticProbe, stratified_split


@pytest.mark.slow
@pytest.mark.real
def test_logistic_matches_sklearn_per_layer_on_smollm2(smollm2, data_dir):
    from veracity.capture import capture_dataset
    from veracity.data import get_dataset

    ds = get_dataset("true-false", data_dir=data_dir, limit=600, seed=0)
    acts = capture_dataset(smollm2, ds, "resid", progress=False)
    X = acts.stack("resid").float()  # [N, 30, 576]
    y = np.asarray(ds.labels)
    sp = stratified_split(y.tolist(), 0.3, seed=0)
    probe = LogisticProbe(C=1.0).fit(X[sp.train_idx], y[sp.train_idx])
    ours = probe.score(X[sp.test_idx], y[sp.test_idx])
    gaps = []
    for layer in range(X.shape[1]):
        sc = StandardScaler().fit(X[sp.train_idx, layer].numpy())
        sk = LogisticRegression(C=1.0, max_iter=5000).fit(sc.transform(X[sp.train_idx, layer].numpy()), y[sp.train_idx])
        ref = sk.score(sc.transform(X[sp.test_idx, layer].numpy()), y[sp.test_idx])
        gaps.append(abs(float(ours[layer]) - ref))
    assert max(gaps) <= 0.01, gaps
