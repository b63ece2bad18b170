"""Loopback Zendesk and Freshdesk servers that speak the documented API, and misbehave on cue.

Real HTTP/1.1 on 127.0.0.1 (a thread per connection), so the sync is tested through its real
httpx/aiohttp client, in this process or in a `triagedesk sync` subprocess killed with -9.

Zendesk: `/api/v2/incremental/tickets/cursor.json` (start_time, then an opaque cursor, until
`end_of_stream`; the last minute is withheld and a start_time inside it refused with 400),
ticket read, `PUT` update with `safe_update`/`updated_stamp` (409 when stale),
`additional_tags`/`remove_tags`, comments. Freshdesk: the ticket list by `updated_since`
(ascending, inclusive, at most `max_pages` pages, 400 beyond), ticket read and update (tags
replace the list), notes and conversations. Both check Basic auth and send the remaining
rate budget header.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    """Answer the next `times` requests whose path contains `path` this way instead."""

    times: int
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: str = '{"error": "unavailable"}'
    path: str = ""
    drop: bool = False
    """Close the connection without an answer."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base name
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = Request(
            self.command, url.path, query, {k.lower(): v for k, v in self.headers.items()}, body
        )
        helpdesk = self.server.helpdesk
        status, headers, payload = helpdesk.dispatch(req)
        if status == -1:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        helpdesk.before_answer(req)
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    helpdesk: FakeHelpdesk


class FakeHelpdesk:
    """State and wire shared by both helpdesks: tickets, notes, faults, auth, the log."""

    remaining_header = "X-Rate-Limit-Remaining"

    def __init__(self, expected_auth: str) -> None:
        self.expected_auth = expected_auth
        self.tickets: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.remaining: int | None = 700
        self.lock = threading.Lock()
        self.stall_on: tuple[str, str, int] | None = None
        """(method, path part, nth): answer the nth such request only after `release`."""
        self.stalled = threading.Event()
        self.release = threading.Event()
        self._matches = 0
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.helpdesk = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def now(self) -> float:
        return time.time()

    def add(self, remote_id: int, *, age_s: float = 600, **fields: Any) -> dict[str, Any]:
        ts = self.now() - age_s
        ticket = {
            "id": remote_id,
            "subject": f"subject {remote_id}",
            "description": f"please help with order {remote_id}",
            "created_at": stamp(ts),
            "updated_ts": int(ts),
            "tags": ["vip"],
            "status": "open",
            "group_id": None,
            "custom_fields": {},
            **fields,
        }
        with self.lock:
            self.tickets[remote_id] = ticket
            self.notes.setdefault(remote_id, [])
        return ticket

    def agent_edit(self, remote_id: int, **fields: Any) -> None:
        """An agent changes the ticket in the helpdesk (its updated_at moves on)."""
        with self.lock:
            ticket = self.tickets[remote_id]
            ticket.update(fields)
            ticket["updated_ts"] = max(int(self.now()), ticket["updated_ts"] + 1)

    def _touch(self, ticket: dict[str, Any]) -> None:
        ticket["updated_ts"] = max(int(self.now()), ticket["updated_ts"] + 1)

    def writes(self, remote_id: int) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method in ("PUT", "POST") and f"/tickets/{remote_id}" in r.path
        ]

    def dispatch(self, req: Request) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append(req)
            for fault in self.faults:
                if fault.times > 0 and fault.path in req.path:
                    fault.times -= 1
                    return (-1, {}, "") if fault.drop else (fault.status, fault.headers, fault.body)
            if req.headers.get("authorization") != self.expected_auth:
                return 401, {}, {"error": "Couldn't authenticate you"}
            headers = {}
            if self.remaining is not None:
                headers[self.remaining_header] = str(self.remaining)
            status, payload = self.route(req)
            return status, headers, payload

    def before_answer(self, req: Request) -> None:
        """Stall the chosen request after its effect, before its answer (a kill -9 window)."""
        if self.stall_on is None:
            return
        method, part, nth = self.stall_on
        if req.method == method and part in req.path:
            with self.lock:
                self._matches += 1
                hit = self._matches == nth
            if hit:
                self.stalled.set()
                self.release.wait(60)

    def route(self, req: Request) -> tuple[int, Any]:
        raise NotImplementedError


def _basic(user: str) -> str:
    return "Basic " + base64.b64encode(user.encode()).decode()


class ZendeskServer(FakeHelpdesk):
    def __init__(self, email: str = "bot@acme.test", token: str = "zd-secret-token") -> None:
        super().__init__(_basic(f"{email}/token:{token}"))
        self.users = {7: "customer@example.com"}

    def _json(self, t: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": t["id"],
            "subject": t["subject"],
            "description": t["description"],
            "requester_id": 7,
            "via": {"channel": "email"},
            "created_at": t["created_at"],
            "updated_at": stamp(t["updated_ts"]),
            "tags": list(t["tags"]),
            "status": t["status"],
            "group_id": t["group_id"],
            "custom_fields": [{"id": k, "value": v} for k, v in t["custom_fields"].items()],
        }

    def route(self, req: Request) -> tuple[int, Any]:
        if req.path == "/api/v2/incremental/tickets/cursor.json":
            return self._export(req)
        m = re.fullmatch(r"/api/v2/tickets/(\d+)(\.json|/comments\.json)", req.path)
        if m is None or int(m.group(1)) not in self.tickets:
            return 404, {"error": "RecordNotFound"}
        ticket = self.tickets[int(m.group(1))]
        if m.group(2) == "/comments.json":
            comments = list(reversed(self.notes[ticket["id"]]))
            return 200, {"comments": comments, "next_page": None}
        if req.method == "GET":
            users = [{"id": 7, "email": self.users[7]}]
            return 200, {"ticket": self._json(ticket), "users": users}
        update = (req.body or {}).get("ticket", {})
        if update.get("safe_update") and update.get("updated_stamp") != stamp(ticket["updated_ts"]):
            return 409, {"error": "UpdateConflict", "description": "Ticket was updated"}
        if "group_id" in update:
            ticket["group_id"] = update["group_id"]
        for tag in update.get("additional_tags", []):
            if tag not in ticket["tags"]:
                ticket["tags"].append(tag)
        ticket["tags"] = [t for t in ticket["tags"] if t not in update.get("remove_tags", [])]
        for cf in update.get("custom_fields", []):
            ticket["custom_fields"][cf["id"]] = cf["value"]
        if "comment" in update:
            comment = update["comment"]
            self.notes[ticket["id"]].append(
                {"body": comment["body"], "public": comment.get("public", True)}
            )
        self._touch(ticket)
        return 200, {"ticket": self._json(ticket)}

    def _order(self) -> list[dict[str, Any]]:
        return sorted(self.tickets.values(), key=lambda t: (t["updated_ts"], t["id"]))

    def _export(self, req: Request) -> tuple[int, Any]:
        horizon = int(self.now()) - 60
        per_page = min(int(req.query.get("per_page", 1000)), 1000)
        if "cursor" in req.query:
            try:
                pos = json.loads(base64.urlsafe_b64decode(req.query["cursor"]))
            except ValueError:
                return 400, {"error": "InvalidCursor"}
            after = (pos["ts"], pos["id"])
        elif "start_time" in req.query:
            start = int(req.query["start_time"])
            if start > horizon:
                return 400, {"error": "InvalidValue", "description": "start_time is too recent"}
            after = (start, -1)
        else:
            return 400, {"error": "InvalidValue", "description": "start_time is required"}
        left = [
            t
            for t in self._order()
            if (t["updated_ts"], t["id"]) > after and t["updated_ts"] <= horizon
        ]
        page = left[:per_page]
        last = (page[-1]["updated_ts"], page[-1]["id"]) if page else after
        cursor = base64.urlsafe_b64encode(json.dumps({"ts": last[0], "id": last[1]}).encode())
        return 200, {
            "tickets": [self._json(t) for t in page],
            "users": [{"id": 7, "email": self.users[7]}],
            "after_cursor": cursor.decode(),
            "before_cursor": None,
            "end_of_stream": len(left) <= per_page,
        }


class FreshdeskServer(FakeHelpdesk):
    remaining_header = "X-RateLimit-Remaining"

    def __init__(self, key: str = "fd-secret-key", *, max_pages: int = 300) -> None:
        super().__init__(_basic(f"{key}:X"))
        self.max_pages = max_pages

    def _json(self, t: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": t["id"],
            "subject": t["subject"],
            "description_text": t["description"],
            "requester_id": 9,
            "requester": {"id": 9, "email": "buyer@example.com", "name": "B"},
            "source": 1,
            "created_at": t["created_at"],
            "updated_at": stamp(t["updated_ts"]),
            "tags": list(t["tags"]),
            "status": 2,
            "group_id": t["group_id"],
            "custom_fields": dict(t["custom_fields"]),
        }

    def route(self, req: Request) -> tuple[int, Any]:
        if req.path == "/api/v2/tickets":
            return self._list(req)
        m = re.fullmatch(r"/api/v2/tickets/(\d+)(/notes|/conversations)?", req.path)
        if m is None or int(m.group(1)) not in self.tickets:
            return 404, {"code": "not_found"}
        ticket = self.tickets[int(m.group(1))]
        if m.group(2) == "/conversations":
            return 200, list(self.notes[ticket["id"]])
        if m.group(2) == "/notes":
            body = req.body or {}
            note = {"body": body.get("body"), "body_text": body.get("body"), "private": True}
            self.notes[ticket["id"]].append(note)
            self._touch(ticket)
            return 201, note
        if req.method == "PUT":
            update = req.body or {}
            if "group_id" in update:
                ticket["group_id"] = update["group_id"]
            if "tags" in update:
                ticket["tags"] = list(update["tags"])
            ticket["custom_fields"].update(update.get("custom_fields", {}))
            self._touch(ticket)
        return 200, self._json(ticket)

    def _list(self, req: Request) -> tuple[int, Any]:
        page = int(req.query.get("page", 1))
        per_page = min(int(req.query.get("per_page", 30)), 100)
        if page > self.max_pages:
            return 400, {"description": "Validation failed", "errors": [{"field": "page"}]}
        since = datetime.fromisoformat(req.query["updated_since"].replace("Z", "+00:00"))
        rows = sorted(
            (t for t in self.tickets.values() if t["updated_ts"] >= since.timestamp()),
            key=lambda t: (t["updated_ts"], t["id"]),
        )
        return 200, [self._json(t) for t in rows[(page - 1) * per_page : page * per_page]]


@contextlib.contextmanager
def zendesk(**kwargs: Any) -> Iterator[ZendeskServer]:
    with ZendeskServer(**kwargs) as server:
        yield server


@contextlib.contextmanager
def freshdesk(**kwargs: Any) -> Iterator[FreshdeskServer]:
    with FreshdeskServer(**kwargs) as server:
        yield server
