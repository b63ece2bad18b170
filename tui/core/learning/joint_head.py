"""One linear head over TF-IDF word n-grams and sentence embeddings together.

The embedding carries meaning ("card hasn't come" ~ "waiting for my card"), the n-grams the
exact words a queue is named by ("apple pay", "top-up"). With a few hundred labels the
n-grams' thousands of weights only overfit, so the fewshot kind uses this head from
`JOINT_FROM` training rows on: labels plus the guessed labels of the unlabelled pool
(`semi_supervised`), where it added 0.3-0.7 points on Banking77 at 10 and 20 labels per class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

JOINT_FROM = 4000
"""Training rows (labels and guessed labels) from which the n-grams earn their weights."""
HEAD_C = 10.0
"""Inverse L2 strength, the same as the embedding-only head's."""
NGRAM_WEIGHT = 1.0
"""Scale of the (unit-length) TF-IDF row against the unit-length embedding."""


class JointHead:
    """Logistic regression on [TF-IDF(text) * NGRAM_WEIGHT, embedding(text)]."""

    def __init__(self, c: float = HEAD_C, ngram_weight: float = NGRAM_WEIGHT) -> None:
        self.c = c
        self.ngram_weight = ngram_weight
        self.vectorizer: Any = None
        self.model: Any = None
        self.classes_: np.ndarray = np.array([])

    def _features(self, texts: Sequence[str], embeddings: np.ndarray) -> Any:
        from scipy.sparse import csr_matrix, hstack

        grams = self.vectorizer.transform(list(texts)) * self.ngram_weight
        return hstack([grams, csr_matrix(np.asarray(embeddings, dtype=np.float64))]).tocsr()

    def fit(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray,
        labels: Sequence[str],
        sample_weight: np.ndarray | None = None,
    ) -> JointHead:
        """Fit the n-gram vocabulary and the head on the same rows."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        self.vectorizer.fit(list(texts))
        self.model = LogisticRegression(C=self.c, max_iter=3000)
        self.model.fit(self._features(texts, embeddings), list(labels), sample_weight=sample_weight)
        self.classes_ = np.asarray(self.model.classes_)
        return self

    def predict_proba(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise ValueError("the joint head is not fitted")
        return np.asarray(self.model.predict_proba(self._features(texts, embeddings)))
