"""What can end a sync: each error's message is one line that names no secret."""

from __future__ import annotations


class HelpdeskError(Exception):
    """A sync step failed; the message is one line for people."""


class HelpdeskAuthError(HelpdeskError):
    """401/403: the token is wrong or lacks rights. Retrying cannot help; the sync stops."""


class HelpdeskProtocolError(HelpdeskError):
    """The helpdesk answered something that is not its documented API (or a hostile ticket)."""


class HelpdeskRequestError(HelpdeskError):
    """A 4xx other than 401/403/409/429: the request was refused as it is."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class HelpdeskConflict(HelpdeskError):
    """409: someone changed the ticket in the helpdesk since it was pulled (`safe_update`)."""
