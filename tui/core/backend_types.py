"""Backend types: each `type` of a config block maps to an import path, and a module is
imported only when used.

Third-party backends register under the entry-point group `triagedesk.backends`
(`mytype = "mypkg.module:MyBackend"`). A broken optional backend is reported, never fatal.
This module sits below the config and the backend contract (it imports neither), so the
config loader can ask a plugin for its `Options` without an import circle; the typed
factory over it is `tui.core.registry`.
"""

from __future__ import annotations

import importlib
from typing import Any

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


class UnknownBackendType(Exception):
    """No built-in or installed backend has this type."""


class BackendLoadError(Exception):
    """The backend's module failed to import (a missing optional dependency, a broken plugin)."""


def available_types() -> dict[str, str]:
    """Every backend type with its import path, plugins included, importing nothing."""
    from importlib.metadata import entry_points  # ~0.04 s with its scan: only when asked

    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def load_class(type_name: str) -> Any:
    """The class registered for `type_name`, imported now.

    Raises:
        UnknownBackendType: Nothing is registered under that type.
        BackendLoadError: Its module failed to import or lacks the class.
    """
    target = BUILTIN.get(type_name) or available_types().get(type_name)
    if target is None:
        known = ", ".join(sorted(available_types()))
        raise UnknownBackendType(f"unknown backend type {type_name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except Exception as exc:  # a plugin can fail in any way; report it, don't crash
        raise BackendLoadError(f"backend type {type_name!r} failed to load: {exc}") from exc
