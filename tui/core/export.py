"""Retraining data out (SPEC "Retraining data out"): agent labels as fine-tuning files.

Only labels an agent stated (accepted, corrected, typed on the command line or imported) are
exported, never bare predictions, so a model is not trained on its own guesses. Rows are
cleaned (out-of-taxonomy labels, duplicates and conflicting duplicates dropped, PII optionally
scrubbed), split by label with a seed, and written atomically with a `report.json` that says
what was dropped and why.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tui.core import dedup
from tui.core.pii import PII_TYPES, scrub
from tui.core.prompt import build_prompt
from tui.core.safe_files import create_private_temp, private_dir

if TYPE_CHECKING:
    from tui.core.models import Taxonomy
    from tui.core.store import Store

ExportFormat = Literal["openai", "hf", "csv"]
FORMATS: tuple[ExportFormat, ...] = ("openai", "hf", "csv")
OPENAI_MIN_EXAMPLES = 10
"""OpenAI's fine-tuning API rejects training files with fewer examples."""
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(Exception):
    """The export cannot produce usable files; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ExportRow:
    ticket_id: str
    text: str
    label: str
    source: str
    """Where the label came from: accept, correct, cli, import (or prediction)."""


@dataclass(slots=True)
class ExportReport:
    """What an export wrote and dropped; serialised as `report.json`."""

    format: str
    source_db: str
    seed: int
    val_fraction: float
    train_rows: int = 0
    validation_rows: int = 0
    rows_read: int = 0
    per_label: dict[str, dict[str, int]] = field(default_factory=dict)
    """label -> {"train": n, "validation": n}, in taxonomy order."""
    duplicates_dropped: dict[str, int] = field(default_factory=lambda: {"exact": 0, "near": 0})
    conflicts_dropped: int = 0
    """Rows dropped because their duplicates carry a different label."""
    conflict_groups: int = 0
    out_of_taxonomy_dropped: int = 0
    out_of_taxonomy_labels: dict[str, int] = field(default_factory=dict)
    pii_scrubbed: dict[str, int] | None = None
    """Items replaced per type, or None when scrubbing was off."""
    label_sources: dict[str, int] = field(default_factory=dict)
    include_predictions: bool = False
    dedup_method: str = dedup.METHOD
    files: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def all_dropped(self) -> str:
        """Why `clean_rows` kept nothing: "12 labelled tickets, all dropped (...)", with how
        many each rule took; for the error of any caller that needs some rows left."""
        return (
            f"{self.rows_read} labelled tickets, all dropped"
            f" ({self.out_of_taxonomy_dropped} outside the taxonomy,"
            f" {self.conflicts_dropped} conflicting duplicates)"
        )


def clean_rows(
    rows: Sequence[ExportRow], taxonomy: Taxonomy, report: ExportReport, *, scrub_pii: bool
) -> list[ExportRow]:
    """Drop out-of-taxonomy labels and duplicates, scrub PII; record every drop in `report`."""
    in_taxonomy: list[ExportRow] = []
    outside: Counter[str] = Counter()
    for row in rows:
        if row.label in taxonomy:
            in_taxonomy.append(row)
        else:
            outside[row.label] += 1
    report.out_of_taxonomy_dropped = sum(outside.values())
    report.out_of_taxonomy_labels = dict(sorted(outside.items()))
    per_row_pii: list[Counter[str]] = []
    if scrub_pii:
        scrubbed = []
        for row in in_taxonomy:
            text, counts = scrub(row.text)
            scrubbed.append(ExportRow(row.ticket_id, text, row.label, row.source))
            per_row_pii.append(counts)
        in_taxonomy = scrubbed
    groups = dedup.group_duplicates([r.text for r in in_taxonomy])
    kept: list[int] = []
    for members in groups.members:
        if len({in_taxonomy[i].label for i in members}) > 1:
            report.conflicts_dropped += len(members)
            report.conflict_groups += 1
            continue
        kept.append(members[0])
        for index in members[1:]:
            report.duplicates_dropped[groups.kinds[index]] += 1
    kept.sort()
    if scrub_pii:
        total: Counter[str] = Counter()
        for index in kept:
            total.update(per_row_pii[index])
        report.pii_scrubbed = {kind: total[kind] for kind in PII_TYPES}
    return [in_taxonomy[i] for i in kept]


def split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified train/validation indices, reproducible from the seed.

    Each label gives `val_fraction` of its rows to validation (largest remainders settle the
    rounding so the total matches), but always keeps at least one in train, so a label with
    a single example is train-only and every label with two or more appears in both splits
    when the fraction allows.

    Returns:
        Train and validation indices, each shuffled with the seed.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(index)
    names = sorted(by_label)
    wanted = {name: len(by_label[name]) * val_fraction for name in names}
    quota = {name: min(int(wanted[name]), len(by_label[name]) - 1) for name in names}
    target = min(round(len(labels) * val_fraction), sum(len(by_label[n]) - 1 for n in names))
    by_remainder = sorted(names, key=lambda n: (-(wanted[n] - int(wanted[n])), n))
    while sum(quota.values()) < target:
        grew = False
        for name in by_remainder:
            if sum(quota.values()) >= target:
                break
            if quota[name] < len(by_label[name]) - 1:
                quota[name] += 1
                grew = True
        if not grew:
            break
    train: list[int] = []
    validation: list[int] = []
    for name in names:
        members = by_label[name][:]
        rng.shuffle(members)
        validation.extend(members[: quota[name]])
        train.extend(members[quota[name] :])
    rng.shuffle(train)
    rng.shuffle(validation)
    return train, validation


def neutralise_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula (CSV injection) with an apostrophe."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _openai_line(row: ExportRow, taxonomy: Taxonomy) -> str:
    messages: list[dict[str, str]] = build_prompt(row.text, taxonomy).messages()
    messages.append({"role": "assistant", "content": json.dumps({"label": row.label})})
    return json.dumps({"messages": messages}, ensure_ascii=False)


def render(fmt: ExportFormat, rows: Sequence[ExportRow], taxonomy: Taxonomy) -> str:
    """One split's file content in the given format."""
    if fmt == "openai":
        return "".join(_openai_line(r, taxonomy) + "\n" for r in rows)
    if fmt == "hf":
        return "".join(
            json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False) + "\n" for r in rows
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows([neutralise_cell(r.text), neutralise_cell(r.label)] for r in rows)
    return buffer.getvalue()


def write_atomically(out: Path, files: dict[str, str]) -> None:
    """Write every file or none: all go to temp files first, then each is moved into place.

    If a move fails, files already moved are removed and any file they replaced is put back.

    Raises:
        ExportError: A file could not be written or moved.
    """
    created_dir = not out.exists()
    try:
        private_dir(out)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the folder: {exc.strerror}") from None
    temps: dict[str, str] = {}
    backups: dict[Path, str] = {}
    placed: list[Path] = []
    try:
        for name, content in files.items():
            # 0600 whatever the umask, O_EXCL|O_NOFOLLOW: the files hold customer text
            handle, tmp = create_private_temp(out, name)
            with handle:
                temps[name] = tmp
                handle.write(content.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
        for name, tmp in temps.items():
            final = out / name
            if final.exists():
                backup = str(out / f".{name}.{uuid.uuid4().hex}.bak")
                os.replace(final, backup)
                backups[final] = backup
            os.replace(tmp, final)
            placed.append(final)
    except OSError as exc:
        for final in placed:
            with contextlib.suppress(OSError):
                os.unlink(final)
        for final, backup in backups.items():
            with contextlib.suppress(OSError):
                os.replace(backup, final)
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if created_dir:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise ExportError(f"{out}: export failed, nothing written: {exc}") from None
    for backup in backups.values():
        with contextlib.suppress(OSError):
            os.unlink(backup)


def export(
    store: Store,
    taxonomy: Taxonomy,
    *,
    fmt: ExportFormat,
    out: Path,
    val_fraction: float = 0.2,
    seed: int = 13,
    scrub_pii: bool = False,
    include_predictions: bool = False,
) -> ExportReport:
    """Write the train/validation files and `report.json` for the agent-labelled tickets.

    Args:
        store: The database to read labels from.
        taxonomy: Labels to keep (others are dropped and counted); also the prompt's list.
        fmt: `openai` chat fine-tuning JSONL, `hf` JSONL plus labels.json, or `csv`.
        out: Folder to write into (created if missing).
        val_fraction: Share of each label held out for validation, in [0, 1).
        seed: Seed of the split and the row order.
        scrub_pii: Replace e-mails, phones, cards and IBANs with typed placeholders.
        include_predictions: Also export unlabelled tickets' predicted labels (off by
            default: a model trained on its own guesses learns its own mistakes).

    Raises:
        ExportError: Bad arguments, no agent labels, too few rows for the format, or a
            write failure (then nothing is left behind).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if not 0.0 <= val_fraction < 1.0:
        raise ExportError(f"--val-fraction {val_fraction}: must be at least 0 and below 1")
    raw = [ExportRow(*r) for r in store.export_rows(include_predictions=include_predictions)]
    if not raw:
        raise ExportError(
            "no agent-labelled tickets to export: label tickets in the app, with"
            " `triagedesk label`, or import a file whose rows carry a label"
        )
    report = ExportReport(
        format=fmt,
        source_db=str(store.path),
        seed=seed,
        val_fraction=val_fraction,
        rows_read=len(raw),
        include_predictions=include_predictions,
        label_sources=dict(sorted(Counter(r.source for r in raw).items())),
    )
    rows = clean_rows(raw, taxonomy, report, scrub_pii=scrub_pii)
    if not rows:
        raise ExportError(f"nothing left to export: {report.all_dropped()}")
    train_idx, val_idx = split([r.label for r in rows], val_fraction, seed)
    train = [rows[i] for i in train_idx]
    validation = [rows[i] for i in val_idx]
    if fmt == "openai" and len(train) < OPENAI_MIN_EXAMPLES:
        raise ExportError(
            f"only {len(train)} training examples after cleaning; OpenAI fine-tuning needs at"
            f" least {OPENAI_MIN_EXAMPLES}: label more tickets or lower --val-fraction"
        )
    report.train_rows, report.validation_rows = len(train), len(validation)
    train_counts = Counter(r.label for r in train)
    val_counts = Counter(r.label for r in validation)
    report.per_label = {
        name: {"train": train_counts[name], "validation": val_counts[name]}
        for name in taxonomy.names
    }
    ext = "csv" if fmt == "csv" else "jsonl"
    files = {
        f"train.{ext}": render(fmt, train, taxonomy),
        f"validation.{ext}": render(fmt, validation, taxonomy),
    }
    if fmt == "hf":
        files["labels.json"] = json.dumps(list(taxonomy.names), indent=2, ensure_ascii=False)
    report.files = [*files, "report.json"]
    files["report.json"] = report.to_json() + "\n"
    write_atomically(out, files)
    return report
