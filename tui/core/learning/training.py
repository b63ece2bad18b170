"""Active learning from the inbox: retrain the specialist on the agents' current labels and
write it where the specialist backend reads it; the backend reloads a model whose file changed,
so the new one routes the very next ticket.

Every model trained here is recorded with what it learnt (`tui.core.training_sets`): in the
database that trained it, and beside the model, from where `record_configured_models` records
it in any other database the configured backends route, so that no accuracy counts a label
its model trained on."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.core import paths
from tui.core.training_sets import read_training_set, training_set_path

if TYPE_CHECKING:
    from tui.core.config import Settings
    from tui.core.learning.model import SpecialistModel
    from tui.core.models import BackendStats
    from tui.core.store import Store

Progress = Callable[[str], None]

FINETUNE_TRAINING_FILE = "training.json"
"""The training set `triagedesk finetune` writes beside its GGUF."""


def specialist_file(settings: Settings) -> Path:
    """Where the configured specialist backend loads its model from."""
    for config in settings.backends.values():
        if config.type == "specialist":
            return paths.specialist_path(config)
    return paths.default_specialist_path()


def resolve_kind(
    kind: str, labels: Sequence[str], *, unlabelled: int = 0
) -> tuple[str, dict[str, Any]]:
    """`kind` itself, or for `auto` the kind the labels make best (`auto_kind`), given how
    many unlabelled texts the fewshot kind could spread them over; with what goes into the
    model's info: `{"auto": reason}` when auto chose."""
    from tui.core.learning.auto_kind import AUTO, choose_kind

    if kind != AUTO:
        return kind, {}
    choice = choose_kind(Counter(labels), unlabelled=unlabelled)
    return choice.kind, {"auto": choice.reason}


def unlabelled_pool(store: Store) -> list[str]:
    """The newest unlabelled tickets' texts (up to `semi_supervised.MAX_UNLABELLED`, or
    `pool_teacher.TEACHER_MAX_UNLABELLED` when a teacher guesses them), which the fewshot
    kind spreads its labels over: the inbox's tickets nobody has labelled yet."""
    from tui.core.learning.pool_teacher import pool_cap

    return [row.text for row in store.inbox_page("unlabelled", limit=pool_cap())]


def retrain(settings: Settings, store: Store, progress: Progress | None = None) -> str:
    """Train on every labelled ticket, the kind chosen as `train --kind auto` chooses it,
    and save atomically; returns a one-line summary saying which kind and why.

    `progress` hears a line now and then while a kind trains for minutes.

    Raises:
        TrainingError: Too few labels or a single class.
    """
    target = specialist_file(settings)
    model = train_on_store(store, kind="auto", progress=progress)
    save_and_record(model, target, store)
    info = model.info
    why = info.extra.get("auto")
    return (
        f"{info.kind} on {info.n_examples} labelled tickets, {len(info.labels)} labels,"
        f" {info.train_seconds:.1f} s; used from the next ticket"
        + (f" (chosen: {why})" if why else "")
    )


def train_on_store(
    store: Store,
    *,
    kind: str = "tfidf",
    device: str = "auto",
    progress: Progress | None = None,
) -> SpecialistModel:
    """Train on the database's agent labels, each example carrying its ticket and label event;
    `kind` may be `auto` (the info's `extra["auto"]` then says why the kind was chosen). The
    fewshot kind also gets the unlabelled tickets' texts (`unlabelled_pool`).

    Raises:
        TrainingError: Too few labels or a single class.
    """
    from tui.core.learning.model import SpecialistModel

    examples = store.training_examples()
    labels = [e.label for e in examples]
    waiting = store.inbox_count("unlabelled") if kind in ("auto", "fewshot") else 0
    chosen, extra = resolve_kind(kind, labels, unlabelled=waiting)
    pool = unlabelled_pool(store) if chosen == "fewshot" and waiting else []
    return SpecialistModel.train(
        [e.text for e in examples],
        labels,
        source=str(store.path),
        kind=chosen,
        device=device,
        ticket_ids=[e.ticket_id for e in examples],
        label_event_ids=[e.label_event_id for e in examples],
        progress=progress,
        extra=extra,
        unlabelled=pool,
    )


def save_and_record(model: SpecialistModel, target: Path, store: Store | None) -> None:
    """Save the model, then record its training set in `store` (when given).

    The model is saved first: should recording fail, the training set beside the model
    is recorded the next time statistics are read (`record_configured_models`).

    Raises:
        OSError: The model could not be written.
        StoreError: The database could not record the training set.
    """
    model.save(target)
    if store is not None and model.training is not None:
        store.record_training(model.training)


def configured_models(settings: Settings) -> list[tuple[str, Path]]:
    """(identity, training set file) of the models the configured backends route with: each
    specialist's model now in its file, and each fine-tuned GGUF's (`model` in its table)."""
    from tui.core.learning.model import SpecialistModel

    found: list[tuple[str, Path]] = []
    for config in settings.backends.values():
        if config.type == "specialist":
            model_path = paths.specialist_path(config)
            info = SpecialistModel.read_info(model_path)
            if info is not None and info.model_id:
                found.append((info.identity, training_set_path(model_path)))
        elif config.type == "llamacpp-local" and getattr(config, "prompt", "") == "finetuned":
            gguf = Path(str(getattr(config, "model_path", ""))).expanduser()
            found.append((config.model_name, gguf.parent / FINETUNE_TRAINING_FILE))
    return found


def record_configured_models(settings: Settings, store: Store) -> int:
    """Record in `store` the training sets of the configured backends' models not recorded
    there yet (a model trained from a file, or on another database); returns how many.

    A recorded model costs one look-up: its training set file is read only when it is not.

    Raises:
        StoreError: The database could not be written.
    """
    added = 0
    for identity, path in configured_models(settings):
        if store.is_recorded(identity):
            continue
        training = read_training_set(path)
        if training is not None and training.model == identity:
            store.record_training(training)
            added += 1
    return added


def held_out_stats(settings: Settings, store: Store) -> list[BackendStats]:
    """`store.backend_stats` once the configured models' training sets are recorded, so that
    every figure shown counts only labels the answering model did not train on. A database
    that cannot take the record (read-only) is read as it is."""
    from tui.core.store import StoreError

    with contextlib.suppress(StoreError):
        record_configured_models(settings, store)
    return store.backend_stats(daily_volume=settings.routing.daily_volume)
