"""The store's one exception family, outside the store package so that modules the store
contract keeps away from it (`tui.core.paths`, read by the backends) can raise it too, when a
database URL is refused before any store is opened."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed for a reason the user can act on."""
