"""Training examples: where they come from, the prompt they are shown in, and the split.

The prompt (`prompt`) is short on purpose, with no list of labels: `Ticket: <text>\\nLabel:`
and the answer ` <label>` then the end-of-sequence token. A served model reads the same prompt,
so it answers in a handful of tokens. Only the answer is learned: the prompt's tokens are masked
out of the loss. Examples are cleaned and split the way `export` does (out-of-taxonomy labels
and conflicting duplicates dropped, a stratified split with a seed), so a fine-tune and an
exported file agree on what was held back.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.core.export import ExportReport, ExportRow, clean_rows, split
from tui.core.learning.llm.errors import FinetuneError
from tui.core.learning.llm.prompt import MAX_TEXT_CHARS as MAX_TEXT_CHARS
from tui.core.learning.llm.prompt import PROMPT_TAIL as PROMPT_TAIL
from tui.core.learning.llm.prompt import PROMPT_TEMPLATE as PROMPT_TEMPLATE
from tui.core.learning.llm.prompt import answer as answer
from tui.core.learning.llm.prompt import prompt as prompt
from tui.core.models import Taxonomy

if TYPE_CHECKING:
    from tui.core.store import Store

IGNORE_INDEX = -100
"""Label value that PyTorch's cross-entropy skips (masked prompt and padding)."""


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: str
    ticket_id: str | None = None
    """The ticket it came from, when known: recorded as trained on (`training_sets`)."""
    label_event_id: int | None = None
    teacher: Mapping[str, float] | None = None
    """A teacher's probability for each label (the file's `label_probs`), normalised: the
    classify objective then also learns which labels the ticket could be (distillation)."""


@dataclass(frozen=True, slots=True)
class Split:
    """The examples a fine-tune learns from and the ones it is validated on."""

    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    taxonomy: Taxonomy
    report: ExportReport
    """What cleaning dropped, as `export` reports it."""


def read_labelled(path: Path) -> list[Example]:
    """Labelled tickets from a JSONL or CSV file: `text` (or `subject` + `body`) and `label`.

    A JSONL row may also carry `label_probs`, an object of label to probability (a teacher's
    distribution, e.g. a larger model's or an ensemble's); it is checked and normalised here.

    Raises:
        FinetuneError: The file cannot be read, or a row has no text or no label.
    """
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"{path}: cannot read: {exc}") from exc
    if path.suffix.lower() == ".csv":
        rows: list[dict[str, Any]] = list(csv.DictReader(raw.splitlines()))
    else:
        rows = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FinetuneError(f"{path}:{number}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise FinetuneError(f"{path}:{number}: expected an object")
            rows.append(row)
    examples = []
    for number, row in enumerate(rows, 1):
        text = (
            row.get("text")
            or " ".join(str(row.get(key) or "") for key in ("subject", "body")).strip()
        )
        label = row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise FinetuneError(f"{path}: row {number} has no text")
        if not isinstance(label, str) or not label.strip():
            raise FinetuneError(f"{path}: row {number} has no label")
        probs = row.get("label_probs")
        if isinstance(probs, str):  # a CSV cell: JSON text, or empty for none
            probs = _json_cell(probs, f"{path}: row {number}")
        teacher = None if probs is None else _teacher(probs, f"{path}: row {number}")
        examples.append(Example(text=text, label=label.strip(), teacher=teacher))
    if not examples:
        raise FinetuneError(f"{path}: no labelled rows")
    return examples


def _json_cell(cell: str, where: str) -> object:
    """A CSV cell holding JSON (`label_probs`); an empty cell is None."""
    if not cell.strip():
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise FinetuneError(f"{where}: label_probs is not JSON: {exc.msg}") from None


def _teacher(probs: object, where: str) -> dict[str, float]:
    """`label_probs` checked (an object of label names to finite numbers >= 0 with a positive
    sum) and normalised to sum to one.

    Raises:
        FinetuneError: Anything else, naming the row.
    """
    if not isinstance(probs, dict) or not probs:
        raise FinetuneError(f"{where}: label_probs must be an object of label: probability")
    out: dict[str, float] = {}
    for name, value in probs.items():
        if not isinstance(name, str) or not name.strip():
            raise FinetuneError(f"{where}: label_probs has an empty label name")
        number = _share(value)
        if number is None:
            raise FinetuneError(f"{where}: label_probs[{name!r}] must be a number >= 0")
        out[name.strip()] = out.get(name.strip(), 0.0) + number
    total = sum(out.values())
    if not math.isfinite(total):
        raise FinetuneError(f"{where}: label_probs sums past the largest number")
    if total <= 0:
        raise FinetuneError(f"{where}: label_probs sums to 0")
    return {name: value / total for name, value in out.items()}


def _share(value: object) -> float | None:
    """`value` as a finite float >= 0, or None (a bool, a string, NaN, an int too large for a
    float: JSON allows any number of digits)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def from_store(store: Store) -> list[Example]:
    """The agents' labels (accepted, corrected, typed or imported), never bare predictions.

    Raises:
        FinetuneError: No ticket carries an agent's label yet.
    """
    rows = store.export_rows(include_predictions=False)
    if not rows:
        raise FinetuneError(
            "no agent-labelled tickets to learn from: label tickets in the app, with"
            " `triagedesk label`, or pass --data with a labelled JSONL/CSV file"
        )
    events = {e.ticket_id: e.label_event_id for e in store.training_examples()}
    return [
        Example(text=text, label=label, ticket_id=ticket_id, label_event_id=events.get(ticket_id))
        for ticket_id, text, label, _source in rows
    ]


def make_split(
    examples: Sequence[Example],
    taxonomy: Taxonomy | None,
    *,
    val_fraction: float = 0.2,
    seed: int = 13,
    source: str = "",
    validation: Sequence[Example] | None = None,
) -> Split:
    """Clean the examples like `export` does and split them, stratified by label.

    Without a taxonomy, the labels found in the examples are the taxonomy. With `validation`
    (a team's fixed held-out set), every usable example trains and the validation examples,
    cleaned the same way, are what the model is measured on: no split is drawn.

    Raises:
        FinetuneError: Nothing is left to train on, or nothing to validate on.
    """
    if validation is not None:
        return _fixed_split(examples, validation, taxonomy, seed=seed, source=source)
    if taxonomy is None:
        taxonomy = Taxonomy.from_names({e.label for e in examples})
    report = ExportReport(
        format="finetune",
        source_db=source,
        seed=seed,
        val_fraction=val_fraction,
        rows_read=len(examples),
    )
    rows = [ExportRow(str(i), e.text, e.label, "file") for i, e in enumerate(examples)]
    kept = clean_rows(rows, taxonomy, report, scrub_pii=False)
    if not kept:
        raise FinetuneError(f"nothing to train on: {report.all_dropped()}")
    train_idx, val_idx = split([r.label for r in kept], val_fraction, seed)
    if not val_idx:
        raise FinetuneError(
            f"only {len(kept)} usable tickets: none left to validate on; label more tickets"
        )
    report.train_rows, report.validation_rows = len(train_idx), len(val_idx)
    return Split(
        train=tuple(_kept(examples, kept[i]) for i in train_idx),
        validation=tuple(_kept(examples, kept[i]) for i in val_idx),
        taxonomy=taxonomy,
        report=report,
    )


def _fixed_split(
    examples: Sequence[Example],
    validation: Sequence[Example],
    taxonomy: Taxonomy | None,
    *,
    seed: int,
    source: str,
) -> Split:
    """Train on every usable example and validate on the given held-out examples.

    A validation ticket whose text is also a training ticket's is dropped from validation
    (counted in the report), so the held-out figure never scores text the model learnt.
    """
    if taxonomy is None:
        taxonomy = Taxonomy.from_names({e.label for e in examples})
    report = ExportReport(
        format="finetune", source_db=source, seed=seed, val_fraction=0.0, rows_read=len(examples)
    )
    rows = [ExportRow(str(i), e.text, e.label, "file") for i, e in enumerate(examples)]
    kept = clean_rows(rows, taxonomy, report, scrub_pii=False)
    if not kept:
        raise FinetuneError(f"nothing to train on: {report.all_dropped()}")
    held = ExportReport(
        format="finetune", source_db=source, seed=seed, val_fraction=0.0, rows_read=len(validation)
    )
    val_rows = [ExportRow(str(i), e.text, e.label, "file") for i, e in enumerate(validation)]
    learnt = {" ".join(r.text.split()).casefold() for r in kept}
    checked = [
        r
        for r in clean_rows(val_rows, taxonomy, held, scrub_pii=False)
        if " ".join(r.text.split()).casefold() not in learnt
    ]
    if not checked:
        raise FinetuneError("nothing to validate on: every validation ticket was dropped")
    rng = random.Random(seed)
    order = list(range(len(kept)))
    rng.shuffle(order)
    report.train_rows, report.validation_rows = len(kept), len(checked)
    return Split(
        train=tuple(_kept(examples, kept[i]) for i in order),
        validation=tuple(_kept(validation, r) for r in checked),
        taxonomy=taxonomy,
        report=report,
    )


def _kept(examples: Sequence[Example], row: ExportRow) -> Example:
    """The cleaned row as an example, keeping where it came from (its row index is the id)."""
    return replace(examples[int(row.ticket_id)], text=row.text, label=row.label)


def encode(tokenizer: Any, example: Example, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end of sequence, and labels with the prompt masked.

    The prompt is tokenized on its own (with the tokenizer's beginning-of-sequence token), as
    a server tokenizes it; the answer's tokens follow. When the whole would pass `max_tokens`
    the ticket's text is cut at its end, keeping the closing `\nLabel:`; the answer never is.
    """
    prompt_ids: list[int] = tokenizer(prompt(example.text)).input_ids
    answer_ids: list[int] = tokenizer(answer(example.label), add_special_tokens=False).input_ids
    answer_ids = [*answer_ids, tokenizer.eos_token_id]
    room = max(1, max_tokens - len(answer_ids))
    if len(prompt_ids) > room:
        tail: list[int] = tokenizer(PROMPT_TAIL, add_special_tokens=False).input_ids
        prompt_ids = prompt_ids[: max(1, room - len(tail))] + tail
    ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return ids, labels


def pad_batch(
    batch: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Right-padded ids, attention mask and labels for one batch."""
    width = max(len(ids) for ids, _ in batch)
    ids_out, mask_out, labels_out = [], [], []
    for ids, labels in batch:
        gap = width - len(ids)
        ids_out.append(ids + [pad_id] * gap)
        mask_out.append([1] * len(ids) + [0] * gap)
        labels_out.append(labels + [IGNORE_INDEX] * gap)
    return ids_out, mask_out, labels_out
