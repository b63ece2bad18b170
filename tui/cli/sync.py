"""`triagedesk sync NAME` and `triagedesk webhooks`: the helpdesk sync, headless.

Only parsing and printing: pulling, routing and writing back are `HelpdeskSync`'s, and
receiving webhooks `WebhookReceiver`'s. A refused or missing token ends the command with one
line naming the variable (exit 2, like any other bad setting); the helpdesk failing beyond
the retries is exit 1; an interrupted sync resumes where it stopped when run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import click

from backends.retry import listening
from tui.cli.context import BadInput, Context, headless, wait_printer
from tui.cli.usage import Command, Integer, flag, value_option
from tui.core.helpdesk import HelpdeskAuthError, HelpdeskError
from tui.core.store import Store

if TYPE_CHECKING:  # the helpdesk clients (httpx, aiohttp) load when a sync runs, not with the TUI
    from tui.services.helpdesk import HelpdeskSync, SyncReport


def _sync_for(ctx: Context, store: Store, name: str) -> HelpdeskSync:
    from tui.services.helpdesk import HelpdeskSync

    try:
        sync = HelpdeskSync(ctx.settings, store, name)
    except HelpdeskAuthError as exc:
        raise BadInput(str(exc)) from None
    sync.router().on_wait = wait_printer(ctx)
    sync.on_line = lambda line: print(f"triagedesk: {name}: {line}", file=ctx.err, flush=True)
    return sync


def _stop_on_term(stop: asyncio.Event) -> None:
    """SIGTERM ends `--follow` and `webhooks` after the pass in progress, like Ctrl-C."""
    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)


@click.command(
    name="sync",
    cls=Command,
    exclusive=("once", "follow"),
    help="pull, route and write back a helpdesk's tickets",
)
@click.argument("name", metavar="NAME")
@flag("--once", help="one pass (default)")
@flag("--follow", help="a pass every poll_interval_s until interrupted")
@flag("--dry-run", help="pull and route, print what would be written, write nothing back")
@headless
def sync(ctx: Context, *, name: str, once: bool, follow: bool, dry_run: bool) -> int:
    ctx.settings.helpdesk_named(name)
    del once  # the default
    with ctx.store() as store:
        return asyncio.run(_sync(ctx, store, name, follow=follow, dry_run=dry_run))


async def _sync(ctx: Context, store: Store, name: str, *, follow: bool, dry_run: bool) -> int:
    worker = _sync_for(ctx, store, name)
    show = wait_printer(ctx)

    def report(done: SyncReport) -> None:
        ctx.say(done.line(name))
        for line in done.would_write:
            ctx.say(f"  would write {line}")

    try:
        with listening(lambda wait: show(f"helpdesk.{name}", wait)):
            if follow:
                stop = asyncio.Event()
                _stop_on_term(stop)
                await worker.follow(stop, report, dry_run=dry_run)
            else:
                report(await worker.once(dry_run=dry_run))
    except HelpdeskAuthError as exc:
        print(f"triagedesk: error: {exc}", file=ctx.err)
        return 2
    except HelpdeskError as exc:
        print(f"triagedesk: error: {exc}; run it again to resume", file=ctx.err)
        return 1
    finally:
        await worker.aclose()
    for state in await asyncio.to_thread(store.helpdesk_states, [name]):
        print(f"triagedesk: {state.line()}", file=ctx.err)
    return 0


@click.command(
    name="webhooks",
    cls=Command,
    help="receive helpdesk webhooks and route each ticket at once",
)
@value_option("--port", type=Integer(), required=True)
@value_option("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
@headless
def webhooks(ctx: Context, *, port: int, host: str) -> int:
    if not 0 <= port <= 65535:
        raise BadInput(f"--port {port}: must be 0 to 65535")
    names = [n for n, c in ctx.settings.helpdesk.items() if c.webhook_secret_env]
    if not names:
        raise BadInput("no [helpdesk.NAME] sets webhook_secret_env: nothing to receive")
    with ctx.store() as store:
        return asyncio.run(_serve(ctx, store, names, host, port))


async def _serve(ctx: Context, store: Store, names: list[str], host: str, port: int) -> int:
    from tui.services.helpdesk.webhooks import WebhookReceiver

    syncs = {name: _sync_for(ctx, store, name) for name in names}
    try:
        try:
            receiver = WebhookReceiver(
                syncs, on_line=lambda line: print(f"triagedesk: {line}", file=ctx.err, flush=True)
            )
        except HelpdeskError as exc:
            raise BadInput(str(exc)) from None
        stop = asyncio.Event()
        _stop_on_term(stop)

        def ready(bound: int) -> None:
            for name in names:
                print(f"listening on http://{host}:{bound}/webhooks/{name}", file=ctx.out)
            sys.stdout.flush()
            ctx.out.flush()

        try:
            await receiver.serve(host, port, stop, ready)
        except OSError as exc:
            raise BadInput(f"--port {port}: cannot listen on {host}: {exc.strerror}") from None
    finally:
        for worker in syncs.values():
            await worker.aclose()
    return 0
