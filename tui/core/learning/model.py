"""The specialist: a small classifier trained on the team's own labels.

Word and character n-gram TF-IDF features and a linear SVM, calibrated to probabilities with
Platt scaling. On Banking77 this family reaches about 91 % in seconds on two cores, and it
predicts thousands of tickets a second, which is the point: fast, cheap, private.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingInfo:
    """What a saved model was trained on, stored beside it and shown by `backends`."""

    kind: str
    labels: list[str]
    n_examples: int
    per_label: dict[str, int]
    train_seconds: float
    trained_at: str
    source: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


class TrainingError(Exception):
    """The labels cannot train a model (too few examples, a single label)."""


def _features() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    min_df=1,
                    lowercase=True,
                    strip_accents="unicode",
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    sublinear_tf=True,
                    min_df=2,
                    lowercase=True,
                    strip_accents="unicode",
                    max_features=300_000,
                ),
            ),
        ]
    )


def check_trainable(labels: Sequence[str]) -> Counter[str]:
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
    return Pipeline([("features", _features()), ("clf", clf)])


class SpecialistModel:
    """A trained pipeline plus its training info; saved as one joblib file and a JSON sidecar."""

    def __init__(self, pipeline: Any, info: TrainingInfo) -> None:
        self.pipeline = pipeline
        self.info = info
        self.classes: list[str] = [str(c) for c in pipeline.classes_]

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        source: str = "",
        kind: str = "tfidf",
        device: str = "auto",
    ) -> SpecialistModel:
        """Fit a pipeline of `kind` on the texts and their labels.

        `device` (`auto`, `cpu`, `cuda`) is where a stronger kind would train; `train
        --device` passes it. It is not forwarded yet: tfidf trains on the CPU whatever it
        says.
        """
        if len(texts) != len(labels):
            raise TrainingError("texts and labels differ in length")
        counts = check_trainable(labels)
        started = time.perf_counter()
        if kind != "tfidf":
            from tui.core.learning.kinds import build_pipeline  # stronger, optional kinds

            pipeline = build_pipeline(kind, counts)
        else:
            pipeline = build_tfidf_pipeline(counts)
        pipeline.fit(list(texts), list(labels))
        info = TrainingInfo(
            kind=kind,
            labels=sorted(counts),
            n_examples=len(texts),
            per_label=dict(sorted(counts.items())),
            train_seconds=round(time.perf_counter() - started, 3),
            trained_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source=source,
        )
        return cls(pipeline, info)

    def predict(
        self, texts: Sequence[str], allowed: Collection[str] | None = None
    ) -> list[tuple[str, float]]:
        """Best label and its probability for each text.

        `allowed` restricts the answer to those labels (the taxonomy being routed against):
        a model trained on more intents than an eval file or a narrowed taxonomy uses still
        answers from the closed set, as the LLM backends must, instead of failing the ticket.
        The probability stays the model's own (not renormalised), so a cascade still sees how
        unsure it was.

        Raises:
            TrainingError: When the model knows none of the allowed labels.
        """
        proba = np.asarray(self.pipeline.predict_proba(list(texts)))
        if allowed is not None:
            keep = np.array([c in allowed for c in self.classes], dtype=bool)
            if not keep.any():
                raise TrainingError(
                    "the specialist knows none of the taxonomy's labels; retrain it on them"
                )
            if not keep.all():
                proba = np.where(keep[None, :], proba, -1.0)
        best = proba.argmax(axis=1)
        return [(self.classes[i], float(proba[row, i])) for row, i in enumerate(best)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.pipeline.predict_proba(list(texts)))

    def save(self, path: Path) -> None:
        """Write atomically and privately (0600 files, 0700 new folders: a model holds
        fragments of ticket text): a failed save leaves the old model and no temp file.

        Raises:
            OSError: The model could not be written; nothing new is left behind.
        """
        import joblib

        from tui.core.safe_files import atomic_writer, make_tree_private, private_dir, write_private

        private_dir(path.parent)
        artifacts = None
        try:
            if hasattr(self.pipeline, "save_artifacts"):
                # Kinds with files of their own (ONNX encoders) write a fresh folder beside the
                # model; the joblib names it, so swapping the joblib swaps both at once.
                artifacts = private_dir(path.with_name(f"{path.stem}.artifacts-{time.time_ns():x}"))
                self.pipeline.save_artifacts(artifacts)
                make_tree_private(artifacts)
            payload = {"pipeline": self.pipeline, "info": asdict(self.info)}
            if artifacts is not None:
                payload["artifacts"] = artifacts.name
            with atomic_writer(path) as pending:
                joblib.dump(payload, pending.file, compress=3)
        except BaseException:
            if artifacts is not None:
                shutil.rmtree(artifacts, ignore_errors=True)
            raise
        if artifacts is not None:
            for old in path.parent.glob(f"{path.stem}.artifacts-*"):
                if old != artifacts and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        write_private(path.with_suffix(".json"), json.dumps(asdict(self.info), indent=2))

    @classmethod
    def load(cls, path: Path) -> SpecialistModel:
        """Load a model saved by `save`. Only load files you trust: joblib files are pickles."""
        import joblib

        payload = joblib.load(path)
        if payload.get("artifacts"):
            payload["pipeline"].load_artifacts(path.parent / payload["artifacts"])
        return cls(payload["pipeline"], TrainingInfo(**payload["info"]))

    @staticmethod
    def read_info(path: Path) -> TrainingInfo | None:
        info_path = path.with_suffix(".json")
        if not info_path.exists():
            return None
        try:
            return TrainingInfo(**json.loads(info_path.read_text()))
        except (ValueError, TypeError):
            return None
