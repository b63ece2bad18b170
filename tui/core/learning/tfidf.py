"""The default specialist kind: word and character n-gram TF-IDF and a calibrated linear SVM.

On Banking77 this family reaches about 91 % in seconds on two cores and predicts thousands of
tickets a second. The stronger kinds reuse its pieces (the ensemble's first stage, the
embeddings kind's n-gram features), so they live here rather than in the model class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tui.core.learning.errors import TrainingError

SHARED_TFIDF: dict[str, Any] = {"sublinear_tf": True, "lowercase": True, "strip_accents": "unicode"}
"""What both n-gram families share (sublinear term frequency over lowercased, accent-stripped
text), so the two differ only where they are meant to: the unit, its lengths, the pruning."""


def tfidf_features() -> Any:
    """Word 1-2-grams and character 2-5-grams, both sublinear TF-IDF (a sklearn FeatureUnion)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, **SHARED_TFIDF)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), min_df=2, max_features=300_000, **SHARED_TFIDF
    )
    return FeatureUnion([("word", word), ("char", char)])


def check_trainable(labels: Sequence[str]) -> Counter[str]:
    """How many examples each label has.

    Raises:
        TrainingError: Fewer than two different labels.
    """
    counts = Counter(labels)
    if len(counts) < 2:
        raise TrainingError(
            f"need at least 2 different labels to train, found {len(counts)} "
            f"({len(labels)} labelled tickets)"
        )
    return counts


def build_tfidf_pipeline(counts: Counter[str]) -> Any:
    """TF-IDF + linear SVM with sigmoid calibration; plain logistic regression when some
    label has too few examples for cross-validated calibration."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    folds = min(3, min(counts.values()))
    if folds >= 2:
        clf: Any = CalibratedClassifierCV(
            LinearSVC(C=0.5, class_weight="balanced"), method="sigmoid", cv=folds, ensemble=False
        )
    else:
        clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")
    return Pipeline([("features", tfidf_features()), ("clf", clf)])
