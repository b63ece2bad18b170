"""Any OpenAI-compatible Chat Completions endpoint: OpenAI, Azure, vLLM, llama.cpp, LM Studio...

Servers differ in what they accept, so the backend negotiates once per instance and remembers:
structured output falls back from `json_schema` to `json_object` to the prompt alone, and
`logprobs` is dropped when a server rejects it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

from backends import numbers, retry
from backends.base import (
    AuthenticationFailed,
    BackendError,
    BadResponse,
    Health,
    RouteResult,
    ServerError,
    Stopwatch,
    Timeout,
)
from backends.http_common import (
    CappedReply,
    FirstLine,
    error_for_status,
    get_capped,
    iter_lines,
    iter_sse,
    join_url,
    load_json_object,
    looks_like_html,
    make_client,
    mentions,
    not_the_protocol,
    noting_first,
    quote_server,
    read_capped,
    read_error_text,
    server_message,
    transport_error,
)
from backends.prompt import answer_schema, build_prompt, parse_answer, repair_message
from backends.secrets import api_key, redact_error

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends import Resolver
    from tui.config import BackendConfig
    from tui.models import ConfidenceSource, Taxonomy, Ticket

FormatMode = Literal["json_schema", "json_object", "none"]

EXPECTED = "an OpenAI-compatible reply"
"""How errors name what a 200 should have carried (an HTML login page is not it)."""
MAX_LIST_TEXT = "1 MB"
"""The health check reads /models up to `http_common.MAX_RESPONSE_BYTES`, as routing does."""
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
class Completion:
    """One chat completion as the server gave it."""

    content: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    token_logprobs: list[tuple[str, float]] = field(default_factory=list)
    prompt_ms: float | None = None
    gen_ms: float | None = None


def _logprob_or_none(value: Any) -> float | None:
    """A token's logprob: finite and at most 0 (a probability ≤ 1), else unusable (None)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(float(value), 0.0) if value <= LOGPROB_SLACK else None
    return None


def _sum_or_none(*values: int | None) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


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


class OpenAIBackend:
    """Routes through `POST {base_url}/chat/completions`, streamed by default."""

    type = "openai"

    def __init__(self, config: BackendConfig, *, resolve: Resolver | None = None) -> None:
        self.name = config.name
        self.config = config
        self.format_mode: FormatMode = "json_schema"
        """Structured-output mode the endpoint accepts, learnt from its rejections."""
        self.logprobs_supported = True
        """False once the endpoint rejected `logprobs`."""
        self.token_param = "max_tokens"
        """Becomes `max_completion_tokens` for models that refuse `max_tokens` (OpenAI o-series)."""
        self.send_temperature = True
        """False once the model refused a temperature (reasoning models accept only the default)."""
        self.retry_base_delay = retry.BASE_DELAY_S
        """Backoff base for retries; tests make it tiny."""
        self.retry_sleep = asyncio.sleep
        """How retries wait; tests swap it to record the delays."""
        self._client: httpx.AsyncClient | None = None

    @property
    def model(self) -> str:
        return self.config.model_name

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

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

    def _body(self, messages: list[dict[str, str]], taxonomy: Taxonomy) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            self.token_param: MAX_TOKENS,
        }
        if self.send_temperature:
            body["temperature"] = self.config.temperature
        schema = answer_schema(taxonomy)
        if self.format_mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "route", "strict": True, "schema": schema},
            }
        elif self.format_mode == "json_object":
            body["response_format"] = {"type": "json_object", "schema": schema}
        if self.logprobs_supported:
            body["logprobs"] = True
            body["top_logprobs"] = 5
        if self.config.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket (see `_route`); no error leaves with the key in its text."""
        try:
            return await self._route(ticket, taxonomy)
        except BackendError as error:
            redact_error(error, api_key(self.config))
            raise

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket; one repair round when the first answer is unusable.

        `total_ms` spans the whole call, retries and repair included, since the ticket waited
        that long; `ttft_ms` is measured on the attempt that answered.

        Raises:
            BackendError: Transport, HTTP or answer failures, typed as in `backends.base`.
        """
        key = self._key()
        prompt = build_prompt(ticket, taxonomy, max_chars=self.config.max_prompt_chars)
        messages = prompt.messages()
        watch = Stopwatch()
        first = await self._complete_with_retries(messages, taxonomy, key, watch, fresh=True)
        completions = [first]
        try:
            answer = parse_answer(first.content, taxonomy)
        except BadResponse as err:
            messages = [
                *messages,
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": repair_message(str(err))},
            ]
            second = await self._complete_with_retries(messages, taxonomy, key, watch, fresh=False)
            completions.append(second)
            answer = parse_answer(second.content, taxonomy)
        final = completions[-1]
        confidence: float | None = label_logprob_confidence(final.token_logprobs)
        source: ConfidenceSource | None = "logprob"
        if confidence is None:
            confidence = answer.confidence
            source = "self-reported" if confidence is not None else None
        return RouteResult(
            label=answer.label,
            confidence=confidence,
            confidence_source=source,
            reason=answer.reason,
            raw_output=final.content,
            model=final.model or self.config.model_name,
            prompt_version=prompt.version,
            input_tokens=_sum_or_none(*(c.input_tokens for c in completions)),
            output_tokens=_sum_or_none(*(c.output_tokens for c in completions)),
            cached_input_tokens=_sum_or_none(*(c.cached_tokens for c in completions)),
            total_ms=watch.elapsed_ms(),
            ttft_ms=watch.ttft_ms(),
            server_prompt_ms=final.prompt_ms,
            server_gen_ms=final.gen_ms,
        )

    async def _complete_with_retries(
        self,
        messages: list[dict[str, str]],
        taxonomy: Taxonomy,
        key: SecretStr | None,
        watch: Stopwatch,
        *,
        fresh: bool,
    ) -> Completion:
        async def attempt() -> Completion:
            if fresh:
                watch.first = None  # time to first token counts for the attempt that answered
            return await self._negotiate(messages, taxonomy, key, watch)

        return await retry.with_retries(
            attempt,
            max_retries=self.config.max_retries,
            base_delay=self.retry_base_delay,
            sleep=self.retry_sleep,
        )

    async def _negotiate(
        self,
        messages: list[dict[str, str]],
        taxonomy: Taxonomy,
        key: SecretStr | None,
        watch: Stopwatch,
    ) -> Completion:
        """Send, stepping down optional features as the server refuses them.

        Each step only ever removes a feature, so the loop ends; a step is taken only if no
        concurrent call took it already.
        """
        while True:
            sent_format = self.format_mode
            try:
                return await self._complete(messages, taxonomy, key, watch)
            except _Refused as refused:
                if refused.feature == "format" and self.format_mode == sent_format:
                    self.format_mode = _NEXT_FORMAT[sent_format]
                elif refused.feature == "logprobs":
                    self.logprobs_supported = False
                elif refused.feature == "max_tokens":
                    self.token_param = "max_completion_tokens"
                elif refused.feature == "temperature":
                    self.send_temperature = False

    async def _complete(
        self,
        messages: list[dict[str, str]],
        taxonomy: Taxonomy,
        key: SecretStr | None,
        watch: Stopwatch,
    ) -> Completion:
        """One request, bounded as a whole by `timeout_s`: httpx's timeout is per read, so a
        server trickling a byte a second, or sending SSE keep-alive comments forever, held a
        ticket for as long as it liked."""
        url = join_url(self.config.base_url or "", "chat/completions")
        body = self._body(messages, taxonomy)
        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                self._client_now().stream(
                    "POST", url, json=body, headers=self._headers(key)
                ) as response,
            ):
                if response.status_code != 200:
                    text = await read_error_text(response)
                    self._raise_if_refused(response.status_code, text)
                    raise error_for_status(
                        response.status_code,
                        text,
                        response.headers,
                        key=key,
                        model=self.config.model,
                    )
                content_type = response.headers.get("content-type", "").lower()
                if "html" in content_type:
                    raise not_the_protocol(await read_error_text(response), EXPECTED, key)
                if self.config.stream and "json" not in content_type:
                    return await self._read_stream(response, key, watch)
                payload = load_json_object(await read_capped(response), expected=EXPECTED, key=key)
                return self._read_message(payload, key)
        except httpx.HTTPError as exc:
            raise transport_error(exc, key) from None
        except TimeoutError:
            raise Timeout(
                f"no complete answer within {self.config.timeout_s:g} s (timeout_s)"
            ) from None

    def _raise_if_refused(self, status: int, text: str) -> None:
        """Recognise a server refusing a feature we may drop, rather than the request itself."""
        if status not in (400, 422, 500):
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
        completion = Completion(content=content, model=_str_or_none(payload.get("model")))
        _take_logprobs(choices[0].get("logprobs"), completion)
        _take_usage(payload.get("usage"), completion)
        _take_timings(payload.get("timings"), completion)
        return completion

    async def _read_stream(
        self, response: httpx.Response, key: SecretStr | None, watch: Stopwatch
    ) -> Completion:
        parts: list[str] = []
        completion = Completion(content="")
        saw_choices = False
        saw_event = False
        done = False
        first = FirstLine()
        async for event in iter_sse(noting_first(iter_lines(response), first)):
            saw_event = True
            if event.data.strip() == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(event.data)
            except json.JSONDecodeError:
                said = quote_server(event.data, key, limit=80)
                raise BadResponse(f"stream chunk is not JSON: {said!r}") from None
            if not isinstance(chunk, dict):
                raise BadResponse("stream chunk is not an object")
            if "error" in chunk:
                said = server_message(json.dumps(chunk))
                raise ServerError(f"error inside the stream: {quote_server(said, key)}")
            completion.model = completion.model or _str_or_none(chunk.get("model"))
            for choice in chunk.get("choices") or []:
                saw_choices = True
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(piece, str) and piece:
                    watch.mark_first()
                    parts.append(piece)
                _take_logprobs(choice.get("logprobs"), completion)
            _take_usage(chunk.get("usage"), completion)
            _take_timings(chunk.get("timings"), completion)
        if not done:
            if not saw_event and first.text is not None and looks_like_html(first.text):
                raise not_the_protocol(first.text, EXPECTED, key)
            raise BadResponse(
                "truncated stream: it ended without [DONE]", raw_output="".join(parts)
            )
        if not saw_choices:
            raise BadResponse("reply has no choices")
        completion.content = "".join(parts)
        if not completion.content:
            raise BadResponse("truncated stream: no content before [DONE]")
        return completion

    async def check(self) -> Health:
        """GET {base_url}/models: reachable, key accepted, model listed."""
        try:
            key = self._key()
        except AuthenticationFailed as err:
            return Health(False, str(err))
        url = join_url(self.config.base_url or "", "models")
        try:
            reply = await get_capped(
                self._client_now(), url, headers=self._headers(key), timeout_s=self.config.timeout_s
            )
        except httpx.HTTPError as exc:
            return Health(False, _health_transport(exc, key))
        except TimeoutError:
            return Health(
                False, f"timed out (no complete answer within {self.config.timeout_s:g} s)"
            )
        except Exception as exc:  # check() must answer, whatever the URL or server did
            return Health(False, quote_server(f"{type(exc).__name__}: {exc}", key))
        return _health_from_models(reply, self.model, key)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class _Refused(Exception):
    """The server refused an optional request feature; never leaves the module."""

    def __init__(self, feature: Literal["format", "logprobs", "max_tokens", "temperature"]) -> None:
        super().__init__(feature)
        self.feature = feature


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _take_logprobs(logprobs: Any, completion: Completion) -> None:
    if not isinstance(logprobs, dict):
        return
    for item in logprobs.get("content") or []:
        if isinstance(item, dict) and isinstance(item.get("token"), str):
            value = _logprob_or_none(item.get("logprob"))
            if value is not None:
                completion.token_logprobs.append((item["token"], value))


def _take_usage(usage: Any, completion: Completion) -> None:
    """Token counts, each validated (`backends.numbers`): a bad one fails the ticket.

    Raises:
        BadResponse: A count that is not a whole number within 0..10**9, naming its field.
    """
    if not isinstance(usage, dict):
        return
    completion.input_tokens = numbers.count(usage.get("prompt_tokens"), "usage.prompt_tokens")
    completion.output_tokens = numbers.count(
        usage.get("completion_tokens"), "usage.completion_tokens"
    )
    details = usage.get("prompt_tokens_details")
    cached = (
        numbers.count(details.get("cached_tokens"), "usage.prompt_tokens_details.cached_tokens")
        if isinstance(details, dict)
        else None
    )
    completion.cached_tokens = cached if cached is not None else 0


def _take_timings(timings: Any, completion: Completion) -> None:
    """llama.cpp's server adds `timings` (prompt_ms, predicted_ms) to OpenAI-style replies.

    Raises:
        BadResponse: A timing that is not a finite duration within a day, naming its field.
    """
    if isinstance(timings, dict):
        completion.prompt_ms = numbers.duration(timings.get("prompt_ms"), "timings.prompt_ms")
        completion.gen_ms = numbers.duration(timings.get("predicted_ms"), "timings.predicted_ms")


def _health_transport(exc: httpx.HTTPError, key: SecretStr | None) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused ({quote_server(str(exc), key, limit=80)})"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(transport_error(exc, key))


def _health_from_models(reply: CappedReply, model: str, key: SecretStr | None) -> Health:
    status = reply.status
    if status in (401, 403):
        return Health(False, f"key rejected (HTTP {status})")
    if status in (404, 405, 501):
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
            return Health(
                False, f"reachable, but /models is {not_the_protocol(reply.body, EXPECTED, key)}"
            )
        return Health(False, "reachable, but /models did not answer JSON")
    items = data.get("data") if isinstance(data, dict) else None
    ids = [
        item.get("id")
        for item in (items if isinstance(items, list) else [])
        if isinstance(item, dict)
    ]
    if not ids:
        return Health(True, "reachable (empty model list)")
    if model in ids:
        return Health(True, f"reachable, model {model} listed")
    shown = ", ".join(str(i) for i in ids[:5])
    return Health(False, quote_server(f"reachable, but model {model} is not listed ({shown})", key))
