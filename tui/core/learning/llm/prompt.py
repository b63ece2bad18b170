"""The prompt a fine-tuned model is trained on and served with, in one place for both.

Short on purpose, with no list of labels: `Ticket: <text>\\nLabel:`, answered by ` <label>`
then the end-of-sequence token. Training (`data`), the Ollama `Modelfile` (`export`) and the
`llamacpp-local` backend's `prompt = "finetuned"` all read it from here, so they cannot drift.
"""

from __future__ import annotations

from typing import Any

from tui.core.backend import RequestRejected

PROMPT_TAIL = "\nLabel:"
PROMPT_TEMPLATE = "Ticket: {text}" + PROMPT_TAIL
"""What the model reads; the Modelfile's template and the served prompt are this string."""
MAX_TEXT_CHARS = 1500
"""Longer tickets are cut: the label is nearly always decided by the first lines."""


def prompt(text: str) -> str:
    """The prompt for one ticket, whitespace collapsed so that a newline cannot end it early."""
    flat = " ".join(text.split())[:MAX_TEXT_CHARS]
    return PROMPT_TEMPLATE.format(text=flat)


def answer(label: str) -> str:
    """The answer text that follows the prompt (the end-of-sequence token comes after it)."""
    return " " + label


def prompt_ids(llm: Any, text: str, room: int) -> list[int]:
    """The trained prompt's tokens (with the beginning-of-sequence token), at most `room`.

    A ticket too long for the context is cut at the end of its text, keeping `\\nLabel:`,
    as training cut it.
    """
    ids: list[int] = llm.tokenize(prompt(text).encode(), add_bos=True, special=False)
    if len(ids) <= room:
        return ids
    tail: list[int] = llm.tokenize(PROMPT_TAIL.encode(), add_bos=False, special=False)
    if room <= len(tail) + 1:
        raise RequestRejected(f"n_ctx leaves {room} tokens for the prompt; raise n_ctx")
    return ids[: room - len(tail)] + tail
