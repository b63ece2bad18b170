"""One helpdesk's sync: pull what changed, route the new tickets, write each decision back.

The order makes every step resumable on its own: pulled tickets are stored with their
cursor page by page; routing goes through the product's one run service (`RunService`, with
its claims), so a ticket is routed once however often the sync runs; pushes are queued from
what is stored (the wanted label against the last one written) and recorded before and
after each write (`tui.core.store.pushes`). A run killed anywhere reruns to the same end:
every ticket once, every decision written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from tui.core.config import Settings
from tui.core.helpdesk import (
    HelpdeskAuthError,
    HelpdeskConfig,
    HelpdeskConflict,
    HelpdeskError,
    HelpdeskProtocolError,
    PushPlan,
    PushRequest,
    RemoteTicket,
    parse_stamp,
    plan_push,
)
from tui.core.models import utcnow
from tui.core.store import PulledTicket
from tui.services.helpdesk.freshdesk import FreshdeskClient
from tui.services.helpdesk.http import HelpdeskHTTP, Sleep, helpdesk_token
from tui.services.helpdesk.zendesk import ZendeskClient
from tui.services.routing import Router, resolve_taxonomy
from tui.services.runs import RunService, Selection

if TYPE_CHECKING:
    from tui.core.store import Store

DEFAULT_START = timedelta(days=7)
ROUTE_CHUNK = 200


class HelpdeskClient(Protocol):
    """What the sync needs of a helpdesk (Zendesk and Freshdesk clients both fit)."""

    http: HelpdeskHTTP

    def pull_pages(
        self, cursor: str | None, start: datetime
    ) -> AsyncIterator[tuple[list[RemoteTicket], str | None]]: ...
    async def get_ticket(self, remote_id: int) -> RemoteTicket: ...
    async def already_pushed(self, remote_id: int, marker: str) -> bool: ...
    async def push(self, push: PushRequest, plan: PushPlan) -> str | None: ...


def make_client(config: HelpdeskConfig, *, sleep: Sleep = asyncio.sleep) -> HelpdeskClient:
    """The client of the config's type, with its token (never shown) from env or keyring.

    Raises:
        HelpdeskAuthError: No token where the config says it is.
    """
    http = HelpdeskHTTP(config, helpdesk_token(config), sleep=sleep)
    if config.type == "zendesk":
        return ZendeskClient(http, per_page=config.page_size or 1000)
    return FreshdeskClient(http, per_page=config.page_size or 100)


@dataclass
class SyncReport:
    """What one pass did, for the command's lines."""

    pages: int = 0
    new: int = 0
    updated: int = 0
    rejected: list[str] = field(default_factory=list)
    routed: int = 0
    route_errors: int = 0
    pushed: int = 0
    recovered: int = 0
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    would_write: list[str] = field(default_factory=list)

    def line(self, name: str) -> str:
        text = (
            f"{name}: pulled {self.new} new and {self.updated} updated tickets"
            f" ({self.pages} pages), routed {self.routed}"
        )
        if self.route_errors:
            text += f" ({self.route_errors} failed)"
        if self.would_write:
            return text + f", would write {len(self.would_write)} (dry run)"
        text += f", pushed {self.pushed}"
        if self.recovered:
            text += f" (+{self.recovered} found already written)"
        if self.conflicts:
            text += f", {len(self.conflicts)} conflicts"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text


class HelpdeskSync:
    """Pull, route and push for one `[helpdesk.NAME]`; the caller `aclose`s it."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        name: str,
        *,
        client: HelpdeskClient | None = None,
        router: Router | None = None,
        backend: str | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.helpdesk_named(name)
        self.name = name
        self.store = store
        self.client = client or make_client(self.config)
        self._router = router
        self.backend = backend or settings.routing.backend
        self.on_line: Callable[[str], None] | None = None
        """Told of each rejected ticket, conflict and failed push as it happens."""

    async def aclose(self) -> None:
        await self.client.http.aclose()
        if self._router is not None:
            await self._router.aclose()

    def _say(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)

    def _pulled(self, remote: RemoteTicket, report: SyncReport) -> PulledTicket | None:
        try:
            return PulledTicket(
                remote.ticket(self.name), remote.remote_id, parse_stamp(remote.updated_at)
            )
        except HelpdeskProtocolError as exc:
            report.rejected.append(str(exc))
            self._say(f"skipped: {exc}")
            return None

    async def pull(self, report: SyncReport) -> None:
        """Every page since the stored cursor, each stored with the cursor after it."""
        cursor = await asyncio.to_thread(self.store.pull_cursor, self.name)
        start = self.config.start_time or (utcnow() - DEFAULT_START)
        try:
            async for tickets, following in self.client.pull_pages(cursor, start):
                pulled = [p for t in tickets if (p := self._pulled(t, report)) is not None]
                stored = await asyncio.to_thread(
                    self.store.store_pull_page, self.name, pulled, following
                )
                report.pages += 1
                report.new += stored.new
                report.updated += stored.updated
        except HelpdeskError as exc:
            await asyncio.to_thread(self.store.record_pull_error, self.name, str(exc))
            raise

    async def import_one(self, remote_id: int, report: SyncReport) -> None:
        """Read one ticket (a webhook named it) and store it, leaving the cursor as it is."""
        pulled = self._pulled(await self.client.get_ticket(remote_id), report)
        if pulled is not None:
            stored = await asyncio.to_thread(self.store.store_pull_page, self.name, [pulled], None)
            report.new += stored.new
            report.updated += stored.updated

    def router(self) -> Router:
        if self._router is None:
            taxonomy = resolve_taxonomy(self.settings, self.store)
            self._router = Router(self.settings, taxonomy, self.store)
        return self._router

    async def route(self, report: SyncReport) -> None:
        """Route this helpdesk's tickets that have no decision yet, with the active backend."""
        while True:
            ids = await asyncio.to_thread(
                self.store.unrouted_helpdesk_tickets, self.name, limit=ROUTE_CHUNK
            )
            if not ids:
                return
            service = RunService(self.store, self.router())
            plan = await asyncio.to_thread(
                service.plan,
                Selection.of_ids(ids),
                backend=self.backend,
                run_id=f"sync-{self.name}-{uuid.uuid4().hex[:12]}",
            )
            outcome = await service.route(plan)
            report.routed += outcome.summary.routed
            report.route_errors += outcome.summary.errors
            if outcome.summary.routed == 0:  # all held by another run: leave them to it
                return

    async def push(self, report: SyncReport, *, dry_run: bool = False) -> None:
        """Write each queued label back once (`writeback = "off"` writes nothing)."""
        if self.config.writeback == "off":
            return
        await asyncio.to_thread(self.store.queue_pushes, self.name)
        seen: set[int] = set()
        while True:
            pushes = [
                p
                for p in await asyncio.to_thread(self.store.open_pushes, self.name)
                if p.push_id not in seen
            ]
            if not pushes:
                return
            for push in pushes:
                seen.add(push.push_id)
                await self._push_one(push, report, dry_run=dry_run)

    async def _push_one(self, push: PushRequest, report: SyncReport, *, dry_run: bool) -> None:
        plan = plan_push(self.config, push)
        store = self.store
        if dry_run:
            line = f"{push.ticket_id}: {push.label}: {plan.describe()}"
            report.would_write.append(line)
            self._say(f"would write {line}")
            return
        try:
            if push.resumed and await self.client.already_pushed(push.remote_id, plan.marker):
                await asyncio.to_thread(store.finish_push, push.push_id, "done")
                report.recovered += 1
                return
            await asyncio.to_thread(store.mark_push_sending, push.push_id)
            stamp = await self.client.push(push, plan)
        except HelpdeskConflict as exc:
            await asyncio.to_thread(store.finish_push, push.push_id, "conflict", error=str(exc))
            report.conflicts.append(f"{push.ticket_id}: {exc}")
            self._say(f"conflict: {push.ticket_id}: {exc}")
            return
        except HelpdeskAuthError:
            await asyncio.to_thread(store.finish_push, push.push_id, "pending")
            raise
        except HelpdeskError as exc:
            await asyncio.to_thread(store.finish_push, push.push_id, "failed", error=str(exc))
            report.failed.append(f"{push.ticket_id}: {exc}")
            self._say(f"push failed: {push.ticket_id}: {exc}")
            return
        await asyncio.to_thread(store.finish_push, push.push_id, "done", stamp=stamp)
        report.pushed += 1

    async def once(self, *, dry_run: bool = False) -> SyncReport:
        report = SyncReport()
        await self.pull(report)
        await self.route(report)
        await self.push(report, dry_run=dry_run)
        return report

    async def follow(
        self,
        stop: asyncio.Event,
        on_report: Callable[[SyncReport], None],
        *,
        dry_run: bool = False,
    ) -> None:
        """`once` every `poll_interval_s` until `stop` is set; a failed pass (the helpdesk
        down beyond the retries) is reported and retried at the next interval, a refused
        token ends it."""
        while not stop.is_set():
            try:
                on_report(await self.once(dry_run=dry_run))
            except HelpdeskAuthError:
                raise
            except HelpdeskError as exc:
                self._say(f"pass failed, next in {self.config.poll_interval_s:g} s: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)
