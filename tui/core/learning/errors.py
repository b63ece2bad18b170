"""The two ways training can fail before it starts, shared by every specialist kind.

They live apart from the model and the kinds so that both can raise them without importing
each other.
"""

from __future__ import annotations

import importlib

EXTRA = "pip install 'triagedesk[embeddings]'"


class TrainingError(Exception):
    """The labels cannot train a model (too few examples, a single label)."""


class MissingExtra(ImportError):
    """An optional package is missing; the message names the pip extra that brings it."""


def require(*modules: str, also: str = "") -> None:
    """Import-check optional packages up front, so a missing one fails with the fix.

    Raises:
        MissingExtra: Naming every missing module and the pip command that brings them.
    """
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        hint = f"{EXTRA}{also}"
        raise MissingExtra(f"needs {', '.join(missing)}: install it with `{hint}`")
