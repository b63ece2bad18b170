"""httpx plumbing shared by the HTTP backends (OpenAI-compatible, Anthropic, llama.cpp server).

One place maps HTTP statuses and transport failures onto the typed errors of `backends.base`,
parses Retry-After, splits server-sent events and caps how much of a reply is read, so every
backend fails the same way and a misbehaving server can never exhaust memory. Nothing here
knows a vendor's payloads beyond the common `{"error": {"message": ...}}` shapes.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from backends.base import (
    AuthenticationFailed,
    BackendError,
    BadResponse,
    ConnectionFailed,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    Timeout,
)
from backends.secrets import redact

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.config import BackendConfig

MAX_RESPONSE_BYTES = 1_000_000
"""Most bytes read from one reply; a classification answer is a few hundred."""
MAX_ERROR_BYTES = 64_000
"""Most bytes read from an error body: enough for any server's explanation."""
SERVER_TEXT_CHARS = 200
"""How much server text an error message quotes."""


def make_client(
    config: BackendConfig, *, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    """One pooled client per backend instance.

    The transport is aiohttp's (through httpx-aiohttp) unless `http_transport = "httpx"`:
    httpcore's connection pool costs several times more CPU per request at high concurrency
    (benchmarks/RESULTS.md). Redirects are never followed, so a key sent in a header cannot
    travel to another host.
    """
    limits = httpx.Limits(
        max_connections=config.max_concurrency,
        max_keepalive_connections=config.max_concurrency,
    )
    transport: httpx.AsyncBaseTransport | None = None
    if config.http_transport == "aiohttp":
        try:
            from backends.aiohttp_transport import PreciseAiohttpTransport
        except ImportError:  # the optional fast path is missing: httpx's own transport works
            transport = None
        else:
            transport = PreciseAiohttpTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.timeout_s),
        limits=limits,
        transport=transport,
        follow_redirects=False,
        headers=headers,
    )


def join_url(base_url: str, path: str) -> str:
    """Append `path` to the base URL's path, keeping its query (Azure's `?api-version=`)."""
    parts = urlsplit(base_url)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Returns:
        Non-negative seconds, or None when the header is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def server_message(body: str) -> str:
    """The human part of an error body: `error.message`, `message` or `detail`, else the text."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return body.strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
        if "detail" in data:
            return json.dumps(data["detail"])[:MAX_ERROR_BYTES]
    return body.strip()


def quote_server(text: str, key: SecretStr | None, *, limit: int = SERVER_TEXT_CHARS) -> str:
    """Server text fit for an error message: redacted, on one line, truncated."""
    clean = " ".join(redact(text, key).split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def error_for_status(
    status: int,
    body: str,
    headers: httpx.Headers,
    *,
    key: SecretStr | None,
    model: str | None = None,
) -> BackendError:
    """The typed error for a non-2xx reply, quoting the server's own words.

    Args:
        status: The HTTP status.
        body: The (capped) error body as text.
        headers: Reply headers, for Retry-After and Location.
        key: The API key, removed from anything quoted.
        model: The configured model, to tell a missing model from a wrong URL on 404.
    """
    said = quote_server(server_message(body), key) or "(empty body)"
    text = f"HTTP {status}: {said}"
    if status == 429:
        return RateLimited(text, retry_after=parse_retry_after(headers.get("retry-after")))
    if status >= 500:
        return ServerError(text, status=status)
    if status in (401, 403):
        return AuthenticationFailed(text)
    if status == 404 and ("model" in body.lower() or (model and model in body)):
        return ModelNotFound(text)
    if 300 <= status < 400:
        target = quote_server(headers.get("location", "?"), key)
        return RequestRejected(f"HTTP {status}: redirect to {target} not followed")
    return RequestRejected(text)


def transport_error(exc: httpx.HTTPError, key: SecretStr | None) -> BackendError:
    """Map an httpx exception: timeouts to Timeout, everything on the wire to ConnectionFailed."""
    name = type(exc).__name__
    said = quote_server(str(exc), key)
    detail = f"{name}: {said}" if said and said != name else name
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer within the timeout ({detail})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailed(f"connection failed ({detail})")
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailed(f"connection dropped ({detail})")
    return ConnectionFailed(f"HTTP failure ({detail})")


async def read_capped(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The streamed reply's body, refusing to hold more than `limit` bytes.

    Raises:
        BadResponse: The reply is larger than `limit`.
    """
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadResponse(f"reply of {int(declared)} bytes exceeds the {limit}-byte cap")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise BadResponse(f"reply exceeds the {limit}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_error_text(response: httpx.Response) -> str:
    """An error reply's body as text, truncated rather than failing when it is huge."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_ERROR_BYTES:
            break
    return b"".join(chunks)[:MAX_ERROR_BYTES].decode("utf-8", errors="replace")


def load_json_object(body: bytes, what: str = "reply") -> dict[str, Any]:
    """Decode a JSON object body.

    Raises:
        BadResponse: Not JSON, or not an object.
    """
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadResponse(f"{what} is not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"{what} is JSON but not an object")
    return data


async def iter_lines(
    response: httpx.Response, limit: int = MAX_RESPONSE_BYTES
) -> AsyncIterator[str]:
    """Lines of a streamed reply, counting bytes so that no line or stream outgrows `limit`.

    httpx's `aiter_lines` would buffer an endless line whole; this splits raw chunks itself.

    Raises:
        BadResponse: More than `limit` bytes arrived.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise BadResponse(f"streamed reply exceeds the {limit}-byte cap")
        pending += decoder.decode(chunk)
        *complete, pending = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for line in complete:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its `event:` name (empty when unnamed) and joined `data:` lines."""

    event: str
    data: str


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[SSEEvent]:
    """Group lines into events per the SSE spec; comments (`:` lines) are keep-alives."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data))


def mentions(text: str, needles: Iterable[str]) -> bool:
    """Whether `text` contains any needle, ignoring case (to recognise server complaints)."""
    folded = text.casefold()
    return any(needle.casefold() in folded for needle in needles)
