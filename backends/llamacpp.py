"""llama.cpp's own server through its native `POST /completion` endpoint.

The native API (rather than its OpenAI-compatible `/v1`) takes a JSON schema that the server
compiles into a grammar, reports token probabilities for the label's own tokens, keeps the
prompt prefix cached between tickets and returns its timings in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from backends import numbers
from backends.base import (
    BackendError,
    BadResponse,
    Health,
    RouteResult,
    ServerError,
    Stopwatch,
    Timeout,
)
from backends.http_common import (
    MAX_ERROR_BYTES,
    FirstLine,
    error_for_status,
    get_capped,
    iter_lines,
    iter_sse,
    join_url,
    load_json_object,
    looks_like_html,
    make_client,
    not_the_protocol,
    noting_first,
    quote_server,
    read_capped,
    read_error_text,
    server_message,
    transport_error,
)
from backends.prompt import answer_schema, build_prompt, parse_answer, repair_message
from backends.retry import BASE_DELAY_S, with_retries
from backends.secrets import api_key, redact_error

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends import Resolver
    from tui.config import BackendConfig
    from tui.models import ConfidenceSource, Taxonomy, Ticket

EXPECTED = "a llama.cpp server reply"
"""How errors name what a 200 should have carried (an HTML page is not it)."""
N_PREDICT = 200
"""Most tokens generated; an answer takes about 20."""
N_PROBS = 5
"""Top candidates the server reports per generated token (the sampled one is what we read)."""

_LABEL_VALUE = re.compile(r'"label"\s*:\s*"((?:[^"\\]|\\.)*)"')


_FORGED_TURN = re.compile(
    r"^#{3}(?=\s*(?:system|user|assistant)\s*:)", re.IGNORECASE | re.MULTILINE
)
"""A line inside a turn that would read as a role header: a ticket forging a system turn."""
_BROKEN_HEADER = "##\u200b#"


def format_turns(turns: list[tuple[str, str]]) -> str:
    """Render chat turns as plain text for a raw-completion endpoint.

    A neutral role-headed layout, since `/completion` applies no chat template; the schema
    grammar constrains the answer whatever the model's native template would have been.
    """
    parts = [
        f"### {role.capitalize()}:\n{_FORGED_TURN.sub(_BROKEN_HEADER, text)}\n"
        for role, text in turns
    ]
    return "\n".join(parts) + "\n### Assistant:\n"


@dataclass(slots=True)
class Completion:
    """What one `/completion` exchange produced."""

    text: str = ""
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_ms: float | None = None
    gen_ms: float | None = None
    token_probs: list[tuple[str, float]] = field(default_factory=list)
    probs_source: ConfidenceSource | None = None

    def take_final(self, data: dict[str, Any]) -> None:
        """Read usage and timings from the last (or only) object of a completion.

        Raises:
            BadResponse: A count or timing out of bounds (`backends.numbers`), naming it.
        """
        found = data.get("timings")
        timings: dict[str, Any] = found if isinstance(found, dict) else {}
        self.input_tokens = numbers.count(
            data.get("tokens_evaluated"), "tokens_evaluated"
        ) or numbers.count(timings.get("prompt_n"), "timings.prompt_n")
        self.output_tokens = numbers.count(
            data.get("tokens_predicted"), "tokens_predicted"
        ) or numbers.count(timings.get("predicted_n"), "timings.predicted_n")
        self.cached_tokens = numbers.count(timings.get("cache_n"), "timings.cache_n")
        self.prompt_ms = numbers.duration(timings.get("prompt_ms"), "timings.prompt_ms")
        self.gen_ms = numbers.duration(timings.get("predicted_ms"), "timings.predicted_ms")
        if isinstance(data.get("model"), str):
            self.model = data["model"]

    def take_probs(self, entries: Any) -> None:
        """Collect the sampled tokens' probabilities, in any of the server's formats."""
        if not isinstance(entries, list):
            return
        for entry in entries:
            if isinstance(entry, dict):
                found = _sampled_probability(entry)
                if found is not None:
                    token, probability, source = found
                    self.token_probs.append((token, probability))
                    self.probs_source = self.probs_source or source


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _probability(value: Any) -> float | None:
    """A probability within [0, 1], else unusable (None)."""
    number = _float(value)
    return number if number is not None and 0.0 <= number <= 1.0 else None


def _sampled_probability(entry: dict[str, Any]) -> tuple[str, float, ConfidenceSource] | None:
    """One `completion_probabilities` item as (token text, probability, source).

    Current servers send `{"token", "logprob"}` (or `"prob"` with `post_sampling_probs`);
    older ones sent `{"content", "probs": [{"tok_str", "prob"}]}`.
    """
    token = entry.get("token", entry.get("content"))
    if not isinstance(token, str):
        return None
    logprob = _float(entry.get("logprob"))
    if logprob is not None:
        return token, math.exp(min(logprob, 0.0)), "logprob"
    prob = _probability(entry.get("prob"))
    if prob is not None:
        return token, prob, "probability"
    candidates = entry.get("probs")
    for candidate in candidates if isinstance(candidates, list) else ():
        if isinstance(candidate, dict) and candidate.get("tok_str") == token:
            prob = _probability(candidate.get("prob"))
            if prob is not None:
                return token, prob, "probability"
    return None


def label_probability(token_probs: list[tuple[str, float]]) -> float | None:
    """Probability of the label as generated: the product over the tokens that spell it.

    Tokens are laid end to end; those overlapping the label's characters inside
    `"label": "..."` count. None when the label cannot be located in the tokens.
    """
    text = "".join(token for token, _ in token_probs)
    match = _LABEL_VALUE.search(text)
    if match is None or match.start(1) == match.end(1):
        return None
    start, end = match.span(1)
    probability = 1.0
    position = 0
    for token, token_probability in token_probs:
        token_end = position + len(token)
        if token_end > start and position < end:
            probability *= token_probability
        position = token_end
    return min(max(probability, 0.0), 1.0)


class LlamaCppServerBackend:
    """Routes tickets through `llama-server` (llama.cpp) on its native API."""

    type = "llamacpp"
    retry_base_delay_s: float = BASE_DELAY_S
    """Backoff base of the shared retry loop; tests shrink it."""

    def __init__(self, config: BackendConfig, *, resolve: Resolver | None = None) -> None:
        self.config = config
        self.name = config.name or config.type
        self.base_url = config.base_url or "http://127.0.0.1:8080"
        self._client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(config.max_concurrency)

    @property
    def model(self) -> str:
        return self.config.model_name

    def _client_now(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

    def _headers(self, key: SecretStr | None) -> dict[str, str]:
        # llama-server started with --api-key expects it as a bearer token.
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket (see `_route`); no error leaves with the key in its text."""
        try:
            return await self._route(ticket, taxonomy)
        except BackendError as error:
            redact_error(error, api_key(self.config))
            raise

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket; one repair round when the answer is malformed.

        Raises:
            BackendError: A typed error for every failure.
        """
        prompt = build_prompt(ticket, taxonomy, max_chars=self.config.max_prompt_chars)
        schema = answer_schema(taxonomy)
        turns = [("system", prompt.system), ("user", prompt.user)]
        watch = Stopwatch()
        done: list[Completion] = []
        async with self._slots:
            done.append(await self._complete_with_retries(format_turns(turns), schema, watch))
            try:
                answer = parse_answer(done[-1].text, taxonomy)
            except BadResponse as problem:
                turns += [("assistant", done[-1].text), ("user", repair_message(str(problem)))]
                repaired = await self._complete_with_retries(format_turns(turns), schema, watch)
                done.append(repaired)
                answer = parse_answer(repaired.text, taxonomy)
        last = done[-1]
        confidence: float | None = answer.confidence
        source: ConfidenceSource | None = "self-reported" if confidence is not None else None
        from_tokens = label_probability(last.token_probs)
        if from_tokens is not None:
            confidence, source = from_tokens, last.probs_source
        return RouteResult(
            label=answer.label,
            confidence=confidence,
            confidence_source=source,
            reason=answer.reason,
            raw_output=last.text,
            model=self.config.model or last.model or self.model,
            prompt_version=prompt.version,
            input_tokens=_sum(c.input_tokens for c in done),
            output_tokens=_sum(c.output_tokens for c in done),
            cached_input_tokens=_sum(c.cached_tokens for c in done),
            total_ms=watch.elapsed_ms(),
            ttft_ms=watch.ttft_ms(),
            server_prompt_ms=_sum(c.prompt_ms for c in done),
            server_gen_ms=_sum(c.gen_ms for c in done),
        )

    async def _complete_with_retries(
        self, text: str, schema: dict[str, Any], watch: Stopwatch
    ) -> Completion:
        return await with_retries(
            lambda: self._complete(text, schema, watch),
            max_retries=self.config.max_retries,
            base_delay=self.retry_base_delay_s,
        )

    async def _complete(self, text: str, schema: dict[str, Any], watch: Stopwatch) -> Completion:
        """One `/completion` request, bounded as a whole by the timeout, errors mapped."""
        key = api_key(self.config)
        body = {
            "prompt": text,
            "json_schema": schema,
            "n_predict": N_PREDICT,
            "temperature": self.config.temperature,
            "n_probs": N_PROBS,
            "cache_prompt": True,
            "stream": self.config.stream,
        }
        url = join_url(self.base_url, "completion")
        try:
            async with (
                asyncio.timeout(self.config.timeout_s),
                self._client_now().stream(
                    "POST", url, json=body, headers=self._headers(key)
                ) as response,
            ):
                if response.status_code != 200:
                    said = await read_error_text(response)
                    raise error_for_status(
                        response.status_code, said, response.headers, key=key, model=None
                    )
                if "html" in response.headers.get("content-type", "").lower():
                    raise not_the_protocol(await read_error_text(response), EXPECTED, key)
                if self.config.stream:
                    return await self._read_stream(response, watch, key)
                payload = load_json_object(
                    await read_capped(response), "completion", expected=EXPECTED, key=key
                )
                watch.mark_first()
                return self._read_payload(payload)
        except BackendError:
            raise
        except httpx.HTTPError as exc:
            raise transport_error(exc, key) from exc
        except TimeoutError:
            raise Timeout(
                f"no complete answer from {url} within {self.config.timeout_s:g} s"
            ) from None

    def _read_payload(self, payload: dict[str, Any]) -> Completion:
        content = payload.get("content")
        if not isinstance(content, str):
            raise BadResponse("completion has no string 'content'")
        completion = Completion(text=content)
        completion.take_final(payload)
        completion.take_probs(payload.get("completion_probabilities"))
        return completion

    async def _read_stream(
        self, response: httpx.Response, watch: Stopwatch, key: SecretStr | None
    ) -> Completion:
        """Server-sent events: `data: {content, completion_probabilities}` then `stop: true`."""
        completion = Completion()
        pieces: list[str] = []
        first = FirstLine()
        seen = False
        async for event in iter_sse(noting_first(iter_lines(response), first)):
            seen = True
            chunk = load_json_object(event.data.encode(), "stream event")
            if "error" in chunk:
                error = chunk["error"]
                status = error.get("code") if isinstance(error, dict) else None
                said = quote_server(server_message(event.data), key)
                if isinstance(status, int) and status != 200:
                    raise error_for_status(status, event.data, response.headers, key=key)
                raise ServerError(f"error in stream: {said}")
            content = chunk.get("content")
            if isinstance(content, str) and content:
                watch.mark_first()
                pieces.append(content)
            completion.take_probs(chunk.get("completion_probabilities"))
            if chunk.get("stop") is True:
                completion.take_final(chunk)
                completion.text = "".join(pieces)
                return completion
        if not seen and first.text is not None and looks_like_html(first.text):
            raise not_the_protocol(first.text, EXPECTED, key)
        raise BadResponse("the stream ended without its final 'stop' event")

    async def check(self) -> Health:
        """`GET /health`: 200 when a model is loaded, 503 while it is loading."""
        key = api_key(self.config)
        url = join_url(self.base_url, "health")
        try:
            reply = await get_capped(
                self._client_now(),
                url,
                headers=self._headers(key),
                timeout_s=self.config.timeout_s,
                limit=MAX_ERROR_BYTES,  # only the status counts; the text is quoted, shortened
            )
        except httpx.HTTPError as exc:
            error = transport_error(exc, key)
            return Health(False, f"{error.error_class}: {error}")
        except TimeoutError:
            return Health(False, f"Timeout: no answer from {url} in {self.config.timeout_s:g} s")
        except BackendError as error:
            return Health(False, f"{error.error_class}: {quote_server(str(error), key)}")
        said = quote_server(server_message(reply.text), key)
        if reply.status == 200:
            return Health(True, f"{self.base_url} is up ({said or 'ok'})")
        return Health(False, f"{self.base_url}/health answered HTTP {reply.status}: {said}")

    async def aclose(self) -> None:
        """Close the HTTP client; a later route opens a new one."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _sum(values: Any) -> Any:
    present = [value for value in values if value is not None]
    return sum(present) if present else None
