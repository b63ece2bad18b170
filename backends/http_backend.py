"""What the LLM backends that speak HTTP share: the client, one exchange, the model list.

`HTTPBackend.exchange_http` is the shape of every request the OpenAI-compatible, Anthropic and
llama.cpp server backends send: one streamed POST whose error statuses, HTML pages and
transport failures are mapped the same way, then either the event stream or the JSON body
handed to the backend's own reader. `listed_models` is the part of the OpenAI-compatible
and Anthropic health checks that fetches and reads a `/models` listing. The vendor specifics
stay in the backend modules.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx

from backends.http_common import (
    aiohttp_transport,
    error_for_status,
    load_json_object,
    looks_like_html,
    make_client,
    not_the_protocol,
    quote_server,
    transport_error,
)
from backends.http_reading import CappedReply, WireReply, get_capped, read_capped, read_error_text
from backends.llm import Completion, LLMBackend
from tui.core.backend import AuthenticationFailed, Health

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends.aiohttp_exchange import AiohttpSender
    from tui.core.backend import Stopwatch
    from tui.core.config import HTTPOptions
    from tui.core.registry import Resolver

C = TypeVar("C", bound=Completion)
R = TypeVar("R")
"""What one exchange reads a reply as (a Completion, or a fine-tuned answer)."""

MAX_LIST_TEXT = "1 MB"
"""The health checks read a model list up to `http_common.MAX_RESPONSE_BYTES`, as routing does."""

StreamReader = Callable[[WireReply, "SecretStr | None", "Stopwatch"], Awaitable[R]]
PayloadReader = Callable[[dict[str, Any], "SecretStr | None", "Stopwatch"], R]


class HTTPBackend(LLMBackend[C]):
    """An LLM backend reached over HTTP with one pooled client (`make_client`)."""

    expected: ClassVar[str]
    """How errors name what a 200 should have carried: "an OpenAI-compatible reply"."""
    config: HTTPOptions

    def __init__(self, config: HTTPOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)
        self._client: httpx.AsyncClient | None = None
        self._sender: AiohttpSender | None = None
        """Posts straight on the aiohttp transport's session; None on httpx's transport."""
        self._urls: dict[str, httpx.URL] = {}

    def _parsed(self, url: str) -> httpx.URL:
        """`url` parsed once per backend: httpx parses a `str` URL on every request (its
        pure-Python `urlparse`, about half of `build_request` for a chat request; a parsed
        `httpx.URL` is taken as it is). The few URLs a backend posts to are kept."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            transport = aiohttp_transport(self.config)
            self._client = make_client(self.config, transport=transport)
            if transport is not None:
                from backends.aiohttp_exchange import AiohttpSender

                self._sender = AiohttpSender(transport, self.config.timeout_s)
        return self._client

    def _post(
        self, url: str, body: dict[str, Any], key: SecretStr | None
    ) -> AbstractAsyncContextManager[WireReply]:
        """`async with` the POST of `body` to `url`: straight on aiohttp where the transport
        is aiohttp's (`backends.aiohttp_exchange`), else through httpx's client. Both raise
        the same httpx exceptions for the same failures, and both readers read the reply.
        Neither path takes a proxy from the environment: httpx ignores them beside a transport
        of one's own, and the aiohttp session does not trust the environment."""
        client = self._client_now()
        parsed = self._parsed(url)
        if self._sender is not None:
            return self._sender.post(parsed, body, self._headers(key))
        return client.stream("POST", parsed, json=body, headers=self._headers(key))

    def _headers(self, key: SecretStr | None) -> dict[str, str]:
        """The request headers, the key in the vendor's own header."""
        raise NotImplementedError

    def _streamed(self, content_type: str) -> bool:
        """Whether a 200 is read as server-sent events: when streaming was asked for and the
        server did not answer JSON anyway."""
        return self.config.stream and "json" not in content_type

    def _refused(self, status: int, text: str) -> None:
        """A hook to recognise an error reply that refuses an optional feature (by raising)."""

    def _status_model(self) -> str | None:
        """The model that tells a missing model from a wrong URL on a 404."""
        return self.config.model

    async def exchange_http(
        self,
        url: str,
        body: dict[str, Any],
        key: SecretStr | None,
        watch: Stopwatch,
        *,
        stream: StreamReader[R],
        payload: PayloadReader[R],
        what: str = "reply",
    ) -> R:
        """POST `body` and read the reply with `stream` or `payload`, errors mapped.

        Raises:
            BackendError: The typed error for the status, an HTML page, or a transport
                failure; whatever the readers raise.
        """
        try:
            async with self._post(url, body, key) as response:
                if response.status_code != 200:
                    text = await read_error_text(response)
                    self._refused(response.status_code, text)
                    raise error_for_status(
                        response.status_code,
                        text,
                        response.headers,
                        key=key,
                        model=self._status_model(),
                    )
                content_type = response.headers.get("content-type", "").lower()
                if "html" in content_type:
                    raise not_the_protocol(await read_error_text(response), self.expected, key)
                if self._streamed(content_type):
                    return await stream(response, key, watch)
                data = load_json_object(
                    await read_capped(response), what, expected=self.expected, key=key
                )
                return payload(data, key, watch)
        except httpx.HTTPError as exc:
            raise transport_error(exc, key) from None

    async def listed_models(
        self, url: str, path: str, *, unlisted: tuple[int, ...] = (404,)
    ) -> tuple[list[Any], SecretStr | None] | Health:
        """The ids a health check's GET of a `/models` listing found, with the key it sent;
        or the health that the key, the transport or the reply already decided."""
        try:
            key = self._key()
        except AuthenticationFailed as err:
            return Health(False, str(err))
        timeout_s = self.config.timeout_s
        try:
            reply = await get_capped(
                self._client_now(), url, headers=self._headers(key), timeout_s=timeout_s
            )
        except httpx.ConnectError as exc:
            return Health(False, f"connection refused ({quote_server(str(exc), key, limit=80)})")
        except (httpx.TimeoutException, TimeoutError):
            return Health(False, f"timed out (no complete answer within {timeout_s:g} s)")
        except httpx.HTTPError as exc:
            return Health(False, str(transport_error(exc, key)))
        except Exception as exc:  # check() must answer, whatever the URL or server did
            return Health(False, quote_server(f"{type(exc).__name__}: {exc}", key))
        ids = _read_model_list(reply, path, self.model, key, self.expected, unlisted)
        return ids if isinstance(ids, Health) else (ids, key)

    async def aclose(self) -> None:
        """Close the HTTP client; a later route opens a new one."""
        client, self._client = self._client, None
        self._sender = None
        if client is not None:
            await client.aclose()


def _read_model_list(
    reply: CappedReply,
    path: str,
    model: str,
    key: SecretStr | None,
    expected: str,
    unlisted: tuple[int, ...],
) -> list[Any] | Health:
    """The ids of a `{"data": [{"id": ...}]}` model list, or the health its reply means.

    Args:
        reply: The capped GET of the list.
        path: How messages name the list's URL path ("/models").
        model: The configured model, named when the list is too long to look it up.
        key: The API key, removed from anything quoted.
        expected: The protocol's reply with its article, for an HTML page's message.
        unlisted: Statuses meaning the server keeps no list (reachable all the same).
    """
    status = reply.status
    if status in (401, 403):
        return Health(False, f"key rejected (HTTP {status})")
    if status in unlisted:
        return Health(True, "reachable (the server lists no models)")
    if status != 200:
        error = error_for_status(status, reply.text[:4000], reply.headers, key=key)
        return Health(False, str(error))
    if not reply.complete:
        return Health(
            True,
            f"reachable; the model list is over the {MAX_LIST_TEXT} cap, {model} not looked up",
        )
    try:
        data = json.loads(reply.body)
    except (ValueError, RecursionError):
        if looks_like_html(reply.body):
            page = not_the_protocol(reply.body, expected, key)
            return Health(False, f"reachable, but {path} is {page}")
        return Health(False, f"reachable, but {path} did not answer JSON")
    items = data.get("data") if isinstance(data, dict) else None
    return [
        item.get("id")
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]
