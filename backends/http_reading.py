"""Reading an HTTP reply within caps: bodies, lines and server-sent events.

A misbehaving server can never exhaust memory: decoded (decompressed) bytes are what is
counted, gzip and deflate are inflated in bounded steps, and no line or stream outgrows its
cap. The SSE grouping is this module's own rather than httpx-sse's: that library reads
`response.aiter_text()`, which inflates each chunk whole and buffers an endless line (192 MiB
of memory for a 64 MiB line, against 1 MiB here), and its decoder drops a cut stream's last
event and yields empty ones for keep-alive lines after an `id:` (benchmarks/sse_parsing.py).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from backends.http_common import (
    ACCEPT_ENCODING,
    MAX_ERROR_BYTES,
    MAX_RESPONSE_BYTES,
    looks_like_html,
    not_the_protocol,
    quote_server,
)
from tui.core.backend import BadResponse

if TYPE_CHECKING:
    from pydantic import SecretStr

INFLATE_STEP = 65_536
"""Most bytes one decompression step may produce, so a gzip bomb never inflates at once."""


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

    def raise_if_html(self, expected: str, key: SecretStr | None) -> None:
        """Raise the "not the protocol" error when the stream was an HTML page.

        Called once a stream ended without its closing event and without any real event:
        a login page or a proxy's error page answers 200 with markup, which is a wrong
        address rather than a cut stream.

        Args:
            expected: What the stream should have been, with its article ("an OpenAI-compatible
                reply").
            key: The API key, removed from anything quoted.

        Raises:
            BadResponse: The first line is markup, naming the page's title when it has one.
        """
        if self.text is not None and looks_like_html(self.text):
            raise not_the_protocol(self.text, expected, key)


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


def sse_events(response: httpx.Response, first: FirstLine) -> AsyncIterator[SSEEvent]:
    """A streamed reply's events, within `MAX_RESPONSE_BYTES`, its first line kept in `first`
    (to tell an HTML page from a cut stream when no event came)."""
    return iter_sse(noting_first(iter_lines(response), first))


def event_object(event: SSEEvent, what: str, key: SecretStr | None) -> dict[str, Any]:
    """An event's `data:` decoded as the JSON object every chat API streams.

    Args:
        event: The event.
        what: How error messages name it ("stream event", "stream chunk").
        key: The API key, removed from the quoted data.

    Raises:
        BadResponse: The data is not JSON (quoted, cut to 80 characters) or not an object.
    """
    try:
        data = json.loads(event.data)
    except ValueError:  # JSONDecodeError, or an integer of over 4,300 digits
        said = quote_server(event.data, key, limit=80)
        raise BadResponse(f"{what} is not JSON: {said!r}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"{what} is not an object")
    return data
