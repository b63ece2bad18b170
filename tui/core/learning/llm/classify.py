"""The classify objective's torch side: label rows, the loss over labels alone, predictions.

See `label_tokens` for why: each label is one reserved vocabulary entry, and the model learns
to put its probability on the right one among the labels at the prompt's last token. Only that
position's hidden state goes through the output layer (a batch of 32 prompts of 40 tokens
would otherwise compute 32 x 40 rows of 262k logits to keep 32 x 77 of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tui.core.learning.llm.data import PROMPT_TAIL, Example, answer, prompt
from tui.core.learning.llm.errors import FinetuneError


def init_rows(model: Any, tokenizer: Any, tokens: Mapping[str, int]) -> None:
    """Set each label's row to the mean embedding of its name's tokens (` card_arrival`).

    Gemma ties its output layer to the input embeddings, so this is the label's output row
    too: training starts from "the label whose name this ticket is about" rather than noise.
    """
    import torch

    weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for name, token in tokens.items():
            ids = tokenizer(answer(name), add_special_tokens=False).input_ids
            if ids:
                weight[token] = weight[torch.tensor(ids, device=weight.device)].mean(dim=0)


def encode(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    """The prompt's tokens (beginning-of-sequence first), cut at the text's end to fit, the
    closing `\\nLabel:` kept, as `data.encode` and the served `prompt_ids` cut it."""
    ids: list[int] = tokenizer(prompt(text)).input_ids
    if len(ids) <= max_tokens:
        return ids
    tail: list[int] = tokenizer(PROMPT_TAIL, add_special_tokens=False).input_ids
    return ids[: max(1, max_tokens - len(tail))] + tail


def _parts(model: Any) -> tuple[Any, Any, float | None]:
    """The transformer body, the output layer and the final soft cap of a (peft-wrapped)
    causal LM: the body's last hidden state is after its final norm, what llama.cpp feeds
    its output layer."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    body, head = getattr(inner, "model", None), getattr(inner, "lm_head", None)
    if body is None or head is None:
        raise FinetuneError(f"--objective classify: {type(inner).__name__} has no body and head")
    cap = getattr(getattr(inner, "config", None), "final_logit_softcapping", None)
    return body, head, float(cap) if cap else None


def label_logits(model: Any, batch: Sequence[list[int]], token_ids: Any, pad_id: int) -> Any:
    """The labels' logits (batch x labels) at each prompt's last token, right-padded."""
    import torch

    device = token_ids.device
    width = max(len(ids) for ids in batch)
    ids = torch.tensor([row + [pad_id] * (width - len(row)) for row in batch], device=device)
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch], device=device)
    last = torch.tensor([len(row) - 1 for row in batch], device=device)
    body, head, cap = _parts(model)
    hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = head(hidden[torch.arange(len(batch), device=device), last])[:, token_ids]
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def loss(
    model: Any,
    batch: Sequence[list[int]],
    targets: Any,
    token_ids: Any,
    pad_id: int,
    teacher: Any = None,
    weight: float = 0.0,
) -> Any:
    """Cross-entropy over the labels alone; with `teacher` (batch x labels probabilities),
    mixed with the cross-entropy against the teacher's distribution at `weight` (Hinton et
    al.'s distillation: the soft targets say which other labels a ticket could be)."""
    import torch

    logits = label_logits(model, batch, token_ids, pad_id).float()
    hard = torch.nn.functional.cross_entropy(logits, targets)
    if teacher is None or weight <= 0:
        return hard
    soft = -(teacher * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return (1 - weight) * hard + weight * soft


Encoded = tuple[list[int], int, tuple[float, ...] | None]
"""A training example for the classify objective: prompt tokens, the label's index among the
label tokens, and the teacher's distribution in that order (None without one)."""


def encode_all(
    tokenizer: Any, examples: Sequence[Example], tokens: Mapping[str, int], max_tokens: int
) -> list[Encoded]:
    """Each example's prompt tokens, its label's index among `tokens` and its teacher row."""
    index = {name: i for i, name in enumerate(tokens)}
    return [
        (encode(tokenizer, e.text, max_tokens), index[e.label], teacher_row(e, index))
        for e in examples
    ]


def teacher_row(example: Example, index: Mapping[str, int]) -> tuple[float, ...] | None:
    """The example's teacher distribution laid out in the labels' order.

    Raises:
        FinetuneError: The teacher names a label the model is not trained on.
    """
    if example.teacher is None:
        return None
    row = [0.0] * len(index)
    for name, p in example.teacher.items():
        if name not in index:
            raise FinetuneError(f"label_probs names {name!r}, which is not one of the labels")
        row[index[name]] = p
    return tuple(row)


def check_teachers(examples: Sequence[Example], labels: Sequence[str]) -> int:
    """How many examples carry a teacher's distribution, each checked against the labels
    (before anything slow loads, so a bad file fails in a second).

    Raises:
        FinetuneError: A distribution names a label outside `labels`.
    """
    index = {name: i for i, name in enumerate(labels)}
    return sum(teacher_row(e, index) is not None for e in examples)


def refuse_teachers(examples: Sequence[Example]) -> None:
    """Only the classify objective learns a teacher's distribution.

    Raises:
        FinetuneError: An example carries one.
    """
    if any(e.teacher is not None for e in examples):
        raise FinetuneError("label_probs (a teacher's distribution) needs --objective classify")


def batch_teacher(rows: Sequence[Encoded], labels: int, device: str) -> Any:
    """The batch's teacher rows as a tensor (one-hot of the label where a row has none), or
    None when no row of the batch has one."""
    import torch

    if all(teacher is None for _ids, _target, teacher in rows):
        return None
    table = [
        teacher if teacher is not None else tuple(float(i == target) for i in range(labels))
        for _ids, target, teacher in rows
    ]
    return torch.tensor(table, dtype=torch.float32, device=device)


def predict(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    tokens: Mapping[str, int],
    *,
    device: str,
    max_tokens: int = 256,
    batch_size: int = 32,
) -> list[str]:
    """Each ticket's label: the most probable among the labels' tokens, as served."""
    import torch

    names = list(tokens)
    token_ids = torch.tensor(list(tokens.values()), device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.eval()
    answers: list[str] = []
    for start in range(0, len(texts), batch_size):
        batch = [encode(tokenizer, t, max_tokens) for t in texts[start : start + batch_size]]
        with torch.no_grad():
            best = label_logits(model, batch, token_ids, pad_id).argmax(dim=-1)
        answers.extend(names[int(i)] for i in best)
    return answers
