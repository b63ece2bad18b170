"""The commands that bring tickets and labels in, and train on them: import, label, train."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from tui.cli.context import BadInput, Context, headless
from tui.cli.usage import Choice, Command, PathType, device_option, value_option
from tui.core.store import ImportRejected, StoreError

if TYPE_CHECKING:
    from tui.core.learning.model import SpecialistModel
from tui.services.evaluation import labelled_tickets, read_labelled


@click.command(name="import", cls=Command, help="add tickets from JSONL, CSV, .eml or mbox files")
@click.argument("files", nargs=-1, required=True, type=PathType(), metavar="FILE")
@value_option(
    "--format",
    "file_format",
    type=Choice(["csv", "jsonl", "eml", "mbox"]),
    metavar="{csv,jsonl,eml,mbox}",
)
@headless
def import_files(ctx: Context, *, files: tuple[Path, ...], file_format: str | None) -> int:
    """Each file all or nothing: a file with a bad row imports none, and is named with its
    first 20 bad rows (line and reason); the others still import. Exit 2 if any failed."""
    from tui.core.ingest import IngestError, parse_file

    failed = 0
    with ctx.store() as store:
        for path in files:
            try:
                parsed = parse_file(path, file_format)
            except IngestError as exc:
                print(f"triagedesk: error: {exc}", file=ctx.err)
                failed += 1
                continue
            errors = parsed.errors
            if not errors:
                try:
                    result = store.import_tickets(
                        parsed.tickets, parsed.labels, source=str(path), lines=parsed.lines
                    )
                except ImportRejected as exc:  # ids imported before with other content
                    errors = exc.errors
            if errors:
                failed += 1
                shown = errors[:20]
                for row in shown:
                    print(f"{path}:{row.line}: {row.reason}", file=ctx.err)
                more = len(errors) - len(shown)
                suffix = f" (and {more} more)" if more else ""
                print(
                    f"triagedesk: error: {path}: {len(errors)} bad rows{suffix};"
                    " nothing imported from this file",
                    file=ctx.err,
                )
                continue
            ctx.say(
                f"{path}: imported {result.inserted} tickets"
                f" ({result.duplicates} already present, {result.labels_recorded} labels)"
            )
    return 2 if failed else 0


@click.command(name="label", cls=Command, help="record an agent's label")
@click.argument("ticket_id", metavar="ticket_id")
@click.argument("label", metavar="label")
@value_option("--agent", default="cli")
@headless
def label(ctx: Context, *, ticket_id: str, label: str, agent: str) -> int:
    from tui.core.models import check_label_name

    try:
        name = check_label_name(label)
    except ValueError as exc:
        raise BadInput(f"label {label[:40]!r}: {exc}") from None
    taxonomy = ctx.settings.taxonomy()
    if taxonomy is not None and name not in taxonomy:
        raise BadInput(f"label {name!r} is not in the config's [labels]")
    with ctx.store() as store:
        try:
            event = store.add_label(ticket_id, name, agent=agent, source="cli")
        except StoreError as exc:
            raise BadInput(str(exc)) from None
    ctx.say(f"{event.ticket_id}: labelled {event.label} by {event.agent}")
    return 0


@click.command(name="train", cls=Command, help="train the local specialist")
@value_option("--data", type=PathType(), help="labelled JSONL/CSV instead of the database")
@value_option("--out", type=PathType(), help="where to save the model")
@value_option(
    "--kind",
    default="auto",
    help="auto (default: the kind your labels make best, and why) or tfidf, embeddings,"
    " fewshot, finetuned, ensemble",
)
@device_option("where a stronger kind trains: auto (default), cpu or cuda")
@headless
def train(ctx: Context, *, data: Path | None, out: Path | None, kind: str, device: str) -> int:
    from tui.core.learning.model import SpecialistModel, TrainingError
    from tui.core.learning.training import resolve_kind, specialist_file, train_on_store
    from tui.core.safe_files import UnwritablePath, check_writable_file

    target = out or specialist_file(ctx.settings)

    def progress(line: str) -> None:  # minutes of fewshot training: say where it is
        print(f"triagedesk: {line}", file=ctx.err, flush=True)

    try:  # before training: minutes of work must not end in "cannot write there"
        check_writable_file(target)
    except UnwritablePath as exc:
        raise BadInput(f"--out {exc}" if out else str(exc)) from None
    try:
        if data:
            parsed = read_labelled(data)
            tickets = labelled_tickets(parsed)
            labels = [parsed.labels[t.id] for t in tickets]
            unlabelled = [t.text for t in parsed.tickets if t.id not in parsed.labels]
            chosen, extra = resolve_kind(kind, labels, unlabelled=len(unlabelled))
            model = SpecialistModel.train(
                [t.text for t in tickets],
                labels,
                source=str(data),
                kind=chosen,
                device=device,
                ticket_ids=[t.id for t in tickets],
                progress=progress,
                extra=extra,
                unlabelled=unlabelled,  # the file's rows without a label (fewshot's pool)
            )
        else:
            with ctx.store() as store:
                ctx.warn_unusable_labels(store)
                model = train_on_store(store, kind=kind, device=device, progress=progress)
    except TrainingError as exc:
        raise BadInput(str(exc)) from None
    except ImportError as exc:
        raise BadInput(f"--kind {kind}: {exc}") from None
    try:
        model.save(target)
    except OSError as exc:  # the disk filled up or went read-only while training
        raise BadInput(f"{target}: cannot save the model ({exc.strerror or exc})") from None
    _record(ctx, model, from_file=data is not None)
    info = model.info
    if "auto" in info.extra:
        ctx.say(f"kind auto chose {info.kind}: {info.extra['auto']}")
    ctx.say(
        f"trained {info.kind} specialist on {info.n_examples} tickets, {len(info.labels)} labels,"
        f" in {info.train_seconds:.1f} s -> {target}"
    )
    return 0


def _record(ctx: Context, model: SpecialistModel, *, from_file: bool) -> None:
    """Record what the model learnt in the database, so that its accuracy leaves it out.

    A model trained from a file is recorded in the configured database when there is one
    (it may route its tickets); any other is matched from the training set saved beside the
    model when its statistics are read. A database that cannot take the record is a warning:
    the model is saved, and the next `stats` records it from that file.
    """
    if model.training is None or (from_file and not ctx.db_path.exists()):
        return
    try:
        with ctx.store() as store:
            store.record_training(model.training)
    except StoreError as exc:
        ctx.warn(f"the model's training set is not recorded in the database yet: {exc}")
