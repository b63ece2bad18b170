"""llama.cpp's own server through its native `POST /completion` endpoint.

The native API (rather than its OpenAI-compatible `/v1`) takes a JSON schema that the server
compiles into a grammar, reports token probabilities for the label's own tokens, keeps the
prompt prefix cached between tickets and returns its timings in milliseconds. The routing
pipeline is `backends.llm`'s; this module is the `/completion` wire format.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from backends import finetuned_wire
from backends.finetuned_wire import Answered, Ask
from backends.http_backend import HTTPBackend
from backends.http_common import (
    MAX_ERROR_BYTES,
    error_for_status,
    join_url,
    load_json_object,
    quote_server,
    server_message,
    transport_error,
)
from backends.http_reading import FirstLine, WireReply, get_capped, sse_events
from backends.llm import Completion as BaseCompletion
from backends.llm import Request
from backends.secrets import api_key
from tui.core import numbers
from tui.core.backend import (
    BackendError,
    BadResponse,
    Health,
    ServerError,
    Stopwatch,
    Timeout,
)
from tui.core.config.options import LlamaCppOptions

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.core.backend import RouteResult
    from tui.core.models import ConfidenceSource, Taxonomy, Ticket
    from tui.core.registry import Resolver

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
class Completion(BaseCompletion):
    """What one `/completion` exchange produced, with the sampled tokens' probabilities."""

    token_probs: list[tuple[str, float]] = field(default_factory=list)
    probs_source: ConfidenceSource | None = None

    def take_final(self, data: dict[str, Any]) -> None:
        """Read usage and timings from the last (or only) object of a completion.

        Raises:
            BadResponse: A count or timing out of bounds (`tui.core.numbers`), naming it.
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


class LlamaCppServerBackend(HTTPBackend[Completion]):
    """Routes tickets through `llama-server` (llama.cpp) on its native API."""

    type = "llamacpp"
    Options = LlamaCppOptions
    config: LlamaCppOptions
    expected = EXPECTED

    def __init__(self, config: LlamaCppOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)
        self.base_url = config.base_url or "http://127.0.0.1:8080"  # an empty one too
        self._slots = asyncio.Semaphore(config.max_concurrency)

    def _key(self) -> SecretStr | None:
        return api_key(self.config)

    def _headers(self, key: SecretStr | None) -> dict[str, str]:
        # llama-server started with --api-key expects it as a bearer token.
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def _hold(self) -> asyncio.Semaphore:
        """At most `max_concurrency` tickets at once, both rounds of one in the same slot."""
        return self._slots

    def _token_confidence(self, final: Completion) -> tuple[float, ConfidenceSource | None] | None:
        probability = label_probability(final.token_probs)
        return None if probability is None else (probability, final.probs_source)

    def _answer_model(self, final: Completion) -> str:
        """The configured model first: llama-server reports the file it loaded."""
        return self.config.model or final.model or self.model

    def _timed_out(self) -> Timeout:
        url = join_url(self.base_url, "completion")
        return Timeout(f"no complete answer from {url} within {self.config.timeout_s:g} s")

    async def _exchange(self, request: Request, watch: Stopwatch) -> Completion:
        """One `/completion` request, the chat turns rendered as text, errors mapped."""
        turns = [(str(m["role"]), str(m["content"])) for m in request.messages]
        body = {
            "prompt": format_turns(turns),
            "json_schema": request.schema,
            "n_predict": N_PREDICT,
            "temperature": self.config.temperature,
            "n_probs": N_PROBS,
            "cache_prompt": True,
            "stream": self.config.stream,
        }
        return await self.exchange_http(
            join_url(self.base_url, "completion"),
            body,
            request.key,
            watch,
            stream=self._read_stream,
            payload=self._read_payload,
            what="completion",
        )

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """`prompt = "finetuned"`: the trained prompt, the labels' grammar (see
        `backends.finetuned_wire`); otherwise the shared chat pipeline."""
        if self.config.prompt != "finetuned":
            return await super()._route(ticket, taxonomy)
        return await finetuned_wire.route_finetuned(self, ticket, taxonomy, self._ask_finetuned)

    async def _ask_finetuned(self, ask: Ask, watch: Stopwatch) -> Answered:
        """One `/completion`: greedy, grammar-bound, one probability per generated token
        (the raw softmax: post-sampling probabilities are 1.0 for a greedy pick)."""
        body = {
            "prompt": ask.prompt,
            "grammar": ask.grammar,
            "n_predict": ask.max_tokens,
            "temperature": 0.0,
            "n_probs": 1,
            "post_sampling_probs": False,
            "cache_prompt": True,
            "stream": False,
        }
        return await self.exchange_http(
            join_url(self.base_url, "completion"),
            body,
            ask.key,
            watch,
            stream=_no_stream,
            payload=_read_finetuned,
            what="completion",
        )

    def _streamed(self, content_type: str) -> bool:
        """Streamed whenever asked: llama-server's stream is events whatever its type says.
        A fine-tuned answer is a few tokens and is never streamed."""
        return self.config.stream and self.config.prompt != "finetuned"

    def _status_model(self) -> str | None:
        return None  # llama-server serves the one model it loaded: a 404 is a wrong URL

    def _read_payload(
        self, payload: dict[str, Any], key: SecretStr | None, watch: Stopwatch
    ) -> Completion:
        watch.mark_first()
        content = payload.get("content")
        if not isinstance(content, str):
            raise BadResponse("completion has no string 'content'")
        completion = Completion(text=content)
        completion.take_final(payload)
        completion.take_probs(payload.get("completion_probabilities"))
        return completion

    async def _read_stream(
        self, response: WireReply, key: SecretStr | None, watch: Stopwatch
    ) -> Completion:
        """Server-sent events: `data: {content, completion_probabilities}` then `stop: true`."""
        completion = Completion()
        pieces: list[str] = []
        first = FirstLine()
        seen = False
        events = sse_events(response, first)
        try:
            async for event in events:
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
        finally:
            await events.aclose()  # now, not by the loop's async-generator finalizer
        if not seen:
            first.raise_if_html(EXPECTED, key)
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


async def _no_stream(response: WireReply, key: SecretStr | None, watch: Stopwatch) -> Answered:
    raise BadResponse("the server streamed an answer that was asked for in one piece")


def _read_finetuned(payload: dict[str, Any], key: SecretStr | None, watch: Stopwatch) -> Answered:
    """A fine-tuned `/completion` reply: its content, the tokens' probabilities (checked in
    `finetuned_wire`), counts and timings (checked by `Completion.take_final`)."""
    watch.mark_first()
    content = payload.get("content")
    if not isinstance(content, str):
        raise BadResponse("completion has no string 'content'")
    usage = Completion(text=content)
    usage.take_final(payload)
    entries = payload.get("completion_probabilities")
    tokens: finetuned_wire.TokenLogprobs | None = None
    source: ConfidenceSource = "logprob"
    if entries is not None:
        tokens, source = finetuned_wire.server_probabilities(entries, "completion_probabilities")
    return Answered(
        text=content,
        tokens=tokens,
        source=source,
        model=usage.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        prompt_ms=usage.prompt_ms,
        gen_ms=usage.gen_ms,
    )
