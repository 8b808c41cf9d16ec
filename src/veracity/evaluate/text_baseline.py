"""The text-only baseline: a bag-of-words logistic regression on the question and answer text, predicting whether
the answer is correct. A probe of the model's hidden states that does no better than this has learnt the text
(which questions are hard, which answers look wrong), not the model's belief.

The text of an answer is ``question + "\\n" + answer``; features are TF-IDF (or raw counts) of words and, with
``ngram_range=(1, 2)``, word pairs; the classifier is scikit-learn's `LogisticRegression` (lbfgs, L2 with strength
`C`, seeded). Scores follow `detection`'s convention: P(correct), higher = more likely correct.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def baseline_texts(questions: Sequence[str], answers: Sequence[str]) -> list[str]:
    """The text the baseline reads for each answer: its question, a newline, the answer."""
    if len(questions) != len(answers):
        raise ValueError(f"need one question per answer, got {len(questions)} and {len(answers)}")
    return [f"{q}\n{a}" for q, a in zip(questions, answers)]


def fit_text_baseline(questions: Sequence[str], answers: Sequence[str], labels: Sequence[int], seed: int = 0,
                      C: float = 1.0, features: str = "tfidf", ngram_range: tuple[int, int] = (1, 1),
                      max_iter: int = 1000):
    """Fit the baseline on the training split (labels 1 = correct, 0 = wrong; both needed): a scikit-learn
    `Pipeline` of the vectoriser ("tfidf" or "count") and the logistic regression."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    y = np.asarray(labels)
    if not np.isin(y, (0, 1)).all() or np.unique(y).size < 2:
        raise ValueError("the text baseline needs labels 0 and 1, both present in the training split")
    vectors = {"tfidf": TfidfVectorizer, "count": CountVectorizer}
    if features not in vectors:
        raise ValueError(f"unknown features {features!r}; use tfidf or count")
    pipe = Pipeline([("words", vectors[features](ngram_range=tuple(ngram_range))),
                     ("logistic", LogisticRegression(C=C, random_state=seed, max_iter=max_iter))])
    return pipe.fit(baseline_texts(questions, answers), y)


def text_baseline_scores(model, questions: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """P(correct) of each answer under a fitted baseline (`fit_text_baseline`)."""
    classes = list(model.classes_)
    return model.predict_proba(baseline_texts(questions, answers))[:, classes.index(1)]
