"""API keys: from the environment variable the config names, or the OS keyring.

Keys live only in `SecretStr` values held by backends; they never reach the store, logs,
exports, screens or error text.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from tui.core.config import BackendConfig


HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
"""Loggers of the HTTP stack: at DEBUG httpcore logs response headers verbatim."""


class _RedactingFilter(logging.Filter):
    """Removes known keys from the HTTP stack's log records: a server or proxy that echoes
    the request's headers back in a response header would otherwise put the key in the log."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, None
        return True


_LOG_FILTER = _RedactingFilter()


def _keep_out_of_logs(value: str) -> None:
    if value in _LOG_FILTER.secrets:
        return
    _LOG_FILTER.secrets.add(value)
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


def api_key(config: BackendConfig) -> SecretStr | None:
    """The backend's key, or None when neither the variable nor the keyring has one.

    Any block may name one: the HTTP types' Options declare `api_key_env` and
    `keyring_service`, and a plugin's block may set them as its own keys, so the router can
    redact every configured key. A key handed out is also registered with the HTTP stack's
    loggers for redaction.
    """
    variable = getattr(config, "api_key_env", None)
    service = getattr(config, "keyring_service", None)
    return secret_from(
        variable if isinstance(variable, str) else None,
        service if isinstance(service, str) else None,
        config.name,
    )


def redact(text: str, *secrets: SecretStr | None) -> str:
    """Remove every given secret from a text (server error bodies can echo headers back)."""
    for secret in secrets:
        if secret is not None:
            value = secret.get_secret_value()
            if value:
                text = text.replace(value, "[redacted]")
    return text


def redact_error(error: BaseException, *secrets: SecretStr | None) -> None:
    """Remove secrets from an error's message and raw output, and its chained errors', in place.

    Answer-parsing errors quote what the server sent, which a hostile proxy can make the key.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    pending: list[BaseException] = []
    while current is not None:
        if id(current) not in seen:
            seen.add(id(current))
            current.args = tuple(
                redact(a, *secrets) if isinstance(a, str) else a for a in current.args
            )
            raw = getattr(current, "raw_output", None)
            if isinstance(raw, str):
                current.raw_output = redact(raw, *secrets)  # type: ignore[attr-defined]
            pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        current = pending.pop() if pending else None


def secret_from(variable: str | None, service: str | None, username: str) -> SecretStr | None:
    """A token from `variable` in the environment, else from the keyring's `service` under
    `username`; None when neither has one. Used by helpdesk clients, whose config blocks are
    not backends; the value is registered for redaction like a backend's key."""
    if variable:
        value = os.environ.get(variable)
        if value:
            _keep_out_of_logs(value)
            return SecretStr(value)
    if service:
        try:
            import keyring  # optional extra

            stored = keyring.get_password(service, username)
        except Exception:  # no keyring backend on this machine: same as no key
            stored = None
        if stored:
            _keep_out_of_logs(stored)
            return SecretStr(stored)
    return None
