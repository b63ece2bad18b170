"""The one error the fine-tuning pipeline raises for a problem the user can fix."""

from __future__ import annotations

FINETUNE_EXTRA = "pip install torch transformers peft sentencepiece protobuf gguf"
"""What training needs. Not a triagedesk extra: torch would put a multi-GB CUDA build into the
lock for every install, and a team picks its own torch build (CPU or its CUDA version)."""


class FinetuneError(Exception):
    """Fine-tuning cannot go on; the message says what to do (install, point at, relabel)."""


def require(module: str) -> None:
    """Fail with the install command when a training dependency is missing.

    Raises:
        FinetuneError: `module` cannot be imported.
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise FinetuneError(not_installed(module)) from exc


def not_installed(module: str) -> str:
    """The one line that says a training dependency is missing and what to install."""
    return f"{module} is not installed; fine-tuning needs {FINETUNE_EXTRA}"
