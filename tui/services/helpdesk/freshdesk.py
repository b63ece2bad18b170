"""Freshdesk: the ticket list by `updated_since`, split in time windows, and the write-back.

Pull: `GET /api/v2/tickets?updated_since=...&order_by=updated_at&order_type=asc&page=N&
per_page=100`. Freshdesk serves at most 300 pages of one query, so when a window reaches
that page the next window starts at the last ticket's `updated_at` (page 1 again). The stored
cursor is `{"since": ..., "page": ...}`, written after each page; `updated_since` is
inclusive, so the tickets at a window's edge come twice and the store keeps them once.

Write-back: Freshdesk has no `safe_update`, so the ticket is read first and a push to a
ticket changed since its stamp is a conflict, as on Zendesk. Tags in an update replace the
list: the agents' tags read just before are kept and ours added. The private note (with the
push's marker) is written last, so a note means the push is complete.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from tui.core.helpdesk import (
    HelpdeskConflict,
    HelpdeskProtocolError,
    PushPlan,
    PushRequest,
    RemoteTicket,
    parse_stamp,
)
from tui.core.helpdesk.wire import freshdesk_page, freshdesk_ticket
from tui.services.helpdesk.http import HelpdeskHTTP

MAX_PAGES = 300
"""Freshdesk's deepest page of one list query."""


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class FreshdeskClient:
    """Pull and push for one `[helpdesk.NAME]` of type freshdesk."""

    def __init__(self, http: HelpdeskHTTP, *, per_page: int = 100, max_pages: int = MAX_PAGES):
        self.http = http
        self.per_page = per_page
        self.max_pages = max_pages

    async def pull_pages(
        self, cursor: str | None, start: datetime
    ) -> AsyncIterator[tuple[list[RemoteTicket], str | None]]:
        since, page = _iso(start), 1
        if cursor is not None:
            try:
                state = json.loads(cursor)
                since, page = str(state["since"]), int(state["page"])
            except (ValueError, KeyError, TypeError):
                raise HelpdeskProtocolError("freshdesk: the stored cursor is damaged") from None
        while True:
            params = {
                "updated_since": since,
                "order_by": "updated_at",
                "order_type": "asc",
                "include": "requester,description",
                "page": page,
                "per_page": self.per_page,
            }
            tickets = freshdesk_page(
                await self.http.request("GET", "/api/v2/tickets", params=params)
            )
            newest = max((parse_stamp(t.updated_at) for t in tickets), default=None)
            if len(tickets) < self.per_page:  # the last page of this window: start after it
                following = _iso(newest) if newest is not None else since
                yield tickets, json.dumps({"since": following, "page": 1})
                return
            if page >= self.max_pages and newest is not None:
                since, page = _iso(newest), 1
            else:
                page += 1
            yield tickets, json.dumps({"since": since, "page": page})

    async def _ticket_json(self, remote_id: int) -> dict[str, Any]:
        data = await self.http.request(
            "GET", f"/api/v2/tickets/{remote_id}", params={"include": "requester"}
        )
        if not isinstance(data, dict):
            raise HelpdeskProtocolError(f"freshdesk ticket {remote_id}: not an object")
        return data

    async def get_ticket(self, remote_id: int) -> RemoteTicket:
        return freshdesk_ticket(await self._ticket_json(remote_id))

    async def already_pushed(self, remote_id: int, marker: str) -> bool:
        data = await self.http.request("GET", f"/api/v2/tickets/{remote_id}/conversations")
        return isinstance(data, list) and any(
            isinstance(c, dict) and marker in str(c.get("body_text") or c.get("body") or "")
            for c in data
        )

    async def push(self, push: PushRequest, plan: PushPlan) -> str | None:
        """Check the stamp, update the ticket (apply), write the note; the new stamp.

        Raises:
            HelpdeskConflict: The ticket changed since `push.stamp`.
        """
        current = freshdesk_ticket(await self._ticket_json(push.remote_id))
        # A resumed push was checked before its first attempt, whose own update may have
        # landed before the crash: its stamp would read as someone else's change.
        stale = push.stamp is not None and not push.resumed
        if stale and parse_stamp(current.updated_at) > parse_stamp(push.stamp or ""):
            raise HelpdeskConflict(
                f"helpdesk.{push.helpdesk}: ticket {push.remote_id} changed in Freshdesk"
                f" at {current.updated_at}, after it was pulled"
            )
        update: dict[str, Any] = {}
        if plan.group_id is not None:
            update["group_id"] = plan.group_id
        if plan.add_tags or plan.remove_tags:
            kept = [t for t in current.tags if t not in plan.remove_tags]
            update["tags"] = kept + [t for t in plan.add_tags if t not in kept]
        if plan.custom_fields:
            update["custom_fields"] = {str(k): v for k, v in plan.custom_fields.items()}
        if update:
            await self.http.request("PUT", f"/api/v2/tickets/{push.remote_id}", json=update)
        body = "<br>".join(html.escape(line) for line in plan.note.splitlines())
        await self.http.request(
            "POST", f"/api/v2/tickets/{push.remote_id}/notes", json={"body": body, "private": True}
        )
        return (await self.get_ticket(push.remote_id)).updated_at
