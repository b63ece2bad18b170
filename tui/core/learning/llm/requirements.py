"""What a fine-tune needs installed, checked without importing it.

The TUI asks before it starts a job, so its modal can say what to install in the same words
the CLI would fail with, without paying for importing torch into the app (finding a module's
spec reads the file system only).
"""

from __future__ import annotations

import importlib.util
import sys

from tui.core.learning.llm.base import KNOWN_BASES, package_missing
from tui.core.learning.llm.errors import not_installed

NEEDED_MODULES = ("torch", "transformers", "peft", "sentencepiece", "gguf")
"""Imported by the pipeline; the first missing one is named, as `require` names it."""


def importable(module: str) -> bool:
    """Whether `import module` would find it (a `None` in `sys.modules` blocks it, as there)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_requirement(base: str) -> str | None:
    """The CLI's one line for the first thing missing to fine-tune `base`; None if all is there.

    A base that is a path is not checked here: the child says whether it can read it.
    """
    for module in NEEDED_MODULES:
        if not importable(module):
            return not_installed(module)
    known = KNOWN_BASES.get(base)
    if known is not None and not importable(known.module):
        return package_missing(known)
    return None
