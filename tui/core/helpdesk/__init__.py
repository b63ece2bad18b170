"""Helpdesk sync's pure part: the `[helpdesk.NAME]` config, the wire, the write-back plan.

No network here (the clients are in `tui.services.helpdesk`), no SQL (the store's
`helpdesk` and `pushes` modules):

- `config`: `HelpdeskConfig`, label mappings, `ticket_id` (`zd-12345`);
- `wire`: Zendesk/Freshdesk JSON -> `RemoteTicket` -> `Ticket` through the ingest checks;
- `writeback`: `PushRequest` (a queued push) -> `PushPlan` (what it writes), the note text;
- `errors`: what ends a sync, in one line that names no secret.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "HelpdeskConfig": "config",
    "HelpdeskName": "config",
    "LabelMapping": "config",
    "default_tag": "config",
    "ticket_id": "config",
    "HelpdeskAuthError": "errors",
    "HelpdeskConflict": "errors",
    "HelpdeskError": "errors",
    "HelpdeskProtocolError": "errors",
    "HelpdeskRequestError": "errors",
    "RemoteTicket": "wire",
    "parse_stamp": "wire",
    "webhook_ticket_id": "wire",
    "PushPlan": "writeback",
    "PushRequest": "writeback",
    "plan_push": "writeback",
}
"""Which module each name comes from: loaded when first asked for (PEP 562), because the
config loader reads `config` at every start and the wire models pull in the ingest checks,
which the TUI needs only when it syncs."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
