"""Which labels exist: the config's, else the database's, else the trained specialist's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tui.core.config import Settings
from tui.core.models import Taxonomy, label_problem

if TYPE_CHECKING:
    from tui.core.store import Store


class NoTaxonomy(Exception):
    """Neither the config, the database nor a trained model says which labels exist."""


def resolve_taxonomy(settings: Settings, store: Store | None = None) -> Taxonomy:
    """The config's `[labels]`, else the labels tickets carry now, else the specialist's.

    Every source goes through `check_label_name` (the store's and the model's labels are
    filtered by it), because the taxonomy is written into every LLM request's system prompt:
    a label with a newline would be a prompt line of the attacker's choosing.
    """
    configured = settings.taxonomy()
    if configured is not None:
        return configured
    if store is not None:
        labels = store.known_labels()
        if labels:
            return Taxonomy.from_names(labels)
    from tui.core.learning.model import SpecialistModel
    from tui.core.paths import specialist_path

    for config in settings.backends.values():
        if config.type == "specialist":
            info = SpecialistModel.read_info(specialist_path(config))
            usable = [name for name in info.labels if label_problem(name) is None] if info else []
            if usable:
                return Taxonomy.from_names(usable)
    raise NoTaxonomy(
        "no labels known: add a [labels] table to the config, or import labelled tickets"
    )
