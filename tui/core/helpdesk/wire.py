"""The helpdesks' JSON, read strictly enough: tickets, pages and webhook bodies.

Each helpdesk's ticket is read into one `RemoteTicket`, then through the product's own
record check (`tui.core.ingest.ticket_from_record`), so an id, label or text from a helpdesk
passes the same rules as one from a file: a hostile subject with terminal escapes or a
megabyte-long description is refused with one line naming the ticket, never stored.
Fields the product does not route on (status, tags, group, updated time) are kept as metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tui.core.helpdesk.config import ticket_id
from tui.core.helpdesk.errors import HelpdeskProtocolError
from tui.core.ingest import ticket_from_record
from tui.core.models import Ticket

FRESHDESK_SOURCES = {
    1: "email",
    2: "portal",
    3: "phone",
    7: "chat",
    9: "feedback_widget",
    10: "outbound_email",
}


@dataclass(frozen=True, slots=True)
class RemoteTicket:
    """One helpdesk ticket, as the sync needs it."""

    remote_id: int
    subject: str
    description: str
    requester: str | None
    channel: str | None
    created_at: str | None
    updated_at: str
    """The helpdesk's own stamp, kept for Zendesk `safe_update` and Freshdesk's check."""
    tags: tuple[str, ...]
    status: str | None
    group_id: int | None

    def ticket(self, helpdesk: str) -> Ticket:
        """The triagedesk ticket, through the import checks of every other door.

        Raises:
            HelpdeskProtocolError: One line naming the ticket and the field.
        """
        record: dict[str, Any] = {
            "id": ticket_id(helpdesk, self.remote_id),
            "subject": self.subject,
            "body": self.description,
            "customer": self.requester,
            "channel": self.channel,
            "created_at": self.created_at,
            "helpdesk": helpdesk,
            "helpdesk_id": self.remote_id,
            "tags": list(self.tags),
            "status": self.status,
            "updated_at": self.updated_at,
        }
        try:
            ticket, _ = ticket_from_record(record, line=0, max_field_chars=200_000)
        except ValueError as exc:
            raise HelpdeskProtocolError(f"{helpdesk} ticket {self.remote_id}: {exc}") from None
        return ticket


class _Via(BaseModel):
    model_config = ConfigDict(extra="ignore")
    channel: str | int | None = None


class _ZendeskTicket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int = Field(ge=1)
    subject: str | None = None
    description: str | None = None
    requester_id: int | None = None
    via: _Via | None = None
    created_at: str | None = None
    updated_at: str
    tags: list[str] = Field(default_factory=list)
    status: str | None = None
    group_id: int | None = None


class _ZendeskUser(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    email: str | None = None


class _ZendeskPage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    tickets: list[dict[str, Any]]
    users: list[_ZendeskUser] = Field(default_factory=list)
    after_cursor: str | None = None
    end_of_stream: bool


def _shape(what: str, exc: ValidationError) -> HelpdeskProtocolError:
    err = exc.errors()[0]
    where = ".".join(map(str, err["loc"])) or "(body)"
    return HelpdeskProtocolError(f"{what}: unexpected reply at {where}: {err['msg']}")


def zendesk_ticket(raw: Any, users: dict[int, str | None] | None = None) -> RemoteTicket:
    try:
        t = _ZendeskTicket.model_validate(raw)
    except ValidationError as exc:
        raise _shape("zendesk ticket", exc) from None
    requester = None
    if t.requester_id is not None:
        requester = (users or {}).get(t.requester_id) or f"user-{t.requester_id}"
    channel = t.via.channel if t.via is not None else None
    return RemoteTicket(
        t.id,
        t.subject or "",
        t.description or "",
        requester,
        None if channel is None else str(channel),
        t.created_at,
        t.updated_at,
        tuple(t.tags),
        t.status,
        t.group_id,
    )


@dataclass(frozen=True, slots=True)
class ZendeskPage:
    tickets: list[RemoteTicket]
    after_cursor: str | None
    end_of_stream: bool


def zendesk_page(raw: Any) -> ZendeskPage:
    """One page of `/api/v2/incremental/tickets/cursor.json` (tickets, side-loaded users)."""
    try:
        page = _ZendeskPage.model_validate(raw)
    except ValidationError as exc:
        raise _shape("zendesk incremental export", exc) from None
    users = {u.id: u.email for u in page.users}
    tickets = [zendesk_ticket(t, users) for t in page.tickets if t.get("status") != "deleted"]
    return ZendeskPage(tickets, page.after_cursor, page.end_of_stream)


class _Requester(BaseModel):
    model_config = ConfigDict(extra="ignore")
    email: str | None = None


class _FreshdeskTicket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int = Field(ge=1)
    subject: str | None = None
    description_text: str | None = None
    requester_id: int | None = None
    requester: _Requester | None = None
    source: int | None = None
    created_at: str | None = None
    updated_at: str
    tags: list[str] = Field(default_factory=list)
    status: int | None = None
    group_id: int | None = None


def freshdesk_ticket(raw: Any) -> RemoteTicket:
    try:
        t = _FreshdeskTicket.model_validate(raw)
    except ValidationError as exc:
        raise _shape("freshdesk ticket", exc) from None
    requester = t.requester.email if t.requester is not None else None
    if requester is None and t.requester_id is not None:
        requester = f"contact-{t.requester_id}"
    return RemoteTicket(
        t.id,
        t.subject or "",
        t.description_text or "",
        requester,
        None if t.source is None else FRESHDESK_SOURCES.get(t.source, f"source-{t.source}"),
        t.created_at,
        t.updated_at,
        tuple(t.tags),
        None if t.status is None else str(t.status),
        t.group_id,
    )


def freshdesk_page(raw: Any) -> list[RemoteTicket]:
    if not isinstance(raw, list):
        raise HelpdeskProtocolError("freshdesk ticket list: expected a JSON array")
    return [freshdesk_ticket(t) for t in raw]


def parse_stamp(value: str) -> datetime:
    """A helpdesk's `updated_at` (`2026-01-02T03:04:05Z`) as an aware datetime.

    Raises:
        HelpdeskProtocolError: Not an ISO 8601 time.
    """
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HelpdeskProtocolError(f"not a time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def webhook_ticket_id(raw: Any) -> int:
    """The ticket id of a webhook body, in the shapes Zendesk and Freshdesk send.

    Zendesk event webhooks: `{"type": "zen:event-type:ticket.created", "detail": {"id": "1"}}`;
    a trigger's JSON: `{"ticket": {"id": 1}}`; Freshdesk automation: `{"freshdesk_webhook":
    {"ticket_id": 1}}` or `{"ticket_id": 1}`. Only the id is taken: the ticket itself is read
    from the API, so a forged body cannot plant content.
    """
    candidates: list[Any] = []
    if isinstance(raw, dict):
        for key in ("detail", "ticket", "freshdesk_webhook"):
            inner = raw.get(key)
            if isinstance(inner, dict):
                candidates += [inner.get("id"), inner.get("ticket_id")]
        candidates += [raw.get("ticket_id"), raw.get("id")]
    for value in candidates:
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value > 0:
            return value
        if isinstance(value, str) and value.isdigit() and 0 < len(value) <= 18:
            return int(value)
    raise HelpdeskProtocolError("webhook body names no ticket id")
