"""One POST straight on aiohttp, without httpx's Request and Response: the routing hot path.

With `http_transport = "aiohttp"` (the default) each routing request went through httpx's
client (request building, auth and redirect layers, cookies, Response objects) and then
httpx-aiohttp's adapter onto aiohttp, paying for both stacks on every ticket
(benchmarks/RESULTS.md §1 "Whole runs"). `AiohttpPost` sends the JSON httpx would send
(written by `backends.fast_json`), with the headers it would send, on the very aiohttp
session `PreciseAiohttpTransport` pools its connections in, and raises every failure as the
httpx exception that transport raises, so `http_common.transport_error` maps it to the same
stored error. The health checks and `http_transport = "httpx"` stay on httpx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
import httpx
import yarl
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

from backends import fast_json
from backends.aiohttp_transport import CAUGHT, PreciseAiohttpTransport, PreciseChunks, precise
from backends.http_common import ACCEPT_ENCODING

USER_AGENT = f"python-httpx/{httpx.__version__}"
"""The User-Agent httpx sends, so that a server sees the same request from either path."""
CHUNK_SIZE = AiohttpResponseStream.CHUNK_SIZE
"""The body is read in the pieces httpx-aiohttp reads it in."""


def sent_failure(exc: BaseException) -> BaseException:
    """The exception `PreciseAiohttpTransport` raises for an aiohttp failure while sending,
    reading the head or closing: httpx-aiohttp's own mapping, then `precise` over it."""
    try:
        with map_aiohttp_exceptions():
            raise exc
    except Exception as mapped:  # the mapped httpx error, or `exc` itself when unmapped
        return precise(mapped)
    raise AssertionError("unreachable")  # pragma: no cover


class ReplyHeaders:
    """`httpx.Headers.get` over aiohttp's raw headers, without building an `httpx.Headers`.

    Names match without case and repeated headers are joined with ", ", as httpx joins
    them (two Content-Encoding headers are one coding list, and refused as such); a value
    that is not ASCII is looked up in a real `httpx.Headers`, which decodes as httpx does.
    """

    __slots__ = ("_full", "_index", "_raw")

    def __init__(self, raw: tuple[tuple[bytes, bytes], ...]) -> None:
        self._raw = raw
        self._full: httpx.Headers | None = None
        self._index: dict[bytes, list[bytes]] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        wanted = key.lower().encode("ascii")
        index = self._index
        if index is None:  # built on the first look-up: a reply is asked three or four times
            index = self._index = {}
            for name, value in self._raw:
                index.setdefault(name.lower(), []).append(value)
        values = index.get(wanted)
        if not values:
            return default
        try:
            return ", ".join(value.decode("ascii") for value in values)
        except UnicodeDecodeError:
            return self.full().get(key, default)

    def full(self) -> httpx.Headers:
        """The headers as httpx reads them (decoded as httpx decodes them)."""
        if self._full is None:
            self._full = httpx.Headers(list(self._raw))
        return self._full


class AiohttpReply:
    """A reply's status, headers and raw body chunks, read from aiohttp's response."""

    __slots__ = ("_closed", "_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._closed = False
        self.status_code = response.status
        self.headers = ReplyHeaders(response.raw_headers)

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as received (still encoded), failures raised with their httpx class."""
        return PreciseChunks(self._response.content.iter_chunked(CHUNK_SIZE))

    async def aclose(self) -> None:
        """Hand the connection back (or drop it when the body was not read to its end)."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._response.__aexit__(None, None, None)
        except CAUGHT as exc:
            raise sent_failure(exc) from None


class AiohttpPost:
    """`async with` one POST: the reply on entry, closed on exit.

    The parts that do not change from ticket to ticket (the parsed URL, the timeout, the
    session) come from `AiohttpSender`; only the body is encoded per request.
    """

    __slots__ = ("_body", "_headers", "_reply", "_sender", "_url")

    def __init__(
        self, sender: AiohttpSender, url: yarl.URL, body: bytes, headers: dict[str, str]
    ) -> None:
        self._sender = sender
        self._url = url
        self._body = body
        self._headers = headers
        self._reply: AiohttpReply | None = None

    async def __aenter__(self) -> AiohttpReply:
        sender = self._sender
        try:
            response = await sender.session().request(
                "POST",
                self._url,
                headers=self._headers,
                data=self._body,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=sender.timeout,
            )
        except CAUGHT as exc:
            raise sent_failure(exc) from None
        self._reply = AiohttpReply(response)
        return self._reply

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reply is not None:
            await self._reply.aclose()


class AiohttpSender:
    """Posts JSON on a `PreciseAiohttpTransport`'s own aiohttp session.

    Args:
        transport: The transport of the backend's httpx client; its session (created here
            when it has none yet) holds the one connection pool both paths share.
        timeout_s: The backend's `timeout_s`, as httpx's `Timeout(timeout_s)` hands it to
            httpx-aiohttp: connect, read and pool waits each bounded by it.
    """

    def __init__(self, transport: PreciseAiohttpTransport, timeout_s: float) -> None:
        self._transport = transport
        self.timeout = aiohttp.ClientTimeout(
            sock_connect=timeout_s, sock_read=timeout_s, connect=timeout_s
        )
        self._urls: dict[str, yarl.URL] = {}
        self._headers: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def session(self) -> aiohttp.ClientSession:
        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()
        return transport.client

    def post(self, url: httpx.URL, body: dict[str, Any], headers: dict[str, str]) -> AiohttpPost:
        """The POST of `body` as JSON to `url` (httpx's JSON and default headers)."""
        target = self._urls.get(str(url))
        if target is None:
            # what httpx-aiohttp hands aiohttp: the URL as httpx normalised it, as text
            target = self._urls[str(url)] = yarl.URL(str(url))
        return AiohttpPost(self, target, fast_json.dumps_body(body), self._sent_headers(headers))

    def _sent_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers httpx would send beside the backend's own, built once per set.

        Validated through `httpx.Headers` the first time: a key that is not ASCII fails
        there as it fails in httpx's `build_request`."""
        marker = tuple(headers.items())
        sent = self._headers.get(marker)
        if sent is None:
            sent = {
                "Accept": "*/*",
                "Accept-Encoding": ACCEPT_ENCODING,
                "Connection": "keep-alive",
                "User-Agent": USER_AGENT,
                **headers,
                "Content-Type": "application/json",
            }
            httpx.Headers(sent)
            if len(self._headers) > 16:  # keys rotate rarely; never let the cache grow
                self._headers.clear()
            self._headers[marker] = sent
        return sent
