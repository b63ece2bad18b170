"""The prompt a fine-tuned model is trained on and served with, in one place for both.

Short on purpose, with no list of labels: `Ticket: <text>\\nLabel:`, answered by ` <label>`
then the end-of-sequence token. Training (`data`), the Ollama `Modelfile` (`export`) and the
`llamacpp-local` backend's `prompt = "finetuned"` all read it from here, so they cannot drift.
"""

from __future__ import annotations

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
