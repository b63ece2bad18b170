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
import contextlib
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

import httpx

from backends import fast_json
from backends.http_common import (
    ACCEPT_ENCODING,
    MAX_ERROR_BYTES,
    MAX_RESPONSE_BYTES,
    HeaderLookup,
    looks_like_html,
    not_the_protocol,
    quote_server,
)
from tui.core.backend import BadResponse

if TYPE_CHECKING:
    from pydantic import SecretStr

INFLATE_STEP = 65_536
"""Most bytes one decompression step may produce, so a gzip bomb never inflates at once."""


class RawReply(Protocol):
    """A reply read without httpx (`backends.aiohttp_exchange.AiohttpReply`): its status,
    headers, and its body as received (still encoded), closed once read."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> HeaderLookup: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


WireReply = httpx.Response | RawReply
"""What the readers read: an httpx streamed response, or a reply straight from aiohttp."""


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


def _inflater(headers: HeaderLookup) -> _Inflater | None:
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


class _Decoded:
    """The reply's decoded bytes, piece by piece, raising `_OverCap` past `limit` of them.

    Decompressed bytes are what is counted, so a small gzip bomb is stopped at the cap.

    A class, not an async generator, and it reads `response.stream` itself rather than
    through `response.aiter_raw()` (two more generators inside httpx): a streamed reader
    stops at its closing event, and every async generator still suspended then is handed to
    the event loop's finalizer hook, a `call_soon_threadsafe` self-pipe write, a task and an
    extra loop turn each, eight per ticket in a whole run (benchmarks/RESULTS.md §1 "Whole
    runs"). `aclose` closes the one generator left (httpx's `BoundAsyncStream`) at once.
    """

    __slots__ = ("_inflater", "_limit", "_over", "_pieces", "_raw", "_response", "_size", "_state")

    def __init__(self, response: WireReply, limit: int) -> None:
        self._response = response
        self._limit = limit
        self._size = 0
        self._raw: AsyncIterator[bytes] | None = None
        self._inflater: _Inflater | None = None
        self._pieces: Iterator[bytes] = iter(())
        self._state = "new"
        """Then "reading" (from `_raw`, or `_pieces` alone when `_raw` is None), then "done"."""
        self._over = False

    def __aiter__(self) -> Self:
        return self

    def _open(self) -> None:
        """Start reading: the body already in memory, else the stream (as `aiter_raw` does).

        Raises:
            BadResponse: An encoding that is not read.
        """
        response = self._response
        if not isinstance(response, httpx.Response):
            self._inflater = _inflater(response.headers)
            self._raw = response.chunks()
            return
        try:
            content = response.content  # a reply already read whole (built in memory): decoded
        except httpx.ResponseNotRead:
            pass
        else:
            self._pieces = iter((content,))
            return
        self._inflater = _inflater(response.headers)
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise RuntimeError("Attempted to call an async iterator on a sync stream.")
        if response.is_stream_consumed:
            raise httpx.StreamConsumed()
        if response.is_closed:
            raise httpx.StreamClosed()
        response.is_stream_consumed = True
        self._raw = stream.__aiter__()

    async def _next_raw(self) -> bytes | None:
        """The next raw chunk; None at the stream's end (the reply then closed, as
        `aiter_raw` closes it)."""
        assert self._raw is not None
        try:
            return await self._raw.__anext__()
        except StopAsyncIteration:
            self._raw = None
            await self._response.aclose()
            return None
        except httpx.RequestError as exc:
            self._raw = None
            if isinstance(self._response, httpx.Response):
                _attach_request(exc, self._response)
            raise

    async def __anext__(self) -> bytes:
        if self._state == "new":
            self._state = "reading"
            self._open()
        if self._over:  # the piece up to the cap was returned last time
            self._over = False
            raise _OverCap
        while self._state == "reading":
            try:
                piece = next(self._pieces, None)
            except BadResponse:  # not valid gzip/deflate: the stream is not read further
                await self.aclose()
                raise
            if piece is None:
                raw = None if self._raw is None else await self._next_raw()
                if raw is None:
                    self._state = "done"
                    break
                inflater = self._inflater
                self._pieces = inflater.feed(raw) if inflater is not None else iter((raw,))
                continue
            self._size += len(piece)
            if self._size > self._limit:
                await self.aclose()
                keep = len(piece) - (self._size - self._limit)
                if keep <= 0:
                    raise _OverCap
                self._over = True
                return piece[:keep]
            return piece
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: close the stream's iterator now rather than at garbage collection."""
        self._state = "done"
        raw, self._raw = self._raw, None
        close = getattr(raw, "aclose", None)
        if close is not None:
            await close()


def _attach_request(exc: httpx.RequestError, response: httpx.Response) -> None:
    """Give a transport error its request, as httpx's `aiter_raw` does (`request_context`)."""
    try:
        exc.request  # noqa: B018 - the property raises when no request is attached
    except RuntimeError:
        with contextlib.suppress(RuntimeError):  # a reply built without a request
            exc.request = response.request


async def read_capped(response: WireReply, limit: int = MAX_RESPONSE_BYTES) -> bytes:
    """The streamed reply's body, refusing to hold more than `limit` (decoded) bytes.

    Raises:
        BadResponse: The reply is larger than `limit`, or its encoding is unreadable.
    """
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadResponse(f"reply of {int(declared)} bytes exceeds the {limit}-byte cap")
    chunks: list[bytes] = []
    try:
        async for piece in _Decoded(response, limit):
            chunks.append(piece)
    except _OverCap:
        raise BadResponse(f"reply exceeds the {limit}-byte cap") from None
    return b"".join(chunks)


async def read_truncated(response: WireReply, limit: int) -> tuple[bytes, bool]:
    """At most `limit` decoded bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    try:
        async for piece in _Decoded(response, limit):
            chunks.append(piece)
    except _OverCap:
        return b"".join(chunks), False
    return b"".join(chunks), True


async def read_error_text(response: WireReply) -> str:
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


class _Lines:
    """Lines of a streamed reply (a class for the reason `_Decoded` is one)."""

    __slots__ = ("_decoder", "_ended", "_limit", "_pending", "_ready", "_source")

    def __init__(self, source: _Decoded, limit: int) -> None:
        self._source = source
        self._limit = limit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._ready: deque[str] = deque()
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        while not self._ready:
            if self._ended:
                raise StopAsyncIteration
            try:
                chunk = await self._source.__anext__()
            except StopAsyncIteration:
                self._ended = True
                tail = self._pending + self._decoder.decode(b"", final=True)
                self._pending = ""
                if tail:
                    return tail
                raise
            except _OverCap:
                self._ended = True
                raise BadResponse(f"streamed reply exceeds the {self._limit}-byte cap") from None
            pending = self._pending + self._decoder.decode(chunk)
            *complete, self._pending = pending.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            self._ready.extend(complete)
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Stop reading; the stream's iterator is closed at once."""
        self._ended = True
        self._ready.clear()
        await self._source.aclose()


def iter_lines(response: WireReply, limit: int = MAX_RESPONSE_BYTES) -> _Lines:
    """Lines of a streamed reply, counting bytes so that no line or stream outgrows `limit`.

    httpx's `aiter_lines` would buffer an endless line whole; this splits decoded pieces
    itself, and counts decompressed bytes. Raises `BadResponse` (when iterated) once more
    than `limit` bytes arrived. `aclose()` it when stopping early.
    """
    return _Lines(_Decoded(response, limit), limit)


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


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its `event:` name (empty when unnamed) and joined `data:` lines."""

    event: str
    data: str


class SSEStream:
    """Server-sent events grouped from lines per the SSE spec; comments (`:` lines) are
    keep-alives. A class for the reason `_Decoded` is one: a reader that stops at its closing
    event leaves nothing for the event loop's finalizer, and `aclose()` closes the stream's
    iterator there and then.
    """

    __slots__ = ("_data", "_ended", "_event", "_first", "_lines")

    def __init__(self, lines: AsyncIterator[str], first: FirstLine | None = None) -> None:
        self._lines = lines
        self._first = first
        """Where the first non-blank line is kept (to tell an HTML page from a cut stream)."""
        self._event = ""
        self._data: list[str] = []
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    def _take(self) -> SSEEvent:
        event = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data = "", []
        return event

    async def __anext__(self) -> SSEEvent:
        first = self._first
        while not self._ended:
            try:
                line = await self._lines.__anext__()
            except StopAsyncIteration:
                self._ended = True
                if self._data:
                    return self._take()
                break
            if first is not None and first.text is None and line.strip():
                first.text = line.strip()[:MAX_ERROR_BYTES]
            if not line:
                if self._data:
                    return self._take()
                self._event = ""
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                self._data.append(value)
            elif field == "event":
                self._event = value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: the lines (and under them the reply's stream) are closed now."""
        self._ended = True
        close = getattr(self._lines, "aclose", None)
        if close is not None:
            await close()


def iter_sse(lines: AsyncIterator[str]) -> SSEStream:
    """Group lines into events per the SSE spec (`SSEStream`)."""
    return SSEStream(lines)


def sse_events(response: WireReply, first: FirstLine) -> SSEStream:
    """A streamed reply's events, within `MAX_RESPONSE_BYTES`, its first line kept in `first`
    (to tell an HTML page from a cut stream when no event came). `aclose()` it when stopping
    at the closing event."""
    return SSEStream(iter_lines(response), first)


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
        data = fast_json.loads(event.data)
    except ValueError:  # JSONDecodeError, or an integer of over 4,300 digits
        said = quote_server(event.data, key, limit=80)
        raise BadResponse(f"{what} is not JSON: {said!r}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"{what} is not an object")
    return data
