"""Tickets still to route in a run, paged from the store (and claimed, with `claims`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from tui.core.claims import RunClaims
from tui.core.models import Ticket
from tui.core.store import PendingQuery

if TYPE_CHECKING:
    from tui.core.store import Store


async def page_pending(
    store: Store,
    run_id: str,
    *,
    ids: Sequence[str] | None = None,
    unrouted_only: bool = False,
    limit: int | None = None,
    page: int = 500,
    claims: RunClaims | None = None,
) -> AsyncIterator[Ticket]:
    """Tickets still to route in a run, paged from the store in a worker thread.

    With `claims`, each page is read and claimed in one transaction: tickets another live run
    holds are skipped (and counted in `claims.skipped`), so two runs never route one ticket
    at once; pass the same `claims` to `Router.run`, which releases them.
    """
    after = 0
    yielded = 0
    while limit is None or yielded < limit:
        size = page if limit is None else min(page, limit - yielded)
        if claims is not None:
            query = PendingQuery(None if ids is None else tuple(ids), unrouted_only, after, size)
            claimed = await claims.take_page(query)
            if claimed.last_seq == after:
                return
            after = claimed.last_seq
            for _, ticket in claimed.tickets:
                yielded += 1
                yield ticket
            continue
        if unrouted_only:
            rows = await asyncio.to_thread(store.unrouted_tickets, after_seq=after, limit=size)
        else:
            rows = await asyncio.to_thread(
                store.pending_in_run, run_id, ids=ids, after_seq=after, limit=size
            )
        if not rows:
            return
        for seq, ticket in rows:
            after = seq
            yielded += 1
            yield ticket
