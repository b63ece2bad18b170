"""Backend registry: names map to import paths, and a module is imported only when used.

Third-party backends register under the entry-point group `triagedesk.backends`
(`mytype = "mypkg.module:MyBackend"`). A broken optional backend is reported, never fatal.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from tui.core.config.options import BUILTIN_OPTIONS, BackendConfig

if TYPE_CHECKING:
    from tui.core.backend import Backend

ENTRY_POINT_GROUP = "triagedesk.backends"

BUILTIN: dict[str, str] = {
    "specialist": "backends.specialist:SpecialistBackend",
    "openai": "backends.openai_compat:OpenAIBackend",
    "anthropic": "backends.anthropic:AnthropicBackend",
    "ollama": "backends.ollama:OllamaBackend",
    "llamacpp": "backends.llamacpp:LlamaCppServerBackend",
    "llamacpp-local": "backends.llamacpp_local:LlamaCppLocalBackend",
    "cascade": "backends.cascade:CascadeBackend",
}

Resolver = Callable[[str], "Backend"]


class UnknownBackendType(Exception):
    """No built-in or installed backend has this type."""


class BackendLoadError(Exception):
    """The backend's module failed to import (a missing optional dependency, a broken plugin)."""


def available_types() -> dict[str, str]:
    """Every backend type with its import path, plugins included, importing nothing."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load_backend_class(type_name: str) -> type[Backend]:
    target = available_types().get(type_name)
    if target is None:
        known = ", ".join(sorted(available_types()))
        raise UnknownBackendType(f"unknown backend type {type_name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: type[Backend] = getattr(module, attr)
    except Exception as exc:  # a plugin can fail in any way; report it, don't crash
        raise BackendLoadError(f"backend type {type_name!r} failed to load: {exc}") from exc
    return cls


def options_class(type_name: str) -> type[BackendConfig] | None:
    """The `Options` model of a backend type's block; None for a type nobody has.

    A built-in type's model is read from the core, importing no backend module (so loading a
    config never imports httpx or an SDK). A plugin's is its backend class's `Options`
    attribute, so its module is imported; a plugin without one, or one that fails to load
    (reported when it is used, as always), gets the base model, which keeps its own keys.
    """
    if type_name in BUILTIN_OPTIONS:
        return BUILTIN_OPTIONS[type_name]
    if type_name not in available_types():
        return None
    try:
        options = getattr(load_backend_class(type_name), "Options", None)
    except BackendLoadError:
        return BackendConfig
    if isinstance(options, type) and issubclass(options, BackendConfig):
        return options
    return BackendConfig


def create_backend(config: BackendConfig, resolve: Resolver | None = None) -> Backend:
    """Build a backend from its config; `resolve` builds others by name (for the cascade)."""
    cls = load_backend_class(config.type)
    return cls(config, resolve=resolve)  # type: ignore[call-arg]
