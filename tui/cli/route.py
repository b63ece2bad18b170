"""`triagedesk route`: route stored tickets headless, with a progress bar; resumable."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import click
from click.decorators import FC

from tui.cli.context import BadInput, Context, headless, wait_printer
from tui.cli.usage import Command, IdList, WholeNumber, flag, value_option
from tui.core.gc_pause import collector_tuned_for_a_run
from tui.core.store import Store, describe_owner
from tui.services.routing import MAX_CONCURRENCY, SHADOW_DRAIN_S, Router, RunSummary
from tui.services.runs import RunService, Selection, UnknownTickets

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
    with ctx.store() as store, collector_tuned_for_a_run():
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
    """Plan the run (open, resume or join it) and route it through the one run service the
    TUI uses too; only the lines printed about it are the command's own."""
    taxonomy = ctx.labels_known(store)
    router = Router(ctx.settings, taxonomy, store)
    router.on_wait = wait_printer(ctx)
    backend = backend_name or ctx.settings.routing.backend
    if ids is not None:  # parsed by `IdList`: never empty, no repeats
        selection = Selection.of_ids(ids, limit=limit)
    else:
        selection = Selection("all" if all_tickets else "unrouted", limit=limit)
    service = RunService(store, router)
    try:
        try:
            plan = service.plan(selection, backend=backend)
        except UnknownTickets as exc:
            raise BadInput(f"--ids: {exc}") from None
        if plan.resumed:
            if plan.holders:
                who = ", ".join(describe_owner(owner) for owner in plan.holders)
                print(f"joining {plan.run_id}, which another run ({who}) is routing", file=ctx.err)
            else:
                print(f"resuming {plan.run_id}", file=ctx.err)
        outcome = await service.route(
            plan,
            concurrency=concurrency,
            progress=ctx.progress(),
            description=f"routing with {backend}",
        )
        if router.shadows.names:
            await router.shadows.drain(SHADOW_DRAIN_S)  # what is left then is skipped
            await router.shadows.aclose()
            for name, tally in router.shadows.tallies().items():
                print(
                    f"shadow {name}: answered {tally.answered} ({tally.errors} failed),"
                    f" skipped {tally.skipped} (queue full)",
                    file=ctx.err,
                )
    finally:
        await router.aclose()
    summary = outcome.summary
    if summary.skipped_line:
        print(f"triagedesk: {summary.skipped_line}", file=ctx.err)
    return summary
