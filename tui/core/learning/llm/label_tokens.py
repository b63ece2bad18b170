"""`finetune --objective classify`: each label answered by one vocabulary entry of its own.

Why: over four H200 sessions every generative recipe on Banking77 (the model writes
` <label><eos>`, full-vocabulary cross-entropy, LoRA or full, several rates) served at
90.9-91.6 % (benchmarks/RESULTS.md 10-10c). A sequence classifier learns a head over the
labels alone; here the head *is* the model's output layer. Each label is given one of the base's
reserved, never-seen entries (Gemma's `<unused0>` ...), its row set to the mean of the label
name's token embeddings (so it starts near what the name means), and training is cross-entropy
over the labels' logits alone at the prompt's last token. The GGUF stays an ordinary model with
the same prompt; `llamacpp-local` scores each label as a one-token answer (`label_tokens` in
its table), which is one prompt pass and no label trie.

Torch-free: the choice of tokens and their check are shared by training and serving.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tui.core.learning.llm.errors import FinetuneError

UNUSED = re.compile(r"^<unused(\d+)>$")
"""Gemma's reserved vocabulary entries: in the vocabulary and the output layer, never produced
by its tokenizer from text, so giving one to a label changes nothing else the model reads."""


def reserved(vocabulary: Mapping[str, int]) -> list[int]:
    """The reserved entries' ids, in the order of their numbers (`<unused0>` first)."""
    found = sorted(
        (int(match.group(1)), token_id)
        for piece, token_id in vocabulary.items()
        if (match := UNUSED.match(piece))
    )
    return [token_id for _number, token_id in found]


def pick(vocabulary: Mapping[str, int], labels: Sequence[str]) -> dict[str, int]:
    """One reserved entry for each label, in the labels' order.

    Raises:
        FinetuneError: The base has fewer reserved entries than there are labels.
    """
    free = reserved(vocabulary)
    if len(free) < len(labels):
        raise FinetuneError(
            f"--objective classify needs one reserved token (<unusedN>) a label: this base has"
            f" {len(free)} for {len(labels)} labels; use --objective generate"
        )
    return dict(zip(labels, free, strict=False))


def check(tokens: Mapping[str, int], labels: Sequence[str], n_vocab: int) -> dict[str, list[int]]:
    """Each label's one-token answer, for a model served with `label_tokens`.

    Raises:
        ValueError: A label has no token (the model was trained on other labels), a token
            is outside the vocabulary, or two labels share one.
    """
    missing = [name for name in labels if name not in tokens]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"label_tokens has no token for {shown}: the model was fine-tuned on other labels"
        )
    chosen = {name: tokens[name] for name in labels}
    outside = [f"{name}={token}" for name, token in chosen.items() if not 0 <= token < n_vocab]
    if outside:
        raise ValueError(f"label_tokens outside the model's {n_vocab} tokens: {outside[0]}")
    if len(set(chosen.values())) != len(chosen):
        raise ValueError("label_tokens gives two labels the same token")
    return {name: [token] for name, token in chosen.items()}
