"""One ticket through every configured backend at once: the compare screen's routing.

Textual-free: the screen shows each answer as it arrives (`on_answer`) and stores them when
all are in, with the active backend's stored last so it stays the ticket's decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tui.core.models import Decision, Ticket
from tui.core.store import Store
from tui.services.routing import Router


async def compare_backends(
    router: Router,
    ticket: Ticket,
    new_run_id: Callable[[], str],
    on_answer: Callable[[Decision], None],
) -> list[Decision]:
    """Route `ticket` on every configured backend at once, nothing stored; one decision per
    backend, in config order. Each backend's `timeout_s` bounds each of its attempts, so
    every backend ends with an answer or an error decision."""

    async def one(name: str) -> Decision:
        decision = await router.route_one(ticket, backend=name, run_id=new_run_id())
        on_answer(decision)
        return decision

    return list(await asyncio.gather(*(one(name) for name in router.settings.backends)))


def store_compared(store: Store, decisions: list[Decision], active: str) -> None:
    """Store the compared answers, the active backend's (a successful one first among equals)
    last, so the inbox keeps showing what the active backend decided. Blocking."""
    ordered = sorted(decisions, key=lambda d: (d.backend == active, d.ok))
    store.record_decisions(ordered)


__all__ = ["compare_backends", "store_compared"]
