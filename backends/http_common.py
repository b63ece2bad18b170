"""httpx plumbing shared by the HTTP backends (OpenAI-compatible, Anthropic, llama.cpp server).

One place maps HTTP statuses and transport failures onto the typed errors of `tui.core.backend`,
parses Retry-After, splits server-sent events and caps how much of a reply is read, so every
backend fails the same way and a misbehaving server can never exhaust memory. Nothing here
knows a vendor's payloads beyond the common `{"error": {"message": ...}}` shapes.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from backends.secrets import redact
from tui.core.backend import (
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

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.core.config import HTTPOptions

MAX_RESPONSE_BYTES = 1_000_000
"""Most bytes read from one reply; a classification answer is a few hundred."""
MAX_ERROR_BYTES = 64_000
"""Most bytes read from an error body: enough for any server's explanation."""
SERVER_TEXT_CHARS = 200
"""How much server text an error message quotes."""
ACCEPT_ENCODING = "gzip, deflate"
"""The codings asked for, and the only ones read: each is inflated in bounded steps."""
INFLATE_STEP = 65_536
"""Most bytes one decompression step may produce, so a gzip bomb never inflates at once."""


def make_client(config: HTTPOptions, *, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
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
        headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
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


class _Inflater:
    """gzip/deflate decoding that never produces more than `INFLATE_STEP` bytes per step.

    httpx inflates each received chunk whole, so 16 KB of a gzip bomb becomes 16 MB before
    any cap can look at it. Reading `aiter_raw` through this keeps memory at the cap.
    """

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._gzip = coding in ("gzip", "x-gzip")
        self._wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._inflate = zlib.decompressobj(self._wbits)
        self._head = b""
        """Input taken before the first output, replayed if "deflate" turns out headerless."""
        self._produced = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        if not self._produced and len(self._head) < INFLATE_STEP:
            self._head += data
        pending = data
        while True:
            try:
                out = self._inflate.decompress(pending, INFLATE_STEP)
            except zlib.error:
                if self.coding == "deflate" and not self._produced and self._wbits > 0:
                    # "deflate" is sent both with and without the zlib header
                    self._wbits = -zlib.MAX_WBITS
                    self._inflate = zlib.decompressobj(self._wbits)
                    pending = self._head
                    continue
                raise BadResponse(f"reply is not valid {self.coding} data") from None
            if out:
                self._produced = True
                yield out
            pending = self._inflate.unconsumed_tail
            if self._inflate.eof:
                rest = self._inflate.unused_data
                if not (self._gzip and rest):
                    return  # the end; bytes after a deflate stream are ignored, as httpx does
                pending = rest  # concatenated gzip members
                self._inflate = zlib.decompressobj(self._wbits)
                continue
            if not pending and len(out) < INFLATE_STEP:
                return


def _inflater(headers: httpx.Headers) -> _Inflater | None:
    """The decoder for a reply's Content-Encoding; None when it is not encoded.

    Raises:
        BadResponse: An encoding other than one gzip or deflate (which were all we asked for).
    """
    codings = [
        c.strip().lower()
        for c in headers.get("content-encoding", "").split(",")
        if c.strip().lower() not in ("", "identity")
    ]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        said = quote_server(", ".join(codings), None, limit=40)
        raise BadResponse(f"reply uses content-encoding {said!r}, which is not read")
    return _Inflater(codings[0])


class _OverCap(Exception):
    """More decoded bytes arrived than the caller's limit."""


async def _decoded(response: httpx.Response, limit: int) -> AsyncIterator[bytes]:
    """The reply's decoded bytes, piece by piece, raising `_OverCap` past `limit` of them.

    Decompressed bytes are what is counted, so a small gzip bomb is stopped at the cap.
    """
    try:
        content = response.content  # a reply already read whole (built in memory): decoded
    except httpx.ResponseNotRead:
        pass
    else:
        if len(content) > limit:
            yield content[:limit]
            raise _OverCap
        yield content
        return
    inflater = _inflater(response.headers)
    size = 0
    async for raw in response.aiter_raw():
        pieces = inflater.feed(raw) if inflater is not None else iter((raw,))
        for piece in pieces:
            size += len(piece)
            if size > limit:
                keep = len(piece) - (size - limit)
                if keep > 0:
                    yield piece[:keep]
                raise _OverCap
            yield piece


async def read_capped(response: httpx.Response, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The streamed reply's body, refusing to hold more than `limit` (decoded) bytes.

    Raises:
        BadResponse: The reply is larger than `limit`, or its encoding is unreadable.
    """
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadResponse(f"reply of {int(declared)} bytes exceeds the {limit}-byte cap")
    chunks: list[bytes] = []
    try:
        async for piece in _decoded(response, limit):
            chunks.append(piece)
    except _OverCap:
        raise BadResponse(f"reply exceeds the {limit}-byte cap") from None
    return b"".join(chunks)


async def read_truncated(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` decoded bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    try:
        async for piece in _decoded(response, limit):
            chunks.append(piece)
    except _OverCap:
        return b"".join(chunks), False
    return b"".join(chunks), True


async def read_error_text(response: httpx.Response) -> str:
    """An error reply's body as text, truncated rather than failing when it is huge."""
    try:
        body, _ = await read_truncated(response, MAX_ERROR_BYTES)
    except BadResponse as error:  # an unreadable encoding: the status still says enough
        return str(error)
    return body.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class CappedReply:
    """A GET's status, headers and at most `limit` decoded bytes of its body."""

    status: int
    headers: httpx.Headers
    body: bytes
    complete: bool
    """False when the body was longer than the cap and was cut there."""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def get_capped(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float,
    limit: int = MAX_RESPONSE_BYTES,
) -> CappedReply:
    """GET for the health checks: the whole exchange within `timeout_s`, the body capped.

    A plain `client.get` reads (and inflates) the whole body: a `/models` that was a gzip
    bomb or a 300 MB list took 1-2 GB of memory.

    Raises:
        TimeoutError: No complete reply within `timeout_s`.
        httpx.HTTPError: Transport failures.
        BadResponse: An encoding that is not read.
    """
    async with (
        asyncio.timeout(timeout_s),
        client.stream(
            "GET", url, headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        ) as response,
    ):
        body, complete = await read_truncated(response, limit)
        return CappedReply(response.status_code, response.headers, body, complete)


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def looks_like_html(body: bytes | str) -> bool:
    """Whether a body is markup (a login page, a proxy's error page) rather than JSON/SSE."""
    head = (body.encode("utf-8", "replace") if isinstance(body, str) else body)[:1024]
    return head.lstrip().startswith(b"<")


def not_the_protocol(body: bytes | str, reply: str, key: SecretStr | None) -> BadResponse:
    """The error for a 200 whose body is HTML, naming what was expected (`reply`).

    Args:
        body: The (capped) body, or its first line.
        reply: What was expected, with its article: "an OpenAI-compatible reply".
        key: The API key, removed from anything quoted.
    """
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    found = _HTML_TITLE.search(data[:MAX_ERROR_BYTES])
    title = quote_server(found.group(1).decode("utf-8", "replace"), key, limit=80) if found else ""
    detail = f": page title {title!r}" if title else ""
    return BadResponse(f"not {reply} (HTML){detail}", raw_output=None)


def load_json_object(
    body: bytes,
    what: str = "reply",
    *,
    expected: str | None = None,
    key: SecretStr | None = None,
) -> dict[str, Any]:
    """Decode a JSON object body.

    Args:
        body: The capped body.
        what: How error messages name it.
        expected: The protocol's reply with its article ("an OpenAI-compatible reply"), for
            the message when the body is an HTML page.
        key: The API key, removed from anything quoted.

    Raises:
        BadResponse: Not JSON (HTML said as such), or not an object.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, or a 4,300+ digit int
        if expected is not None and looks_like_html(body):
            raise not_the_protocol(body, expected, key) from None
        raise BadResponse(f"{what} is not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"{what} is JSON but not an object")
    return data


async def iter_lines(
    response: httpx.Response, limit: int = MAX_RESPONSE_BYTES
) -> AsyncIterator[str]:
    """Lines of a streamed reply, counting bytes so that no line or stream outgrows `limit`.

    httpx's `aiter_lines` would buffer an endless line whole; this splits decoded pieces
    itself, and counts decompressed bytes.

    Raises:
        BadResponse: More than `limit` bytes arrived.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    try:
        async for chunk in _decoded(response, limit):
            pending += decoder.decode(chunk)
            *complete, pending = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            for line in complete:
                yield line
    except _OverCap:
        raise BadResponse(f"streamed reply exceeds the {limit}-byte cap") from None
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


@dataclass(slots=True)
class FirstLine:
    """The first non-blank line a stream carried, to tell an HTML page from a cut stream."""

    text: str | None = None


async def noting_first(lines: AsyncIterator[str], first: FirstLine) -> AsyncIterator[str]:
    """Pass `lines` through, keeping the first non-blank one in `first`."""
    async for line in lines:
        if first.text is None and line.strip():
            first.text = line.strip()[:MAX_ERROR_BYTES]
        yield line


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
