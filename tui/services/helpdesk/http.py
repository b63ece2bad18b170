"""The HTTP part every helpdesk client shares: auth, pacing, retries, one-line errors.

A thin httpx client (over the product's aiohttp transport) rather than zenpy or
python-freshdesk: zenpy is synchronous (requests) and, on a 429, sleeps in its own loop one
second at a time inside the call, and its incremental generator hides the per-page cursor
that must be stored after each page; python-freshdesk has had no release since 2022 and
raises on 429. Here every request goes through `backends.retry.with_retries` (429
Retry-After honoured, 5xx, timeouts and dropped connections retried with jittered backoff,
each wait announced to the `listening` listener), is spaced to stay under the configured
requests-per-minute ceiling, and slows down as the helpdesk's `X-Rate-Limit-Remaining`
(Zendesk) / `X-RateLimit-Remaining` (Freshdesk) runs low.

Errors name the config table and the variable the token came from, never the token: a
server echoing the Authorization header in its error body is redacted too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json as jsonlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import SecretStr

from backends.aiohttp_transport import PreciseAiohttpTransport
from backends.retry import reason, with_retries
from backends.secrets import redact, secret_from
from tui.core.backend import BackendError, ConnectionFailed, RateLimited, ServerError, Timeout
from tui.core.helpdesk import (
    HelpdeskAuthError,
    HelpdeskConfig,
    HelpdeskConflict,
    HelpdeskError,
    HelpdeskProtocolError,
    HelpdeskRequestError,
)

LOW_REMAINING = 10
"""Below this many requests left in the helpdesk's window, requests are spread out."""
MAX_REPLY_BYTES = 64 * 1024 * 1024
"""A reply is read up to this many bytes (a 1,000-ticket export page is a few MB) and refused
past it: a hostile or broken server cannot make the sync buffer without bound."""

REMAINING_HEADERS = ("x-rate-limit-remaining", "x-ratelimit-remaining", "ratelimit-remaining")

Sleep = Callable[[float], Awaitable[None]]


def helpdesk_token(config: HelpdeskConfig) -> SecretStr:
    """The helpdesk's token from its variable or the keyring.

    Raises:
        HelpdeskAuthError: Neither has one; the line names where it was looked for.
    """
    token = secret_from(config.token_env, config.keyring_service, f"helpdesk.{config.name}")
    if token is None:
        raise HelpdeskAuthError(
            f"helpdesk.{config.name}: no API token: set {config.secret_variables}"
        )
    return token


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class HelpdeskHTTP:
    """Requests to one helpdesk, paced and retried; the caller closes it (`aclose`)."""

    def __init__(
        self,
        config: HelpdeskConfig,
        token: SecretStr,
        *,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._token = token
        self._sleep = sleep
        self._monotonic = monotonic
        self._next_at = 0.0
        self.remaining: int | None = None
        """The helpdesk's last `X-Rate-Limit-Remaining`."""
        self.requests = 0
        self.max_reply_bytes = MAX_REPLY_BYTES
        if config.type == "zendesk":
            user = f"{config.email}/token:{token.get_secret_value()}"
        else:
            user = f"{token.get_secret_value()}:X"
        self._auth = SecretStr("Basic " + base64.b64encode(user.encode()).decode())
        self._client = httpx.AsyncClient(
            base_url=config.root,
            timeout=httpx.Timeout(config.timeout_s),
            transport=PreciseAiohttpTransport(trust_env=False),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "triagedesk-helpdesk-sync"},
        )

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._client.aclose()

    def pace_delay(self, now: float) -> float:
        """Seconds to wait before the next request: the per-minute ceiling's spacing, or,
        when the helpdesk says few requests are left, the rest of its minute spread over
        them (a minute when none is left)."""
        wait = max(0.0, self._next_at - now)
        if self.remaining is not None and self.remaining < LOW_REMAINING:
            wait = max(wait, 60.0 / (self.remaining + 1))
        return wait

    async def _pace(self) -> None:
        wait = self.pace_delay(self._monotonic())
        if wait > 0:
            await self._sleep(wait)
        self._next_at = self._monotonic() + 60.0 / self.config.requests_per_minute

    async def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Any:
        """The JSON of a 2xx reply (None for an empty body).

        Raises:
            HelpdeskAuthError: 401/403 (names the token's variable).
            HelpdeskConflict: 409.
            HelpdeskRequestError: Another 4xx.
            HelpdeskError: Retries used up, or a wait too long (Retry-After over a minute).
            HelpdeskProtocolError: A 2xx that is not JSON.
        """
        try:
            return await with_retries(
                lambda: self._once(method, path, params, json),
                max_retries=self.config.max_retries,
                sleep=self._sleep,
            )
        except BackendError as exc:
            where = f"helpdesk.{self.config.name}: {method} {path}"
            raise HelpdeskError(self._clean(f"{where}: {reason(exc)}: {exc}")) from None

    async def _read_capped(self, response: httpx.Response, method: str, path: str) -> bytes:
        """The body, refused (not retried) once it passes `max_reply_bytes`."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_reply_bytes:
                raise HelpdeskProtocolError(
                    f"helpdesk.{self.config.name}: {method} {path}: reply larger than"
                    f" {self.max_reply_bytes:,} bytes, refused"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _clean(self, text: str) -> str:
        return redact(text, self._token, self._auth).replace("\n", " ")[:400]

    async def _once(self, method: str, path: str, params: dict[str, Any] | None, body: Any) -> Any:
        await self._pace()
        self.requests += 1
        try:
            async with self._client.stream(
                method,
                path,
                params=params,
                json=body,
                headers={"Authorization": self._auth.get_secret_value()},
            ) as response:
                content = await self._read_capped(response, method, path)
        except httpx.TimeoutException:
            raise Timeout(f"no answer within {self.config.timeout_s:g} s") from None
        except httpx.TransportError as exc:
            raise ConnectionFailed(self._clean(str(exc) or type(exc).__name__)) from None
        for header in REMAINING_HEADERS:
            value = response.headers.get(header)
            if value is not None and value.strip().isdigit():
                self.remaining = int(value)
                break
        status = response.status_code
        if 200 <= status < 300:
            if not content:
                return None
            try:
                return jsonlib.loads(content)
            except ValueError:
                raise HelpdeskProtocolError(
                    f"helpdesk.{self.config.name}: {method} {path}: reply is not JSON"
                ) from None
        text = self._clean(content[:200].decode("utf-8", "replace"))
        where = f"helpdesk.{self.config.name}: {method} {path}: HTTP {status}"
        if status == 429:
            raise RateLimited(f"HTTP 429 {text}", retry_after=_retry_after(response))
        if status >= 500:
            raise ServerError(f"HTTP {status} {text}", status=status)
        if status in (401, 403):
            raise HelpdeskAuthError(
                f"{where}: the helpdesk refused the token; check {self.config.secret_variables}"
                + (" and email" if self.config.type == "zendesk" else "")
            )
        if status == 409:
            raise HelpdeskConflict(f"{where}: changed in the helpdesk since triagedesk read it")
        raise HelpdeskRequestError(f"{where}: {text}", status=status)
