"""`triagedesk route`: route stored tickets headless, with a progress bar; resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import click
from click.decorators import FC

from tui.cli.context import BadInput, Context, headless, wait_printer
from tui.cli.usage import Command, IdList, WholeNumber, flag, value_option
from tui.core.claims import claim_lease_s
from tui.core.store import Store, describe_owner
from tui.services.routing import MAX_CONCURRENCY, Router, RunClaims, RunSummary, page_pending

CONCURRENCY_HELP = (
    f"tickets in flight, 1 to {MAX_CONCURRENCY} (default: the backend's max_concurrency)"
)


def concurrency_option() -> Callable[[FC], FC]:
    """`--concurrency N`, shared by `route` and `eval`."""
    return value_option(
        "--concurrency", type=WholeNumber(1, MAX_CONCURRENCY), default=None, help=CONCURRENCY_HELP
    )


@click.command(
    name="route",
    cls=Command,
    exclusive=("unrouted", "all_tickets", "ids"),
    help="route tickets headless",
)
@value_option("--backend")
@flag("--unrouted", help="tickets never routed (default)")
@flag("--all", "all_tickets", help="every ticket")
@value_option("--ids", type=IdList(), help="comma-separated ticket ids")
@concurrency_option()
@value_option("--limit", type=WholeNumber(1), default=None)
@headless
def route(
    ctx: Context,
    *,
    backend: str | None,
    unrouted: bool,
    all_tickets: bool,
    ids: list[str] | None,
    concurrency: int | None,
    limit: int | None,
) -> int:
    if backend:
        ctx.settings.backend(backend)
    with ctx.store() as store:
        summary = asyncio.run(_route(ctx, store, backend, all_tickets, ids, concurrency, limit))
    line = (
        f"routed {summary.routed} tickets in {summary.elapsed_s:.1f} s"
        f" ({summary.per_second:.1f}/s), {summary.errors} failed"
    )
    if summary.error_classes:
        line += " (" + ", ".join(f"{k}: {v}" for k, v in summary.error_classes.most_common()) + ")"
    if summary.skipped_line:
        line += f"; {summary.skipped_line}"
    ctx.say(line)
    return 0


async def _route(
    ctx: Context,
    store: Store,
    backend_name: str | None,
    all_tickets: bool,
    ids: list[str] | None,
    concurrency: int | None,
    limit: int | None,
) -> RunSummary:
    """Open (or resume, or join) the run, page its pending tickets through the Router under
    claims, and finish the run once nothing is left; tickets another run holds are skipped."""
    taxonomy = ctx.labels_known(store)
    router = Router(ctx.settings, taxonomy, store)
    router.on_wait = wait_printer(ctx)
    backend = backend_name or ctx.settings.routing.backend
    config = ctx.settings.backend(backend)
    workers = concurrency or config.max_concurrency
    if ids is not None:  # parsed by `IdList`: never empty, no repeats
        missing = [i for i in ids if store.get_ticket(i) is None]
        if missing:
            raise BadInput(f"--ids: no ticket with id {missing[0]!r}")
    selection = (
        "all" if all_tickets else ("ids:" + ",".join(ids) if ids is not None else "unrouted")
    )
    lease_s = claim_lease_s()  # a bad TRIAGEDESK_CLAIM_LEASE_S is refused before any write
    run = store.open_run(backend, selection)
    claims = RunClaims(store, run.id, lease_s=lease_s)
    total: int | None
    if ids is not None:
        total = len(store.pending_in_run(run.id, ids=ids, limit=len(ids)))
    elif all_tickets:
        total = store.ticket_count() - store.decisions_in_run(run.id)
    else:
        total = store.count_unrouted()
    if limit is not None and total is not None:
        total = min(total, limit)
    if run.resumed:
        holders = store.claim_holders(run.id)
        if holders:
            who = ", ".join(describe_owner(owner) for owner in holders)
            print(f"joining {run.id}, which another run ({who}) is routing", file=ctx.err)
        else:
            print(f"resuming {run.id}", file=ctx.err)
    progress = ctx.progress()
    progress.start(total, f"routing with {backend}")
    try:
        summary = await router.run(
            page_pending(
                store,
                run.id,
                ids=ids,
                unrouted_only=selection == "unrouted",
                limit=limit,
                claims=claims,
            ),
            run_id=run.id,
            backend=backend,
            concurrency=workers,
            on_decision=lambda _d: progress.advance(),
            claims=claims,
        )
    finally:
        progress.stop()
        await router.aclose()
    complete = limit is None or summary.routed < limit
    if complete:
        store.finish_run(run.id)  # left running while another run still holds its tickets
    if summary.skipped_line:
        print(f"triagedesk: {summary.skipped_line}", file=ctx.err)
    return summary
