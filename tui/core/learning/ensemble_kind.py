"""The `ensemble` kind: a cascade of the TF-IDF model and the fine-tuned MiniLM.

The TF-IDF model answers the tickets it is surest of; the share it is least sure of goes to
the fine-tuned MiniLM, which decides those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tui.core.learning.errors import TrainingError
from tui.core.learning.finetuned_kind import FinetunedClassifier, softmax
from tui.core.learning.tfidf import build_tfidf_pipeline, tfidf_proba


class CascadeEnsemble:
    """TF-IDF first; MiniLM only for the tickets the TF-IDF model is least sure of.

    Which tickets escalate is set by speed, not tuned on any evaluation: `escalate_share`
    (40 %) of tickets, measured on TF-IDF's out-of-fold confidences on the training data at
    fit time, fixes the confidence `threshold`. With MiniLM at ~2.6 CPU-ms a ticket and
    TF-IDF at ~0.2, 40 % keeps the mix near 1.2 CPU-ms, over 1,000 tickets/s on two cores
    with room for a busy machine. For an escalated ticket the answer is `weight` x TF-IDF
    probabilities + (1 - weight) x MiniLM's (softmax at `temperature`); the default weight 0
    lets the stronger model decide alone (on out-of-fold predictions a 0.1 mix was no better).
    """

    FALLBACK_THRESHOLD = 0.8
    """Used when the labels are too few per class for out-of-fold confidences."""

    def __init__(
        self,
        counts: Counter[str],
        *,
        escalate_share: float = 0.4,
        threshold: float | None = None,
        weight: float = 0.0,
        temperature: float = 1.0,
        device: str = "auto",
    ) -> None:
        self.counts = counts
        self.tfidf = build_tfidf_pipeline(counts)
        self.finetuned = FinetunedClassifier(device=device)
        self.escalate_share = escalate_share
        self.threshold = threshold
        self.weight = weight
        self.temperature = temperature
        self.classes_: np.ndarray = np.array([])
        self.last_escalated = 0.0

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> CascadeEnsemble:
        self.tfidf.fit(list(texts), list(labels))
        self.finetuned.fit(texts, labels)
        self.classes_ = np.asarray(self.tfidf.classes_)
        if list(self.classes_) != list(self.finetuned.classes_):
            raise TrainingError("the two models of the ensemble disagree on the labels")
        if self.threshold is None:
            self.threshold = self.threshold_for_share(texts, labels)
        return self

    def threshold_for_share(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """The TF-IDF confidence under which `escalate_share` of tickets fall, out of fold."""
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        if min(Counter(labels).values()) < 3:
            return self.FALLBACK_THRESHOLD
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
        proba = cross_val_predict(
            build_tfidf_pipeline(self.counts),
            list(texts),
            list(labels),
            cv=folds,
            method="predict_proba",
        )
        return float(np.quantile(np.asarray(proba).max(axis=1), self.escalate_share))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        proba = tfidf_proba(self.tfidf, texts)
        threshold = self.FALLBACK_THRESHOLD if self.threshold is None else self.threshold
        unsure = np.flatnonzero(proba.max(axis=1) < threshold)
        self.last_escalated = len(unsure) / max(1, len(texts))
        if len(unsure):
            strong = softmax(self.finetuned.logits([texts[i] for i in unsure]), self.temperature)
            proba[unsure] = self.weight * proba[unsure] + (1 - self.weight) * strong
        return proba

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(texts).argmax(axis=1)])

    def save_artifacts(self, directory: Path) -> None:
        self.finetuned.save_artifacts(directory)

    def load_artifacts(self, directory: Path) -> None:
        self.finetuned.load_artifacts(directory)
