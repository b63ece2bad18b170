"""`triagedesk webhooks`: receive helpdesk webhooks, then import, route and write back at once.

Zendesk signs each webhook: `X-Zendesk-Webhook-Signature` is base64(HMAC-SHA256(signing
secret, `X-Zendesk-Webhook-Signature-Timestamp` + body)). A bad signature is refused (401),
and so is a timestamp more than `MAX_SKEW_S` from now, so a captured request cannot be
replayed later. Freshdesk's automation webhooks cannot sign; the rule sends a shared secret
in the `X-Triagedesk-Secret` header. Either secret comes from the env variable
`webhook_secret_env` names.

The body is only trusted for a ticket id: the ticket itself is read from the helpdesk's API
with the sync's token, so a forged body that passed no check could not plant text anyway.
The answer (202) goes out once the request is verified; importing and routing run after it,
one ticket at a time per helpdesk, because Zendesk gives a webhook 12 seconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from tui.core.helpdesk import (
    HelpdeskConfig,
    HelpdeskError,
    HelpdeskProtocolError,
    webhook_ticket_id,
)
from tui.services.helpdesk.sync import HelpdeskSync, SyncReport

MAX_SKEW_S = 300.0
MAX_BODY_BYTES = 1_000_000
SHARED_SECRET_HEADER = "X-Triagedesk-Secret"


def webhook_secret(config: HelpdeskConfig) -> bytes:
    """The webhook secret from its variable.

    Raises:
        HelpdeskError: Not configured, or the variable is empty (names the variable only).
    """
    variable = config.webhook_secret_env
    if variable is None:
        raise HelpdeskError(f"helpdesk.{config.name}: webhooks need webhook_secret_env")
    value = os.environ.get(variable)
    if not value:
        raise HelpdeskError(f"helpdesk.{config.name}: set {variable} (the webhook secret)")
    return value.encode()


def zendesk_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _timestamp(value: str) -> float | None:
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def verify(
    config: HelpdeskConfig,
    secret: bytes,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float,
) -> str | None:
    """Why the request is refused, or None when it is genuine."""
    if config.type == "freshdesk":
        given = headers.get(SHARED_SECRET_HEADER.lower(), "")
        return None if hmac.compare_digest(given.encode(), secret) else "bad shared secret"
    signature = headers.get("x-zendesk-webhook-signature")
    stamp = headers.get("x-zendesk-webhook-signature-timestamp")
    if not signature or not stamp:
        return "unsigned"
    expected = zendesk_signature(secret, stamp, body)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return "bad signature"
    when = _timestamp(stamp)
    if when is None or abs(now - when) > MAX_SKEW_S:
        return "stale timestamp"
    return None


class WebhookReceiver:
    """The aiohttp application: `POST /webhooks/NAME` for each configured helpdesk."""

    def __init__(
        self,
        syncs: dict[str, HelpdeskSync],
        *,
        clock: Callable[[], float] = time.time,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.syncs = syncs
        self.secrets = {name: webhook_secret(s.config) for name, s in syncs.items()}
        self.clock = clock
        self.on_line = on_line
        self._locks = {name: asyncio.Lock() for name in syncs}
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.router.add_post("/webhooks/{name}", self._receive)

    def _say(self, line: str) -> None:
        if self.on_line is not None:
            self.on_line(line)

    async def _receive(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sync = self.syncs.get(name)
        if sync is None:
            return web.json_response({"error": "unknown helpdesk"}, status=404)
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        refused = verify(sync.config, self.secrets[name], headers, body, now=self.clock())
        if refused is not None:
            self._say(f"{name}: webhook refused: {refused}")
            return web.json_response({"error": refused}, status=401)
        try:
            remote_id = webhook_ticket_id(json.loads(body))
        except (ValueError, HelpdeskProtocolError) as exc:
            reason = str(exc) if isinstance(exc, HelpdeskProtocolError) else "body is not JSON"
            return web.json_response({"error": reason}, status=400)
        task = asyncio.ensure_future(self._handle(sync, remote_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"accepted": remote_id}, status=202)

    async def _handle(self, sync: HelpdeskSync, remote_id: int) -> None:
        """Import, route and write back one ticket; a failure is a line, never a crash."""
        async with self._locks[sync.name]:
            report = SyncReport()
            try:
                await sync.import_one(remote_id, report)
                await sync.route(report)
                await sync.push(report)
            except HelpdeskError as exc:
                self._say(f"{sync.name}: ticket {remote_id}: {exc}")
                return
            except Exception as exc:  # a receiver outlives any one ticket's failure
                self._say(f"{sync.name}: ticket {remote_id}: {type(exc).__name__}: {exc}")
                return
            self._say(f"{sync.name}: ticket {remote_id}: {report.line(sync.name)}")

    async def drain(self) -> None:
        """Wait for the tickets being handled (a test, or a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def serve(
        self,
        host: str,
        port: int,
        stop: asyncio.Event,
        ready: Callable[[int], None] | None = None,
    ) -> None:
        """Listen until `stop`; `ready` is told the port (the one chosen, for port 0)."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            if ready is not None:
                ready(int(runner.addresses[0][1]))
            await stop.wait()
            await self.drain()
        finally:
            await runner.cleanup()
