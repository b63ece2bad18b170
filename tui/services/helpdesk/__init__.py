"""Helpdesk sync's network part: the Zendesk and Freshdesk clients, the sync, the webhooks.

- `http`: auth, pacing (requests-per-minute ceiling, remaining-budget headers), retries;
- `zendesk` / `freshdesk`: each helpdesk's pull, ticket read, marker check and write-back;
- `sync`: `HelpdeskSync` (pull -> route -> push, each step resumable) and `make_client`;
- `webhooks`: the signed-webhook receiver that imports and routes a ticket at once.
"""

from tui.services.helpdesk.sync import HelpdeskClient, HelpdeskSync, SyncReport, make_client

__all__ = ["HelpdeskClient", "HelpdeskSync", "SyncReport", "make_client"]
