"""Ollama through its official async client: `/api/chat` with the answer schema as `format`.

Ollama reports its own timings in nanoseconds (model load, prompt evaluation, generation),
which are kept apart from the client's wall time so a cold model load is visible as such.
The routing pipeline is `backends.llm`'s; this module maps it onto the official client.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import httpx
import ollama
from pydantic import ValidationError

from backends.http_common import MAX_RESPONSE_BYTES, quote_server, server_message
from backends.http_reading import get_capped
from backends.llm import Completion, LLMBackend, Request
from tui.core import numbers
from tui.core.backend import (
    AuthenticationFailed,
    BackendError,
    BadResponse,
    ConnectionFailed,
    Health,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    Stopwatch,
    Timeout,
)
from tui.core.config.options import OllamaOptions

if TYPE_CHECKING:
    from tui.core.registry import Resolver

DEFAULT_HOST = "http://127.0.0.1:11434"
MAX_ANSWER_TOKENS = 200
"""An answer is one short JSON object; the cap stops a rambling model early."""


def ns_to_ms(value: int | None, field: str = "duration") -> float | None:
    """Ollama durations are nanoseconds; everything stored is milliseconds.

    Raises:
        BadResponse: Negative, or longer than a day (`tui.core.numbers`), naming `field`.
    """
    return numbers.duration(value, field, per_ms=numbers.NS_PER_MS)


class OllamaBackend(LLMBackend[Completion]):
    """Routes tickets through a local or remote Ollama server."""

    type = "ollama"
    Options = OllamaOptions
    config: OllamaOptions

    def __init__(self, config: OllamaOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)
        self.host = config.host or DEFAULT_HOST
        self._client: ollama.AsyncClient | None = None
        self._slots = asyncio.Semaphore(config.max_concurrency)

    def _get_client(self) -> ollama.AsyncClient:
        # The client's own default timeout is None: a server that accepts and never answers
        # would hang the worker forever, so the configured timeout is always passed.
        if self._client is None:
            self._client = ollama.AsyncClient(host=self.host, timeout=self.config.timeout_s)
        return self._client

    def _hold(self) -> asyncio.Semaphore:
        """At most `max_concurrency` tickets at once, both rounds of one in the same slot."""
        return self._slots

    def _timed_out(self) -> Timeout:
        return Timeout(f"no answer from {self.host} within {self.config.timeout_s:g} s")

    async def _exchange(self, request: Request, watch: Stopwatch) -> Completion:
        """One `/api/chat` request; client, transport and decoding failures mapped."""
        try:
            return await self._chat_once(request, watch)
        except BackendError:
            raise
        except Exception as exc:
            raise self._map_error(exc) from exc

    async def _chat_once(self, request: Request, watch: Stopwatch) -> Completion:
        client = self._get_client()
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": request.messages,
            "format": request.schema,
            "options": {"temperature": self.config.temperature, "num_predict": MAX_ANSWER_TOKENS},
            "keep_alive": self.config.keep_alive,
        }
        if not self.config.stream:
            response = await client.chat(**kwargs, stream=False)
            return self._call_from(response.message.content or "", response)
        pieces: list[str] = []
        size = 0
        final: ollama.ChatResponse | None = None
        async for part in await client.chat(**kwargs, stream=True):
            if part.message.content:
                watch.mark_first()
                pieces.append(part.message.content)
                size += len(part.message.content)
                if size > MAX_RESPONSE_BYTES:  # a runaway server must not exhaust memory
                    raise BadResponse(f"streamed reply exceeds the {MAX_RESPONSE_BYTES}-byte cap")
            if part.done:
                final = part
        if final is None:
            raise BadResponse("the stream ended without its final 'done' message")
        return self._call_from("".join(pieces), final)

    def _call_from(self, text: str, response: ollama.ChatResponse) -> Completion:
        """Counts and timings of the final message, each validated (`tui.core.numbers`)."""
        return Completion(
            text=text,
            input_tokens=numbers.count(response.prompt_eval_count, "prompt_eval_count"),
            output_tokens=numbers.count(response.eval_count, "eval_count"),
            load_ms=ns_to_ms(response.load_duration, "load_duration"),
            prompt_ms=ns_to_ms(response.prompt_eval_duration, "prompt_eval_duration"),
            gen_ms=ns_to_ms(response.eval_duration, "eval_duration"),
        )

    def _map_error(self, exc: BaseException) -> BackendError:
        """Turn client, transport and decoding failures into the typed errors."""
        if isinstance(exc, ollama.ResponseError):
            return self._map_response_error(exc)
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return Timeout(f"no answer from {self.host} within {self.config.timeout_s:g} s")
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return ConnectionFailed(f"cannot reach Ollama at {self.host}: {type(exc).__name__}")
        if isinstance(exc, json.JSONDecodeError) and exc.doc.lstrip().startswith("<"):
            return BadResponse(
                "not an Ollama reply (HTML): Ollama sent a malformed response;"
                " is the host an Ollama server?"
            )
        if isinstance(exc, json.JSONDecodeError | ValidationError | ValueError | KeyError):
            return BadResponse(f"Ollama sent a malformed response: {str(exc)[:120]}")
        if isinstance(exc, httpx.HTTPError):
            return ConnectionFailed(f"HTTP failure talking to {self.host}: {type(exc).__name__}")
        return BackendError(f"unexpected {type(exc).__name__} from the Ollama client: {exc}")

    def _map_response_error(self, exc: ollama.ResponseError) -> BackendError:
        status = exc.status_code
        text = str(exc.error)[:200]
        if status == 404 or "not found" in text.lower():
            return ModelNotFound(
                f"model {self.config.model!r} is not on {self.host}: "
                f"run `ollama pull {self.config.model}` ({text})"
            )
        if status == 429:
            return RateLimited(f"Ollama is busy (429): {text}")
        if status in (401, 403):
            return AuthenticationFailed(f"Ollama refused the request ({status}): {text}")
        if 400 <= status < 500:
            return RequestRejected(f"Ollama rejected the request ({status}): {text}")
        # 5xx, or an error object in the middle of a stream (status -1): the runner failed.
        shown = status if status > 0 else None
        return ServerError(f"Ollama server error ({shown or 'in stream'}): {text}", status=shown)

    async def check(self) -> Health:
        """Reachable, and the model pulled (`GET /api/tags`), without loading the model."""
        try:
            listing = await self._list_models()
        except Exception as exc:
            error = exc if isinstance(exc, BackendError) else self._map_error(exc)
            return Health(False, f"{error.error_class}: {error}")
        if listing is None:
            return Health(True, f"{self.host} is up; its model list is over the 1 MB cap, not read")
        names = {entry.model for entry in listing.models if entry.model}
        wanted = self.config.model or ""
        if wanted in names or (":" not in wanted and f"{wanted}:latest" in names):
            return Health(True, f"{self.host} has {wanted}")
        return Health(False, f"{self.host} is up but has no {wanted!r}: run `ollama pull {wanted}`")

    async def _list_models(self) -> ollama.ListResponse | None:
        """`GET /api/tags` within the timeout, read through the 1 MB cap (None: over it).

        The client's own `list()` reads and inflates the whole body: a gzip bomb or a 300 MB
        list took gigabytes. Its httpx client (host, headers) is reused for the capped read.

        Raises:
            BackendError: The server's answer is an HTTP error or not a model list.
            Exception: Transport failures and timeouts, for `_map_error`.
        """
        client = self._get_client()
        inner = getattr(client, "_client", None)
        if not isinstance(inner, httpx.AsyncClient):  # another client version: its own read
            async with asyncio.timeout(self.config.timeout_s):
                return await client.list()
        reply = await get_capped(inner, "/api/tags", timeout_s=self.config.timeout_s)
        if reply.status != 200:
            said = quote_server(server_message(reply.text), None)
            raise self._map_response_error(ollama.ResponseError(said, reply.status))
        if not reply.complete:
            return None
        return ollama.ListResponse.model_validate_json(reply.body)

    async def aclose(self) -> None:
        """Close the HTTP client; a later route opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]
