"""Active learning from the inbox: retrain the specialist on the agents' current labels and
write it where the specialist backend reads it; the backend reloads a model whose file changed,
so the new one routes the very next ticket."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tui.core import paths

if TYPE_CHECKING:
    from tui.core.config import Settings
    from tui.core.store import Store


def specialist_file(settings: Settings) -> Path:
    """Where the configured specialist backend loads its model from."""
    for config in settings.backends.values():
        if config.type == "specialist":
            return paths.specialist_path(config)
    return paths.default_specialist_path()


CHEAP_KINDS = ("tfidf", "embeddings")
"""Kinds quick enough to retrain from the inbox; a stronger model is retrained as tfidf
there and with `triagedesk train --kind` on purpose."""


def retrain(settings: Settings, store: Store) -> str:
    """Train on every labelled ticket and save atomically; returns a one-line summary.

    Raises:
        TrainingError: Too few labels or a single class.
    """
    from tui.core.learning.model import SpecialistModel

    target = specialist_file(settings)
    current = SpecialistModel.read_info(target)
    kind = current.kind if current is not None and current.kind in CHEAP_KINDS else "tfidf"
    examples = store.labelled_examples()
    model = SpecialistModel.train(
        [text for text, _ in examples],
        [label for _, label in examples],
        source=str(store.path),
        kind=kind,
    )
    model.save(target)
    info = model.info
    return (
        f"{info.n_examples} labelled tickets, {len(info.labels)} labels,"
        f" {info.train_seconds:.1f} s; used from the next ticket"
    )
