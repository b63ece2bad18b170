"""Helpdesk sync's pure part: the `[helpdesk.NAME]` config, the wire, the write-back plan.

No network here (the clients are in `tui.services.helpdesk`), no SQL (the store's
`helpdesk` and `pushes` modules):

- `config`: `HelpdeskConfig`, label mappings, `ticket_id` (`zd-12345`);
- `wire`: Zendesk/Freshdesk JSON -> `RemoteTicket` -> `Ticket` through the ingest checks;
- `writeback`: `PushRequest` (a queued push) -> `PushPlan` (what it writes), the note text;
- `errors`: what ends a sync, in one line that names no secret.
"""

from tui.core.helpdesk.config import (
    HelpdeskConfig,
    HelpdeskName,
    LabelMapping,
    default_tag,
    ticket_id,
)
from tui.core.helpdesk.errors import (
    HelpdeskAuthError,
    HelpdeskConflict,
    HelpdeskError,
    HelpdeskProtocolError,
    HelpdeskRequestError,
)
from tui.core.helpdesk.wire import RemoteTicket, parse_stamp, webhook_ticket_id
from tui.core.helpdesk.writeback import PushPlan, PushRequest, plan_push

__all__ = [
    "HelpdeskAuthError",
    "HelpdeskConfig",
    "HelpdeskConflict",
    "HelpdeskError",
    "HelpdeskName",
    "HelpdeskProtocolError",
    "HelpdeskRequestError",
    "LabelMapping",
    "PushPlan",
    "PushRequest",
    "RemoteTicket",
    "default_tag",
    "parse_stamp",
    "plan_push",
    "ticket_id",
    "webhook_ticket_id",
]
