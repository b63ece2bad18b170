"""Any OpenAI-compatible Chat Completions endpoint: OpenAI, Azure, vLLM, llama.cpp, LM Studio...

Servers differ in what they accept, so the backend negotiates once per instance and remembers:
structured output falls back from `json_schema` to `json_object` to the prompt alone, and
`logprobs` is dropped when a server rejects it. The routing pipeline is `backends.llm`'s;
this module is the Chat Completions wire format, its negotiation and its health check.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from backends import finetuned_wire
from backends.finetuned_wire import Answered, Ask
from backends.http_backend import HTTPBackend
from backends.http_common import join_url, mentions, quote_server, server_message
from backends.http_reading import FirstLine, WireReply, event_object, sse_events
from backends.llm import Completion as BaseCompletion
from backends.llm import Request
from backends.openai_reading import (
    no_stream,
    read_completion,
    str_or_none,
    take_timings,
    take_usage,
)
from backends.secrets import api_key
from tui.core.backend import (
    AuthenticationFailed,
    BadResponse,
    Health,
    ServerError,
    Stopwatch,
    StreamInterrupted,
)
from tui.core.config.options import OpenAIOptions

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.core.backend import RouteResult
    from tui.core.models import ConfidenceSource, Taxonomy, Ticket
    from tui.core.registry import Resolver

FormatMode = Literal["json_schema", "json_object", "none"]

EXPECTED = "an OpenAI-compatible reply"
"""How errors name what a 200 should have carried (an HTML login page is not it)."""
MAX_TOKENS = 200
"""A label and a confidence take ~20 tokens; the cap bounds cost and time of a runaway answer."""

FORMAT_REJECTION = ("response_format", "json_schema", "input should be 'text' or 'json_object'")
"""Phrases with which servers refuse a structured-output mode (llama-cpp-python says the last,
with HTTP 500)."""

LOGPROB_SLACK = 1e-6
"""Logprobs a hair above 0 are rounding; anything larger is not a log-probability."""

_NEXT_FORMAT: dict[FormatMode, FormatMode] = {"json_schema": "json_object", "json_object": "none"}
_LABEL_VALUE = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(slots=True)
class Completion(BaseCompletion):
    """One chat completion as the server gave it, with the answer's token logprobs."""

    token_logprobs: list[tuple[str, float]] = field(default_factory=list)


def _logprob_or_none(value: Any) -> float | None:
    """A token's logprob: finite and at most 0 (a probability ≤ 1), else unusable (None)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(float(value), 0.0) if value <= LOGPROB_SLACK else None
    return None


def label_logprob_confidence(tokens: list[tuple[str, float]]) -> float | None:
    """Probability the model gave the label: exp of the summed logprobs of its tokens.

    The tokens re-spell the answer; those overlapping the characters of the label's string value
    are summed. None when the answer cannot be located in the tokens.
    """
    if not tokens:
        return None
    text = "".join(token for token, _ in tokens)
    found = _LABEL_VALUE.search(text)
    if found is None or found.start(1) == found.end(1):
        return None
    start, end = found.start(1), found.end(1)
    total = 0.0
    covered = False
    position = 0
    for token, logprob in tokens:
        token_end = position + len(token)
        if token_end > start and position < end:
            total += logprob
            covered = True
        position = token_end
    if not covered or not math.isfinite(total):
        return None
    return min(max(math.exp(min(total, 0.0)), 0.0), 1.0)


class OpenAIBackend(HTTPBackend[Completion]):
    """Routes through `POST {base_url}/chat/completions`, streamed by default."""

    type = "openai"
    Options = OpenAIOptions
    config: OpenAIOptions
    token_sums = "all-or-none"
    server_times = "last"
    ttft_per_attempt = True
    expected = EXPECTED

    def __init__(self, config: OpenAIOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)
        self.format_mode: FormatMode = "json_schema"
        """Structured-output mode the endpoint accepts, learnt from its rejections."""
        self.logprobs_supported = True
        """False once the endpoint rejected `logprobs`."""
        self.token_param = "max_tokens"
        """Becomes `max_completion_tokens` for models that refuse `max_tokens` (OpenAI o-series)."""
        self.send_temperature = True
        """False once the model refused a temperature (reasoning models accept only the default)."""
        self.grammar_supported = True
        """`prompt = "finetuned"`: False once the server refused the `grammar` field."""

    def _key(self) -> SecretStr | None:
        """The API key; raises when a variable is configured but empty, never shows a value."""
        key = api_key(self.config)
        if key is None and self.config.api_key_env:
            raise AuthenticationFailed(f"key variable {self.config.api_key_env} is not set")
        return key

    def _headers(self, key: SecretStr | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        return headers

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": request.messages,
            self.token_param: MAX_TOKENS,
        }
        if self.send_temperature:
            body["temperature"] = self.config.temperature
        if self.format_mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "route", "strict": True, "schema": request.schema},
            }
        elif self.format_mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        if self.logprobs_supported:
            body["logprobs"] = True
            body["top_logprobs"] = 5
        if self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _token_confidence(self, final: Completion) -> tuple[float, ConfidenceSource | None] | None:
        confidence = label_logprob_confidence(final.token_logprobs)
        return None if confidence is None else (confidence, "logprob")

    async def _attempt(self, request: Request, watch: Stopwatch) -> Completion:
        """Send, stepping down optional features as the server refuses them.

        Each step only ever removes a feature, so the loop ends; a step is taken only if no
        concurrent call took it already. Every request is bounded by `timeout_s` on its own.
        """
        while True:
            sent_format = self.format_mode
            try:
                return await super()._attempt(request, watch)
            except _Refused as refused:
                if refused.feature == "format" and self.format_mode == sent_format:
                    self.format_mode = _NEXT_FORMAT[sent_format]
                elif refused.feature == "logprobs":
                    self.logprobs_supported = False
                elif refused.feature == "max_tokens":
                    self.token_param = "max_completion_tokens"
                elif refused.feature == "temperature":
                    self.send_temperature = False

    async def _exchange(self, request: Request, watch: Stopwatch) -> Completion:
        """One request; statuses and transport failures mapped by `HTTPBackend`."""
        url = join_url(self.config.base_url, "chat/completions")
        return await self.exchange_http(
            url,
            self._body(request),
            request.key,
            watch,
            stream=self._read_stream,
            payload=lambda data, key, _: self._read_message(data, key),
        )

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """`prompt = "finetuned"`: the trained prompt through `/completions` (see
        `backends.finetuned_wire`); otherwise the shared chat pipeline."""
        if self.config.prompt != "finetuned":
            return await super()._route(ticket, taxonomy)
        return await finetuned_wire.route_finetuned(self, ticket, taxonomy, self._ask_finetuned)

    def _completions_body(self, ask: Ask) -> dict[str, Any]:
        """A `/completions` request: the trained prompt, greedy, room for the longest label.

        `grammar` (the labels' GBNF) is a llama.cpp-family field (llama-server,
        llama-cpp-python); it is dropped once a server refuses it, and servers that ignore it
        answer unconstrained, so the answer is checked against the taxonomy either way.
        `logprobs: 1` asks for the generated tokens' log-probabilities (the confidence)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "prompt": ask.prompt,
            self.token_param: ask.max_tokens,
            "temperature": 0.0,
            "stream": False,
        }
        if self.grammar_supported:
            body["grammar"] = ask.grammar
        if self.logprobs_supported:
            body["logprobs"] = 1
        return body

    async def _ask_finetuned(self, ask: Ask, watch: Stopwatch) -> Answered:
        """One `/completions` exchange, stepping down refused optional fields (each step only
        removes one, so the loop ends)."""
        url = join_url(self.config.base_url, "completions")
        while True:
            try:
                return await self.exchange_http(
                    url,
                    self._completions_body(ask),
                    ask.key,
                    watch,
                    stream=no_stream,
                    payload=lambda data, key, _: read_completion(data, key, watch),
                )
            except _Refused as refused:
                if refused.feature == "grammar":
                    self.grammar_supported = False
                elif refused.feature == "logprobs":
                    self.logprobs_supported = False
                elif refused.feature == "max_tokens":
                    self.token_param = "max_completion_tokens"
                else:
                    raise BadResponse(f"the server refused {refused.feature}") from None

    def _streamed(self, content_type: str) -> bool:
        """A fine-tuned answer is a few tokens and is never streamed."""
        return self.config.prompt != "finetuned" and super()._streamed(content_type)

    def _refused(self, status: int, text: str) -> None:
        """Recognise a server refusing a feature we may drop, rather than the request itself."""
        if status not in (400, 422, 500):
            return
        if self.config.prompt == "finetuned":
            if self.grammar_supported and mentions(text, ("grammar",)):
                raise _Refused("grammar")
            if self.logprobs_supported and mentions(text, ("logprobs",)):
                raise _Refused("logprobs")
            if self.token_param == "max_tokens" and mentions(text, ("max_completion_tokens",)):
                raise _Refused("max_tokens")
            return
        if self.format_mode in _NEXT_FORMAT and mentions(text, FORMAT_REJECTION):
            raise _Refused("format")
        if self.token_param == "max_tokens" and mentions(text, ("max_completion_tokens",)):
            raise _Refused("max_tokens")
        if self.send_temperature and mentions(text, ("temperature",)):
            raise _Refused("temperature")
        if self.logprobs_supported and mentions(text, ("logprobs", "top_logprobs")):
            raise _Refused("logprobs")

    def _read_message(self, payload: dict[str, Any], key: SecretStr | None) -> Completion:
        if "error" in payload and "choices" not in payload:
            raise ServerError(f"server error: {quote_server(json.dumps(payload['error']), key)}")
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BadResponse("reply has no choices")
        message = choices[0].get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content:
            raise BadResponse("reply has no message content")
        completion = Completion(text=content, model=str_or_none(payload.get("model")))
        _take_logprobs(choices[0].get("logprobs"), completion)
        take_usage(payload.get("usage"), completion)
        take_timings(payload.get("timings"), completion)
        return completion

    async def _read_stream(
        self, response: WireReply, key: SecretStr | None, watch: Stopwatch
    ) -> Completion:
        parts: list[str] = []
        completion = Completion()
        saw_choices = False
        saw_event = False
        done = False
        finish_known = finished = False
        first = FirstLine()
        events = sse_events(response, first)
        try:
            async for event in events:
                saw_event = True
                if event.data.strip() == "[DONE]":
                    done = True
                    break
                chunk = event_object(event, "stream chunk", key)
                if "error" in chunk:
                    said = server_message(json.dumps(chunk))
                    raise ServerError(f"error inside the stream: {quote_server(said, key)}")
                completion.model = completion.model or str_or_none(chunk.get("model"))
                for choice in chunk.get("choices") or []:
                    saw_choices = True
                    if not isinstance(choice, dict):
                        continue
                    if "finish_reason" in choice:
                        finish_known = True
                        finished = finished or choice["finish_reason"] is not None
                    delta = choice.get("delta") or {}
                    piece = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(piece, str) and piece:
                        watch.mark_first()
                        parts.append(piece)
                    _take_logprobs(choice.get("logprobs"), completion)
                take_usage(chunk.get("usage"), completion)
                take_timings(chunk.get("timings"), completion)
        finally:
            await events.aclose()  # now, not by the loop's async-generator finalizer
        if not done:
            if not saw_event:
                first.raise_if_html(EXPECTED, key)
            raise BadResponse(
                "truncated stream: it ended without [DONE]", raw_output="".join(parts)
            )
        if not saw_choices:
            raise BadResponse("reply has no choices")
        completion.text = "".join(parts)
        if not completion.text:
            raise StreamInterrupted("truncated stream: no content before [DONE]")
        if finish_known and not finished:
            # Every chunk said finish_reason null, then [DONE]: the server stopped generating
            # (llama-cpp-python does when another request arrives), the answer is cut short.
            raise StreamInterrupted(
                "truncated stream: [DONE] before any finish_reason", raw_output=completion.text
            )
        return completion

    async def check(self) -> Health:
        """GET {base_url}/models: reachable, key accepted, model listed."""
        url = join_url(self.config.base_url, "models")
        found = await self.listed_models(url, "/models", unlisted=(404, 405, 501))
        if isinstance(found, Health):
            return found
        ids, key = found
        if not ids:
            return Health(True, "reachable (empty model list)")
        if self.model in ids:
            return Health(True, f"reachable, model {self.model} listed")
        shown = ", ".join(str(i) for i in ids[:5])
        said = f"reachable, but model {self.model} is not listed ({shown})"
        return Health(False, quote_server(said, key))


class _Refused(Exception):
    """The server refused an optional request feature; never leaves the module."""

    def __init__(
        self, feature: Literal["format", "logprobs", "max_tokens", "temperature", "grammar"]
    ) -> None:
        super().__init__(feature)
        self.feature = feature


def _take_logprobs(logprobs: Any, completion: Completion) -> None:
    if not isinstance(logprobs, dict):
        return
    for item in logprobs.get("content") or []:
        if isinstance(item, dict) and isinstance(item.get("token"), str):
            value = _logprob_or_none(item.get("logprob"))
            if value is not None:
                completion.token_logprobs.append((item["token"], value))
