"""The backend factory: a config block in, a backend out, through the type registered for it
(`tui.core.backend_types`: built-ins and entry-point plugins, imported only when used)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tui.core.backend_types import (
    BUILTIN,
    ENTRY_POINT_GROUP,
    BackendLoadError,
    UnknownBackendType,
    available_types,
    load_class,
)
from tui.core.config.options import options_class

if TYPE_CHECKING:
    from tui.core.backend import Backend
    from tui.core.config.options import BackendConfig

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "BackendLoadError",
    "Resolver",
    "UnknownBackendType",
    "available_types",
    "create_backend",
    "load_backend_class",
    "options_class",
]

Resolver = Callable[[str], "Backend"]


def load_backend_class(type_name: str) -> type[Backend]:
    cls: type[Backend] = load_class(type_name)
    return cls


def create_backend(config: BackendConfig, resolve: Resolver | None = None) -> Backend:
    """Build a backend from its config; `resolve` builds others by name (for the cascade)."""
    cls = load_backend_class(config.type)
    return cls(config, resolve=resolve)  # type: ignore[call-arg]
