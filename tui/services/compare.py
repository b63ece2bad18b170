"""One ticket through every configured backend at once: the compare screen's routing.

Textual-free: the screen shows each answer as it arrives (`on_answer`) and stores them when
all are in, with the active backend's stored last so it stays the ticket's decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from tui.core.models import Decision, Ticket
from tui.core.store import Store
from tui.services.routing import Router


async def unavailable_backends(router: Router, timeout_s: float) -> dict[str, str]:
    """Configured backends that cannot answer now, each with its reason in one line (no key
    set, server not reachable, model not trained): the compare screen says so instead of
    routing the ticket into an error on each of them (issue 18, the offline demo)."""

    async def one(name: str) -> tuple[str, str | None]:
        try:
            health = await asyncio.wait_for(router.backend(name).check(), timeout_s)
        except TimeoutError:
            return name, f"not reachable: no answer in {timeout_s:.0f} s"
        except Exception as exc:  # a check reports, it never raises
            return name, f"{type(exc).__name__}: {exc}"
        return name, None if health.ok else health.detail

    found = await asyncio.gather(*(one(name) for name in router.settings.backends))
    return {name: reason for name, reason in found if reason is not None}


async def compare_backends(
    router: Router,
    ticket: Ticket,
    new_run_id: Callable[[], str],
    on_answer: Callable[[Decision], None],
    names: Sequence[str] | None = None,
) -> list[Decision]:
    """Route `ticket` on `names` (every configured backend by default) at once, nothing
    stored; one decision per backend, in config order. Each backend's `timeout_s` bounds each
    of its attempts, so every backend ends with an answer or an error decision."""

    async def one(name: str) -> Decision:
        decision = await router.route_one(ticket, backend=name, run_id=new_run_id())
        on_answer(decision)
        return decision

    chosen = list(router.settings.backends) if names is None else list(names)
    return list(await asyncio.gather(*(one(name) for name in chosen)))


def store_compared(store: Store, decisions: list[Decision], active: str) -> None:
    """Store the compared answers, the active backend's (a successful one first among equals)
    last, so the inbox keeps showing what the active backend decided. Blocking."""
    ordered = sorted(decisions, key=lambda d: (d.backend == active, d.ok))
    store.record_decisions(ordered)


__all__ = ["compare_backends", "store_compared", "unavailable_backends"]
