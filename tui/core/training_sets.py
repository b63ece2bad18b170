"""What a trained model learnt from, so that no accuracy is measured on those labels.

A model scored on the tickets it was trained on looks far better than it is (the demo's
specialist: 98.5 % on its own training labels, 86 % on held-out ones). Every model the product
trains therefore carries a `TrainingSet`: its identity (exactly the string its decisions store
in `decisions.model`), and for each example the ticket id it came from (when it came from a
database or a file with ids), a SHA-256 of its text and the label it learnt. The set is written
beside the model (`<model>.training.json`, or `training.json` in a fine-tune's folder) and
recorded in the database that trained it; a model trained from a file and routing another
database is recorded there from that file, matched on ticket id or on text hash.

A label counts for a model unless the model learnt this ticket (same id or same text) with the
label the ticket carries now: a label added or changed after training counts until the model
is retrained on it. `Store.labels_that_count` applies that rule to stored label events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

CASCADE_SEPARATOR = "→"
"""A cascade's decision stores its stages' models joined by this (`backends.cascade`)."""


class TrainedExample(BaseModel):
    """One example a model learnt from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ticket_id: str | None = None
    text_sha256: str
    label: str
    label_event_id: int | None = None
    """The label event the label came from, when it came from a database."""


class TrainingSet(BaseModel):
    """A model's identity and the examples it learnt from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    """The identity its decisions carry in `decisions.model`."""
    kind: str
    source: str
    trained_at: str
    examples: tuple[TrainedExample, ...]


def text_sha256(text: str) -> str:
    """The hash a training text is matched on (exact text, UTF-8)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def model_id(kind: str, texts: Sequence[str], labels: Sequence[str], trained_at: str) -> str:
    """A short identity for a trained model: its kind, training data and time, hashed.

    Two trainings on the same data at different times get different ids; that costs nothing
    (each is recorded with its own examples) and never lets one model's record stand for
    another's.
    """
    digest = hashlib.sha256(f"{kind}\n{trained_at}\n".encode())
    for text, label in zip(texts, labels, strict=True):
        digest.update(text_sha256(text).encode())
        digest.update(b"\t" + label.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()[:12]


def build_training_set(
    model: str,
    *,
    kind: str,
    source: str,
    trained_at: str,
    texts: Sequence[str],
    labels: Sequence[str],
    ticket_ids: Sequence[str | None] | None = None,
    label_event_ids: Sequence[int | None] | None = None,
) -> TrainingSet:
    """The `TrainingSet` of a model trained on these examples (ids optional, in order)."""
    n = len(texts)
    ids = list(ticket_ids) if ticket_ids is not None else [None] * n
    events = list(label_event_ids) if label_event_ids is not None else [None] * n
    if not len(labels) == len(ids) == len(events) == n:
        raise ValueError("texts, labels, ticket ids and label events differ in length")
    return TrainingSet(
        model=model,
        kind=kind,
        source=source,
        trained_at=trained_at,
        examples=tuple(
            TrainedExample(
                ticket_id=ticket, text_sha256=text_sha256(text), label=label, label_event_id=event
            )
            for text, label, ticket, event in zip(texts, labels, ids, events, strict=True)
        ),
    )


def model_components(model: str) -> tuple[str, ...]:
    """The models that took part in a decision: a cascade's stages, or the one model."""
    return tuple(part for part in model.split(CASCADE_SEPARATOR) if part)


def training_set_path(model_path: Path) -> Path:
    """Where a specialist's training set lies: `<stem>.training.json` beside the model."""
    return model_path.with_name(f"{model_path.stem}.training.json")


def write_training_set(path: Path, training: TrainingSet) -> None:
    """Write privately and atomically (0600): ids and hashes of customer tickets."""
    from tui.core.safe_files import write_private

    write_private(path, training.model_dump_json())


def read_training_set(path: Path) -> TrainingSet | None:
    """The training set at `path`; None when absent or unreadable (a model from before
    training sets were recorded, or a damaged file: nothing is known, nothing left out)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return TrainingSet.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None
