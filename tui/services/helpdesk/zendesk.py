"""Zendesk: the cursor-based incremental ticket export, and the write-back in one update.

Pull: `/api/v2/incremental/tickets/cursor.json` with `start_time` the first time, then the
`after_cursor` of the page before, until `end_of_stream`. The export leaves out the last
minute of changes, and refuses a `start_time` inside it: the first request's start is kept
at least 61 s in the past, and a change made in that minute comes with the next pull, from
the stored cursor (which points just past what was exported), so it is neither lost nor
repeated.

Write-back: one `PUT /api/v2/tickets/{id}.json` carries the group, `additional_tags` (added
to the agents' tags, never replacing them), `remove_tags` (only a corrected label's own
tags), custom fields and the private note, with `safe_update` and the `updated_stamp` from
the last pull: Zendesk answers 409 when someone changed the ticket since, and nothing is
written over their change.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from tui.core.helpdesk import HelpdeskProtocolError, PushPlan, PushRequest, RemoteTicket
from tui.core.helpdesk.wire import zendesk_page, zendesk_ticket
from tui.services.helpdesk.http import HelpdeskHTTP

EXPORT_PATH = "/api/v2/incremental/tickets/cursor.json"
EXPORT_LAG_S = 61
"""The export omits the last minute; a start_time inside it is refused."""


class ZendeskClient:
    """Pull and push for one `[helpdesk.NAME]` of type zendesk."""

    def __init__(self, http: HelpdeskHTTP, *, per_page: int = 1000) -> None:
        self.http = http
        self.per_page = per_page

    async def pull_pages(
        self, cursor: str | None, start: datetime
    ) -> AsyncIterator[tuple[list[RemoteTicket], str | None]]:
        """Each page's tickets with the cursor to store after it; ends at `end_of_stream`."""
        while True:
            params: dict[str, Any] = {"per_page": self.per_page, "include": "users"}
            if cursor is None:
                latest = int(time.time()) - EXPORT_LAG_S
                params["start_time"] = max(0, min(int(start.timestamp()), latest))
            else:
                params["cursor"] = cursor
            page = zendesk_page(await self.http.request("GET", EXPORT_PATH, params=params))
            if page.after_cursor is None and not page.end_of_stream:
                raise HelpdeskProtocolError("zendesk export: a page without after_cursor")
            cursor = page.after_cursor or cursor
            yield page.tickets, cursor
            if page.end_of_stream:
                return

    async def get_ticket(self, remote_id: int) -> RemoteTicket:
        data = await self.http.request(
            "GET", f"/api/v2/tickets/{remote_id}.json", params={"include": "users"}
        )
        if not isinstance(data, dict):
            raise HelpdeskProtocolError(f"zendesk ticket {remote_id}: not an object")
        users = {
            u["id"]: u.get("email")
            for u in data.get("users") or []
            if isinstance(u, dict) and isinstance(u.get("id"), int)
        }
        return zendesk_ticket(data.get("ticket"), users)

    async def already_pushed(self, remote_id: int, marker: str) -> bool:
        """Whether a recent comment of the ticket carries the push's marker."""
        data = await self.http.request(
            "GET",
            f"/api/v2/tickets/{remote_id}/comments.json",
            params={"sort_order": "desc", "per_page": 100},
        )
        comments = data.get("comments") if isinstance(data, dict) else None
        return any(
            isinstance(c, dict) and marker in str(c.get("body") or c.get("plain_body") or "")
            for c in comments or []
        )

    async def push(self, push: PushRequest, plan: PushPlan) -> str | None:
        """Write the plan; returns the ticket's new `updated_at`.

        Raises:
            HelpdeskConflict: 409, changed since `push.stamp`.
        """
        ticket: dict[str, Any] = {"comment": {"body": plan.note, "public": False}}
        if plan.group_id is not None:
            ticket["group_id"] = plan.group_id
        if plan.add_tags:
            ticket["additional_tags"] = list(plan.add_tags)
        if plan.remove_tags:
            ticket["remove_tags"] = list(plan.remove_tags)
        if plan.custom_fields:
            ticket["custom_fields"] = [{"id": k, "value": v} for k, v in plan.custom_fields.items()]
        if push.stamp is not None and len(ticket) > 1:  # a bare note overwrites nothing
            ticket["safe_update"] = True
            ticket["updated_stamp"] = _zendesk_time(push.stamp)
        data = await self.http.request(
            "PUT", f"/api/v2/tickets/{push.remote_id}.json", json={"ticket": ticket}
        )
        updated = data.get("ticket", {}).get("updated_at") if isinstance(data, dict) else None
        return updated if isinstance(updated, str) else None


def _zendesk_time(stamp: str) -> str:
    """A stored stamp (`2026-01-02T03:04:05+00:00`) as Zendesk writes it (`...05Z`)."""
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")
