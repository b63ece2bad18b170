"""Anthropic's Messages API, with the answer forced through a single tool for structured output.

Token accounting: Anthropic reports fresh, cache-read and cache-written input tokens
separately. `input_tokens` here is their sum (every prompt token the model read) and
`cached_input_tokens` the cache reads, so `tui.core.costs` bills reads at the cached price and
the rest at the input price (cache writes, billed 1.25x by Anthropic, count as plain input).
The routing pipeline is `backends.llm`'s; this module is the Messages wire format.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backends.http_backend import HTTPBackend
from backends.http_common import join_url, quote_server, server_message
from backends.http_reading import FirstLine, WireReply, event_object, sse_events
from backends.llm import Completion, Message, Request
from backends.secrets import api_key
from tui.core import numbers
from tui.core.backend import AuthenticationFailed, BadResponse, Health, ServerError, Stopwatch
from tui.core.config.options import AnthropicOptions
from tui.core.prompt import Prompt

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.core.registry import Resolver

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
MAX_TOKENS = 200
"""A forced tool call with a label and a confidence takes ~40 tokens; this bounds a runaway."""
EXPECTED = "an Anthropic Messages API reply"
"""How errors name what a 200 should have carried (an HTML page is not it)."""
TOOL_NAME = "route_ticket"
TOOL_DESCRIPTION = "Record the one label of the list that fits the ticket, with your confidence."
SERVER_SIDE_ERRORS = ("overloaded_error", "api_error", "internal_server_error", "timeout_error")
"""Error types inside a stream that are the server's fault, hence worth a retry."""


@dataclass(slots=True)
class Reply(Completion):
    """One Messages API reply: the answer (tool input as JSON, or text) and its usage.

    `input_tokens` becomes the sum of fresh, cache-read and cache-written tokens once the
    reply is complete (`settle`), `cached_tokens` the cache reads.
    """

    tool_id: str | None = None
    tool_input: dict[str, Any] | None = None
    fresh_input: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None

    def settle(self) -> Reply:
        """Fold the three input counts into the pipeline's `input_tokens`/`cached_tokens`."""
        if self.fresh_input is not None:
            self.input_tokens = self.fresh_input + (self.cache_read or 0) + (self.cache_write or 0)
        self.cached_tokens = self.cache_read or 0
        return self


class AnthropicBackend(HTTPBackend[Reply]):
    """Routes through `POST {base_url}/v1/messages`, streamed by default."""

    type = "anthropic"
    Options = AnthropicOptions
    config: AnthropicOptions
    token_sums = "all-or-none"
    ttft_per_attempt = True
    expected = EXPECTED

    def __init__(self, config: AnthropicOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)

    @property
    def _base_url(self) -> str:
        return self.config.base_url or DEFAULT_BASE_URL

    def _key(self) -> SecretStr | None:
        """The key; Anthropic's own API always needs one, a custom proxy may not."""
        variable = self.config.api_key_env
        if variable is None and self.config.base_url is None:
            variable = DEFAULT_KEY_ENV
        config = self.config
        if variable != config.api_key_env:
            config = config.model_copy(update={"api_key_env": variable})
        key = api_key(config)
        if key is None and variable:
            raise AuthenticationFailed(f"key variable {variable} is not set")
        return key

    def _headers(self, key: SecretStr | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, "Accept": "application/json"}
        if key is not None:
            headers["x-api-key"] = key.get_secret_value()
        return headers

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": MAX_TOKENS,
            "temperature": self.config.temperature,
            "system": request.prompt.system,
            "messages": request.messages,
            "tools": [
                {
                    "name": TOOL_NAME,
                    "description": TOOL_DESCRIPTION,
                    "input_schema": request.schema,
                }
            ],
            "tool_choice": {"type": "tool", "name": TOOL_NAME},
        }
        if self.config.stream:
            body["stream"] = True
        return body

    def _messages(self, prompt: Prompt) -> list[Message]:
        """The system prompt travels in the body's `system`, not as a turn."""
        return [{"role": "user", "content": prompt.user}]

    def _repair_turns(self, rejected: Reply, problem: str) -> list[Message]:
        return _repair_turns(rejected, problem)

    async def _exchange(self, request: Request, watch: Stopwatch) -> Reply:
        """One request; statuses and transport failures mapped by `HTTPBackend`."""
        return await self.exchange_http(
            join_url(self._base_url, "v1/messages"),
            self._body(request),
            request.key,
            watch,
            stream=self._read_stream,
            payload=lambda data, key, _: _read_message(data, key),
        )

    async def _read_stream(
        self, response: WireReply, key: SecretStr | None, watch: Stopwatch
    ) -> Reply:
        reply = Reply()
        tool_json: list[str] = []
        text: list[str] = []
        stopped = False
        first = FirstLine()
        events = sse_events(response, first)
        try:
            async for event in events:
                data = event_object(event, "stream event", key)
                kind = data.get("type") or event.event
                if kind == "message_start":
                    message = data.get("message") or {}
                    reply.model = message.get("model") if isinstance(message, dict) else None
                    _take_usage(message.get("usage") if isinstance(message, dict) else None, reply)
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if isinstance(block, dict) and block.get("type") == "tool_use":
                        reply.tool_id = block.get("id")
                elif kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if not isinstance(delta, dict):
                        continue
                    if delta.get("type") == "input_json_delta":
                        watch.mark_first()
                        tool_json.append(str(delta.get("partial_json") or ""))
                    elif delta.get("type") == "text_delta":
                        watch.mark_first()
                        text.append(str(delta.get("text") or ""))
                elif kind == "message_delta":
                    _take_usage(data.get("usage"), reply)
                elif kind == "message_stop":
                    stopped = True
                    break
                elif kind == "error":
                    raise _stream_error(data, key)
        finally:
            await events.aclose()  # now, not by the loop's async-generator finalizer
        if not stopped:
            if reply.model is None:
                first.raise_if_html(EXPECTED, key)
            raise BadResponse("truncated stream: it ended without message_stop")
        if reply.tool_id is not None:
            reply.text = "".join(tool_json)
            try:
                parsed = json.loads(reply.text)
            except (ValueError, RecursionError):
                parsed = None
            reply.tool_input = parsed if isinstance(parsed, dict) else None
        else:
            reply.text = "".join(text)
        if not reply.text:
            raise BadResponse("truncated stream: no content before message_stop")
        return reply.settle()

    async def check(self) -> Health:
        """GET {base_url}/v1/models: reachable, key accepted, model known."""
        found = await self.listed_models(join_url(self._base_url, "v1/models"), "/v1/models")
        if isinstance(found, Health):
            return found
        listed, key = found
        ids = [str(item) for item in listed]
        if self.model in ids:
            return Health(True, f"reachable, model {self.model} listed")
        if not ids or self.model.endswith("-latest") or any(i.startswith(self.model) for i in ids):
            # aliases such as claude-3-5-haiku-latest are accepted but not listed
            return Health(True, f"reachable, model {self.model} accepted as an alias")
        shown = ", ".join(ids[:5])
        return Health(
            False, quote_server(f"reachable, but model {self.model} is not listed ({shown})", key)
        )


def _take_usage(usage: Any, reply: Reply) -> None:
    """Usage arrives in message_start (input side) and message_delta (output, cumulative).

    Raises:
        BadResponse: A count that is not a whole number within 0..10**9, naming its field.
    """
    if not isinstance(usage, dict):
        return
    for field_name, attr in (
        ("input_tokens", "fresh_input"),
        ("output_tokens", "output_tokens"),
        ("cache_read_input_tokens", "cache_read"),
        ("cache_creation_input_tokens", "cache_write"),
    ):
        value = numbers.count(usage.get(field_name), f"usage.{field_name}")
        if value is not None:
            setattr(reply, attr, value)


def _read_message(payload: dict[str, Any], key: SecretStr | None) -> Reply:
    if payload.get("type") == "error":
        raise _stream_error(payload, key)
    blocks = payload.get("content")
    if not isinstance(blocks, list) or not blocks:
        raise BadResponse("reply has no content blocks")
    reply = Reply(model=payload.get("model") if isinstance(payload.get("model"), str) else None)
    _take_usage(payload.get("usage"), reply)
    texts: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
            reply.tool_id = block.get("id")
            reply.tool_input = block["input"]
            reply.text = json.dumps(block["input"])
            return reply.settle()
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
    reply.text = "".join(texts)
    if not reply.text:
        raise BadResponse("reply has neither a tool call nor text")
    return reply.settle()


def _stream_error(data: dict[str, Any], key: SecretStr | None) -> ServerError | BadResponse:
    error = data.get("error")
    kind = str(error.get("type", "error")) if isinstance(error, dict) else "error"
    said = quote_server(server_message(json.dumps(data)), key)
    if kind in SERVER_SIDE_ERRORS:
        return ServerError(f"{kind}: {said}", status=529 if kind == "overloaded_error" else None)
    return BadResponse(f"{kind}: {said}")


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities spelled as strings, so the echoed tool call is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _repair_turns(reply: Reply, problem: str) -> list[dict[str, Any]]:
    """The rejected answer and the complaint, in the shape the API requires after a tool call."""
    if reply.tool_id and reply.tool_input is not None:
        return [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": reply.tool_id,
                        "name": TOOL_NAME,
                        "input": _json_safe(reply.tool_input),
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": reply.tool_id,
                        "content": problem,
                        "is_error": True,
                    }
                ],
            },
        ]
    return [
        {"role": "assistant", "content": reply.text or "(no answer)"},
        {"role": "user", "content": problem},
    ]
