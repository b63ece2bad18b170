"""The specialist: a small classifier trained on the team's own labels, saved and loaded.

`SpecialistModel` wraps whichever kind was trained (TF-IDF by default, see `tfidf`; the
stronger ones in `kinds`) with what it was trained on, and owns the on-disk format: one joblib
file, a JSON sidecar, and a folder of artifacts for kinds that have files of their own.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.errors import TrainingError
from tui.core.learning.kinds import build_pipeline
from tui.core.learning.tfidf import build_tfidf_pipeline, check_trainable, tfidf_proba
from tui.core.training_sets import (
    TrainingSet,
    build_training_set,
    model_id,
    training_set_path,
    write_training_set,
)

__all__ = ["FORMAT_VERSION", "SpecialistModel", "TrainingError", "TrainingInfo"]

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
    model_id: str = ""
    """Hash of kind, training data and time (`training_sets.model_id`); empty in a model
    saved before training sets were recorded."""

    @property
    def identity(self) -> str:
        """What the specialist's decisions store as their model: kind, size and id, so each
        decision names the very model (and so the training set) that made it."""
        base = f"{self.kind}:{self.n_examples}ex"
        return f"{base}@{self.model_id}" if self.model_id else base


class SpecialistModel:
    """A trained pipeline plus its training info; saved as one joblib file and a JSON sidecar."""

    def __init__(
        self, pipeline: Any, info: TrainingInfo, training: TrainingSet | None = None
    ) -> None:
        self.pipeline = pipeline
        self.info = info
        self.training = training
        """What it learnt from; None for a model saved before training sets were recorded."""
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
        ticket_ids: Sequence[str | None] | None = None,
        label_event_ids: Sequence[int | None] | None = None,
        progress: Callable[[str], None] | None = None,
        extra: dict[str, Any] | None = None,
        unlabelled: Sequence[str] = (),
    ) -> SpecialistModel:
        """Fit a model of `kind` on the labelled texts.

        `progress` hears a line now and then from a kind that trains for minutes; `extra`
        is kept in the model's info (`auto` records there why it chose the kind);
        `unlabelled` are texts nobody has labelled (the inbox's), which the fewshot kind
        spreads its labels over (`semi_supervised`); the other kinds ignore them.

        `ticket_ids` and `label_event_ids` (in the texts' order) say where each example came
        from; with the texts' hashes they make the model's `training` set, saved beside it, so
        that no accuracy is ever measured on these labels.

        `device` (auto, cpu, cuda) is where a kind with a neural network trains: auto takes
        the GPU when torch sees one. The TF-IDF and embeddings kinds run on the CPU anyway.

        Raises:
            TrainingError: Too few labels, a single label, an unknown kind or device.
            MissingExtra: The kind needs an optional package that is not installed.
        """
        if len(texts) != len(labels):
            raise TrainingError("texts and labels differ in length")
        counts = check_trainable(labels)
        started = time.perf_counter()
        if kind != "tfidf":
            pipeline = build_pipeline(
                kind, counts, device=device, progress=progress, unlabelled=unlabelled
            )
        else:
            pipeline = build_tfidf_pipeline(counts)
        pipeline.fit(list(texts), list(labels))
        trained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = TrainingInfo(
            kind=kind,
            labels=sorted(counts),
            n_examples=len(texts),
            per_label=dict(sorted(counts.items())),
            train_seconds=round(time.perf_counter() - started, 3),
            trained_at=trained_at,
            source=source,
            model_id=model_id(kind, texts, labels, trained_at),
            extra=dict(extra or {}),
        )
        training = build_training_set(
            info.identity,
            kind=kind,
            source=source,
            trained_at=trained_at,
            texts=texts,
            labels=labels,
            ticket_ids=ticket_ids,
            label_event_ids=label_event_ids,
        )
        return cls(pipeline, info, training)

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
        proba = self.predict_proba(texts)
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
        """The kind's probabilities; a TF-IDF model scores a few texts without scikit-learn's
        per-call overhead (`tfidf.TfidfScorer`), which is what one ticket at a time costs."""
        if self.info.kind == "tfidf":
            return tfidf_proba(self.pipeline, texts)
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
            payload: dict[str, Any] = {"pipeline": self.pipeline, "info": asdict(self.info)}
            if self.training is not None:  # in the artefact, and readable beside it (below)
                payload["training"] = self.training.model_dump(mode="json")
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
        if self.training is not None:
            write_training_set(training_set_path(path), self.training)

    @classmethod
    def load(cls, path: Path) -> SpecialistModel:
        """Load a model saved by `save` (its training set too, when it was saved with one).
        Only load files you trust: joblib files are pickles."""
        import joblib

        payload = joblib.load(path)
        if payload.get("artifacts"):
            payload["pipeline"].load_artifacts(path.parent / payload["artifacts"])
        training = payload.get("training")
        return cls(
            payload["pipeline"],
            TrainingInfo(**payload["info"]),
            None if training is None else TrainingSet.model_validate(training),
        )

    @staticmethod
    def read_info(path: Path) -> TrainingInfo | None:
        info_path = path.with_suffix(".json")
        if not info_path.exists():
            return None
        try:
            return TrainingInfo(**json.loads(info_path.read_text()))
        except (ValueError, TypeError):
            return None
