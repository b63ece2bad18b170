"""The store's one exception family, importable from every part of the store (defined in
`tui.core.store_error`, so that `tui.core.database_url` raises the same class)."""

from __future__ import annotations

from tui.core.store_error import StoreError

__all__ = ["StoreError"]
