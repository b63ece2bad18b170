"""Scoring backends on labelled tickets: `eval` and `tune-cascade` without the command line.

The command line parses and prints; what it routes, how the answers are scored and where
the labelled tickets come from lives here, so a screen or a script can ask the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tui.core.models import STORED, Decision, Ticket
from tui.services.routing import Router, percentile

if TYPE_CHECKING:
    from tui.core.ingest import ParsedFile
    from tui.core.store import PgTarget, Store


class UnusableData(Exception):
    """The labelled data cannot be scored or trained on; the message names the file (and
    line) and says why. The command line turns it into exit status 2."""


def read_labelled(path: Path) -> ParsedFile:
    """A labelled JSONL/CSV file as a ParsedFile (its lines name rows in later errors).

    Raises:
        UnusableData: The file is unreadable, has a bad row, or no row carries a label.
    """
    from tui.core.ingest import IngestError, parse_file

    try:
        parsed = parse_file(path)
    except IngestError as exc:
        raise UnusableData(str(exc)) from None
    if parsed.errors:
        first = parsed.errors[0]
        raise UnusableData(f"{path}:{first.line}: {first.reason} ({len(parsed.errors)} bad rows)")
    if not parsed.labels:
        raise UnusableData(f"{path}: no row carries a label")
    return parsed


def labelled_tickets(parsed: ParsedFile) -> list[Ticket]:
    """The file's tickets that carry a label, in file order."""
    return [t for t in parsed.tickets if t.id in parsed.labels]


def stored_labelled_tickets(
    store: Store, db_path: Path | PgTarget
) -> tuple[list[Ticket], dict[str, str]]:
    """The database's agent-labelled tickets and their labels (tune-cascade without --data).

    Raises:
        UnusableData: No ticket carries an agent label.
    """
    rows = store.export_rows()
    if not rows:
        raise UnusableData(f"{db_path}: no agent-labelled tickets; label some or pass --data")
    tickets = [  # stored rows: an id an older version accepted must still load
        Ticket.model_validate({"id": tid, "text": text}, context=STORED) for tid, text, _, _ in rows
    ]
    return tickets, {tid: label for tid, _, label, _ in rows}


def eval_report(
    backend: str, decisions: Sequence[Decision], truth: dict[str, str]
) -> dict[str, Any]:
    """SPEC's `eval --json` object from decisions and the file's labels.

    Accuracy counts a failed decision as wrong (over all `n`), macro-F1 and the per-label
    figures score the answered ones only; latency percentiles are of the answered ones.
    """
    from tui.core.costs import per_1k
    from tui.core.scoring import score_pairs

    answered = [d for d in decisions if d.ok]
    predicted: list[Any] = [d.label for d in answered]  # an answered decision has a label
    scores = score_pairs(predicted, [truth[d.ticket_id] for d in answered])
    n = len(decisions)
    correct = round((scores.accuracy or 0) * scores.support)
    latencies = [d.total_ms for d in answered if d.total_ms is not None]
    cost = sum(d.cost_usd or 0.0 for d in decisions)
    return {
        "backend": backend,
        "n": n,
        "errors": n - len(answered),
        "accuracy": correct / n if n else None,
        "macro_f1": scores.macro_f1,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)},
        "cost_usd": cost,
        "cost_per_1k_usd": per_1k(cost, n),
        "per_label": {
            label: {k: v for k, v in figures.items() if k in ("precision", "recall", "support")}
            for label, figures in scores.per_label.items()
        },
        "confusions": [{"true": t, "predicted": p, "count": c} for t, p, c in scores.confusions],
    }


async def route_passes(
    router: Router,
    tickets: Sequence[Ticket],
    passes: Sequence[tuple[str, int]],
    *,
    run_prefix: str,
    on_decision: Callable[[Decision], None],
) -> None:
    """Route the same tickets through each (backend, concurrency) in turn, then close the
    router. Each pass is run `{run_prefix}-{backend}`; decisions are stored only when the
    router has a store (`eval --store`), and every one is handed to `on_decision`."""
    try:
        for name, concurrency in passes:
            await router.run(
                tickets,
                run_id=f"{run_prefix}-{name}",
                backend=name,
                concurrency=concurrency,
                on_decision=on_decision,
                store=router.store is not None,
            )
    finally:
        await router.aclose()
