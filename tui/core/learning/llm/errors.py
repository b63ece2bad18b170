"""The one error the fine-tuning pipeline raises for a problem the user can fix."""

from __future__ import annotations

FINETUNE_EXTRA = "pip install 'triagedesk[finetune]'"
"""torch, transformers, peft, sentencepiece, protobuf and gguf: what training needs."""


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
        raise FinetuneError(
            f"{module} is not installed; fine-tuning needs {FINETUNE_EXTRA}"
        ) from exc
