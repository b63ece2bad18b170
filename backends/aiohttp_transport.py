"""httpx over aiohttp, with the precise httpx exceptions our error mapping relies on.

httpx-aiohttp reports every aiohttp connection error as `httpx.ConnectTimeout`, a refused
connection and a reset mid-reply included, and lets the errors it has no entry for escape
raw: a broken chunked encoding arrived as aiohttp's `ClientResponseError` and was stored as
an InternalError instead of a retryable ConnectionFailed. Backends tell ConnectionFailed from
Timeout by the httpx class, so this transport re-raises every aiohttp failure, raw or
wrapped, with the httpx class that says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NoReturn, Self

import aiohttp
import httpx
from aiohttp.http_exceptions import HttpProcessingError
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

_AIOHTTP_ERRORS = (aiohttp.ClientError, HttpProcessingError)
CAUGHT = (httpx.TransportError, *_AIOHTTP_ERRORS)


def precise(exc: BaseException) -> BaseException:
    """The httpx exception matching the aiohttp error behind (or in) `exc`.

    Timeouts keep httpx's timeout classes; a malformed reply (bad chunk framing, a cut
    body, an unparsable status line) is a `RemoteProtocolError`, so it is retried as a
    dropped connection.
    """
    cause = exc if isinstance(exc, _AIOHTTP_ERRORS) else exc.__cause__
    if not isinstance(cause, _AIOHTTP_ERRORS):
        return exc
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        if isinstance(exc, httpx.TimeoutException):
            return exc
        if isinstance(cause, aiohttp.ConnectionTimeoutError):
            return httpx.ConnectTimeout(str(cause) or type(cause).__name__)
        return httpx.ReadTimeout(str(cause) or type(cause).__name__)
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientResponseError
        | HttpProcessingError,
    ):
        return httpx.RemoteProtocolError(message)
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.ReadError(message)
    if isinstance(exc, httpx.TransportError):
        return exc
    return httpx.ReadError(message)  # any other aiohttp failure: the exchange broke


def raise_precise(exc: BaseException) -> NoReturn:
    """Raise `precise(exc)` in place of `exc`, chained to the aiohttp error behind it."""
    mapped = precise(exc)
    cause = exc if isinstance(exc, _AIOHTTP_ERRORS) else exc.__cause__
    if mapped is exc:
        raise exc
    raise mapped from cause


class PreciseChunks:
    """The body's chunks, failures re-raised with their precise httpx class.

    A class, not an async generator (as `AiohttpResponseStream.__aiter__` is): a streamed
    reader stops at its closing event, and an async generator still suspended then costs the
    event loop's finalizer hook a self-pipe write, a task and a loop turn.
    """

    __slots__ = ("_chunks",)

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except CAUGHT as exc:
            raise_precise(exc)


class _PreciseStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    def __aiter__(self) -> AsyncIterator[bytes]:
        # aiohttp's own chunk iterator is a class; httpx-aiohttp's stream keeps the aiohttp
        # response as `_aiohttp_response`, read with the same chunk size it reads with.
        reply = getattr(self.inner, "_aiohttp_response", None)
        if isinstance(reply, aiohttp.ClientResponse):
            return PreciseChunks(reply.content.iter_chunked(AiohttpResponseStream.CHUNK_SIZE))
        return PreciseChunks(self.inner.__aiter__())

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        except CAUGHT as exc:
            raise_precise(exc)


class PreciseAiohttpTransport(AiohttpTransport):
    """AiohttpTransport whose failures keep their meaning (refused, dropped, timed out)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except CAUGHT as exc:
            raise_precise(exc)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _PreciseStream(response.stream)
        return response
