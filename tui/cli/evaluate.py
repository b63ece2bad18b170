"""The commands that score backends and hand labels on: eval, tune-cascade, export."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from tui.cli.context import BadInput, Context, headless, wait_printer
from tui.cli.route import concurrency_option
from tui.cli.usage import (
    Choice,
    Command,
    Integer,
    PathType,
    Share,
    WholeNumber,
    flag,
    value_option,
)
from tui.core import money
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.store import StoreError
from tui.services import evaluation
from tui.services.routing import Router


def route_passes(
    ctx: Context,
    router: Router,
    tickets: Sequence[Ticket],
    passes: Sequence[tuple[str, int]],
    *,
    description: str,
    run_prefix: str,
    on_decision: Callable[[Decision], None],
) -> None:
    """`evaluation.route_passes` under one progress bar, retry waits printed on stderr."""
    router.on_wait = wait_printer(ctx)
    progress = ctx.progress()
    progress.start(len(tickets) * len(passes), description)

    def collect(decision: Decision) -> None:
        on_decision(decision)
        progress.advance()

    try:
        asyncio.run(
            evaluation.route_passes(
                router, tickets, passes, run_prefix=run_prefix, on_decision=collect
            )
        )
    finally:
        progress.stop()


@click.command(name="eval", cls=Command, help="score a backend on a labelled file")
@value_option("--backend", required=True)
@value_option("--data", type=PathType(), required=True)
@value_option("--limit", type=WholeNumber(1))
@concurrency_option()
@flag("--json", "as_json")
@flag("--store", help="also store the decisions")
@flag("--curve", help="also the specialist's learning curve")
@value_option("--train", type=PathType(), help="labelled file for --curve (default: the database)")
@value_option("--seed", type=Integer(), default=13, help="seed of the --curve samples")
@headless
def evaluate(
    ctx: Context,
    *,
    backend: str,
    data: Path,
    limit: int | None,
    concurrency: int | None,
    as_json: bool,
    store: bool,
    curve: bool,
    train: Path | None,
    seed: int,
) -> int:
    config = ctx.settings.backend(backend)
    parsed = evaluation.read_labelled(data)
    labels = parsed.labels
    tickets = evaluation.labelled_tickets(parsed)[:limit]
    taxonomy = ctx.settings.taxonomy() or Taxonomy.from_names(set(labels.values()))
    db = ctx.store() if store else None
    if db is not None:
        kept = {t.id: labels[t.id] for t in tickets}  # --limit: only the routed tickets' labels
        db.import_tickets(tickets, kept, source=str(data), lines=parsed.lines)
    decisions: list[Decision] = []
    try:
        route_passes(
            ctx,
            Router(ctx.settings, taxonomy, db),
            tickets,
            [(backend, concurrency or config.max_concurrency)],
            description=f"evaluating {backend}",
            run_prefix="eval",
            on_decision=decisions.append,
        )
    finally:
        if db is not None:
            db.close()
    report = evaluation.eval_report(backend, decisions, labels)
    points = _curve(ctx, train, tickets, labels, seed) if curve else None
    if points is not None:
        report["curve"] = [p.to_dict() for p in points]
    if as_json:
        ctx.say(json.dumps(report, indent=2))
        return 0
    acc = report["accuracy"]
    ctx.say(
        f"{backend}: n={report['n']} errors={report['errors']}"
        f" accuracy={acc:.3f} macro_f1={report['macro_f1'] or 0:.3f}"
        f" p50={report['latency_ms']['p50'] or 0:.1f} ms cost={money.usd(report['cost_usd'])}"
        if acc is not None
        else f"{backend}: no tickets scored"
    )
    for c in report["confusions"][:5]:
        ctx.say(f"  {c['true']} -> {c['predicted']}: {c['count']}")
    if points is not None:
        from tui.core.learning.curve import format_curve

        ctx.say("learning curve of the specialist (labels per class):")
        for line in format_curve(points):
            ctx.say("  " + line)
    return 0


def _curve(
    ctx: Context, train: Path | None, tickets: Sequence[Ticket], labels: dict[str, str], seed: int
) -> list[Any]:
    """The specialist's learning curve, trained on --train or the database, tested on --data."""
    from tui.core.learning.curve import held_out_curve
    from tui.core.learning.model import TrainingError

    if train:
        parsed = evaluation.read_labelled(train)
        examples = [(t.text, parsed.labels[t.id]) for t in evaluation.labelled_tickets(parsed)]
    else:
        with ctx.store() as db:
            examples = db.labelled_examples()
    try:
        return held_out_curve(
            examples, [t.text for t in tickets], [labels[t.id] for t in tickets], seed=seed
        )
    except (TrainingError, ValueError) as exc:
        raise BadInput(f"--curve: {train or ctx.db_path}: {exc}") from None


@click.command(name="tune-cascade", cls=Command, help="pick a cascade threshold from labelled data")
@value_option("--first", required=True, help="backend that answers first")
@value_option("--then", required=True, help="backend for low-confidence tickets")
@value_option("--data", type=PathType(), help="labelled JSONL/CSV instead of the database")
@value_option("--target-accuracy", type=Share(), default=0.9)
@flag("--write", help="save it in [backends.cascade]")
@flag("--json", "as_json")
@headless
def tune_cascade(
    ctx: Context,
    *,
    first: str,
    then: str,
    data: Path | None,
    target_accuracy: float,
    write: bool,
    as_json: bool,
) -> int:
    from tui.cli.tuning import print_tuning
    from tui.core.cascade_tuning import tune

    if first == then:
        raise BadInput("--first and --then name the same backend")
    for name in (first, then):
        ctx.settings.backend(name)
    tickets, labels, taxonomy = _tuning_data(ctx, data)
    answers: dict[str, dict[str, Decision]] = {first: {}, then: {}}

    def collect(decision: Decision) -> None:
        answers[decision.backend][decision.ticket_id] = decision

    route_passes(
        ctx,
        Router(ctx.settings, taxonomy, None),
        tickets,
        [(name, ctx.settings.backend(name).max_concurrency) for name in (first, then)],
        description=f"routing through {first} and {then}",
        run_prefix="tune",
        on_decision=collect,
    )
    ids = [t.id for t in tickets]
    if not data:
        ids = _held_out(ctx, ids, [answers[first], answers[then]], f"{first} or {then}")
    firsts = [answers[first][i] for i in ids]
    thens = [answers[then][i] for i in ids]
    result = tune(firsts, thens, [labels[i] for i in ids], target_accuracy)
    for name, stage in ((first, firsts), (then, thens)):
        failed = [d for d in stage if not d.ok]
        if failed:
            ctx.warn(
                f"{name} failed on {len(failed)} of {len(stage)} tickets"
                f" (e.g. {failed[0].error_class}: {failed[0].error_message})"
            )
    written = None
    if write:
        from tui.core.config_write import write_cascade

        written = write_cascade(ctx.config_path, first, then, result.pick.threshold)
    errors = {"first": sum(not d.ok for d in firsts), "then": sum(not d.ok for d in thens)}
    print_tuning(ctx, first, then, result, errors, written, as_json=as_json)
    return 0


def _held_out(
    ctx: Context, ids: list[str], stages: list[dict[str, Decision]], names: str
) -> list[str]:
    """The tickets whose label neither stage's model trained on (`Store.labels_that_count`):
    a threshold tuned on a specialist's own training labels trusts it far too much.

    Raises:
        BadInput: Every labelled ticket was trained on.
    """
    from tui.core.learning.training import record_configured_models

    with ctx.store() as db:
        with contextlib.suppress(StoreError):
            record_configured_models(ctx.settings, db)
        events = {e.ticket_id: e.label_event_id for e in db.training_examples()}
        rows = [(i, event) for i in ids if (event := events.get(i)) is not None]
        counts = dict.fromkeys((i for i, _ in rows), True)
        for answers in stages:
            by_model: dict[str, list[tuple[str, int]]] = {}
            for ticket_id, event in rows:
                by_model.setdefault(answers[ticket_id].model, []).append((ticket_id, event))
            for model, asked in by_model.items():
                for (ticket_id, _), counted in zip(
                    asked, db.labels_that_count(model, asked), strict=True
                ):
                    counts[ticket_id] = counts[ticket_id] and counted
    kept = [i for i in ids if counts.get(i, True)]
    left_out = len(ids) - len(kept)
    if not kept:
        raise BadInput(
            f"all {len(ids)} labelled tickets were trained on by {names}: label new tickets"
            " or pass --data FILE with a held-out set"
        )
    if left_out:
        print(
            f"triagedesk: note: left out {left_out} labelled tickets that {names} trained on;"
            f" tuned on the other {len(kept)}",
            file=ctx.err,
        )
    return kept


def _tuning_data(ctx: Context, data: Path | None) -> tuple[list[Ticket], dict[str, str], Taxonomy]:
    """Labelled tickets for tune-cascade: --data, else the database's agent labels."""
    if data:
        parsed = evaluation.read_labelled(data)
        taxonomy = ctx.settings.taxonomy() or Taxonomy.from_names(set(parsed.labels.values()))
        return evaluation.labelled_tickets(parsed), parsed.labels, taxonomy
    with ctx.store() as db:
        tickets, labels = evaluation.stored_labelled_tickets(db, ctx.db_path)
        taxonomy = ctx.labels_known(db)
    return tickets, labels, taxonomy


@click.command(name="export", cls=Command, help="write retraining data from agent labels")
@value_option(
    "--format",
    "fmt",
    type=Choice(["openai", "hf", "csv"]),
    required=True,
    metavar="{openai,hf,csv}",
)
@value_option("--out", type=PathType(), required=True)
@value_option("--val-fraction", type=Share(below_one=True), default=0.2)
@value_option("--seed", type=Integer(), default=13)
@flag("--scrub-pii")
@flag("--include-predictions", hidden=True)
@headless
def export(
    ctx: Context,
    *,
    fmt: str,
    out: Path,
    val_fraction: float,
    seed: int,
    scrub_pii: bool,
    include_predictions: bool,
) -> int:
    from tui.core import export as exporting

    with ctx.store() as db:
        taxonomy = ctx.labels_known(db)
        try:
            report = exporting.export(
                db,
                taxonomy,
                fmt=fmt,  # type: ignore[arg-type]
                out=out,
                val_fraction=val_fraction,
                seed=seed,
                scrub_pii=scrub_pii,
                include_predictions=include_predictions,
            )
        except exporting.ExportError as exc:
            raise BadInput(str(exc)) from None
    ctx.say(f"wrote {report.train_rows} train / {report.validation_rows} validation rows to {out}")
    return 0
