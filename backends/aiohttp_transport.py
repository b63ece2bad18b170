"""httpx over aiohttp, with the precise httpx exceptions our error mapping relies on.

httpx-aiohttp reports every aiohttp connection error as `httpx.ConnectTimeout`, a refused
connection and a reset mid-reply included. Backends tell ConnectionFailed from Timeout by the
httpx class, so this transport re-raises with the class that says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def precise(exc: httpx.TransportError) -> httpx.TransportError:
    """The httpx exception matching the aiohttp error behind `exc`."""
    cause = exc.__cause__
    if not isinstance(cause, aiohttp.ClientError) or isinstance(
        cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError
    ):
        return exc
    message = str(cause) or type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(cause, aiohttp.ClientConnectionError):
        return httpx.ReadError(message)
    return exc


class _PreciseStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.inner:
                yield chunk
        except httpx.TransportError as exc:
            raise precise(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self.inner.aclose()


class PreciseAiohttpTransport(AiohttpTransport):
    """AiohttpTransport whose failures keep their meaning (refused, dropped, timed out)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise precise(exc) from exc.__cause__
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _PreciseStream(response.stream)
        return response
