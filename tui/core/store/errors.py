"""The store's one exception family, in a module of its own so every part can raise it."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed for a reason the user can act on."""
