"""The text-only baseline (veracity.evaluate.text_baseline) equals a plain scikit-learn pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from veracity.evaluate.text_baseline import baseline_texts, fit_text_baseline, text_baseline_scores

CITIES = ["Lyon", "Paris", "Berlin", "Munich", "Madrid", "Rome", "Milan", "Porto"]
COUNTRIES = ["France", "France", "Germany", "Germany", "Spain", "Italy", "Italy", "Portugal"]


def _split(seed):
    rng = np.random.default_rng(seed)
    qs, ans, ys = [], [], []
    for _ in range(60):
        i = int(rng.integers(len(CITIES)))
        right = bool(rng.integers(2))
        country = COUNTRIES[i] if right else COUNTRIES[(i + 3) % len(CITIES)]  # never the right one
        qs.append(f"Which country is {CITIES[i]} in?")
        ans.append(f"It is in {country}." if rng.integers(2) else country)
        ys.append(int(right))
    return qs, ans, np.array(ys)


@pytest.mark.parametrize("features,ngrams,vec", [("tfidf", (1, 1), TfidfVectorizer), ("count", (1, 2), CountVectorizer)])
def test_equals_a_plain_sklearn_pipeline(features, ngrams, vec):
    (q, a, y), (tq, ta, _) = _split(0), _split(1)
    model = fit_text_baseline(q, a, y, seed=3, C=0.5, features=features, ngram_range=ngrams)
    ref = make_pipeline(vec(ngram_range=ngrams), LogisticRegression(C=0.5, random_state=3, max_iter=1000))
    ref.fit([f"{x}\n{z}" for x, z in zip(q, a)], y)
    want = ref.predict_proba([f"{x}\n{z}" for x, z in zip(tq, ta)])[:, 1]
    np.testing.assert_allclose(text_baseline_scores(model, tq, ta), want, rtol=1e-12)


def test_inputs_are_checked():
    assert baseline_texts(["Q?"], ["A"]) == ["Q?\nA"]
    with pytest.raises(ValueError, match="one question per answer"):
        baseline_texts(["Q?"], [])
    with pytest.raises(ValueError, match="both present"):
        fit_text_baseline(["a?", "b?"], ["x", "y"], [1, 1])
    with pytest.raises(ValueError, match="unknown features"):
        fit_text_baseline(["a?", "b?"], ["x", "y"], [0, 1], features="bert")
