"""The one routing pipeline every LLM backend shares; a backend supplies only its wire format.

`LLMBackend.route` looks up the key, builds the prompt, starts the stopwatch, sends with
retries (each attempt bounded by `timeout_s`), parses the answer, asks once more when the
answer is unusable, sums tokens and timings over both rounds and removes the key from any
error. A backend implements `_exchange` (one request and its reply, as a `Completion`), its
error mapping inside it, and `check`; the few places where vendors really differ are hooks
with a default (`_messages`, `_repair_turns`, `_token_confidence`, `_answer_model`,
`_timed_out`, `_hold`, `_prepare`) or class-level settings (`token_sums`, `server_times`,
`ttft_per_attempt`, `retries`). This is litellm's "transformation" split: the pipeline once,
the translation per provider.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from backends import retry
from backends.secrets import redact_error
from tui.core.backend import BackendError, BadResponse, Health, RouteResult, Stopwatch, Timeout
from tui.core.prompt import (
    Answer,
    Prompt,
    answer_schema,
    build_prompt,
    parse_answer,
    repair_message,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from tui.core.config import BackendConfig
    from tui.core.models import ConfidenceSource, Taxonomy, Ticket
    from tui.core.registry import Resolver

Message = dict[str, Any]
"""One chat turn: `{"role": ..., "content": ...}` (Anthropic's content may be blocks)."""


@dataclass(slots=True)
class Completion:
    """What one attempt produced, in the backend-neutral terms the pipeline sums.

    Backends with more to carry (token probabilities, a tool call id) subclass it.
    """

    text: str = ""
    """The answer as the model wrote it: what is parsed, and stored as raw output."""
    model: str | None = None
    """The model the server says answered, when it says."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    load_ms: float | None = None
    prompt_ms: float | None = None
    gen_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """What an attempt sends: the conversation so far, the answer schema and the key."""

    prompt: Prompt
    messages: list[Message]
    schema: dict[str, Any]
    key: SecretStr | None


C = TypeVar("C", bound=Completion)


def _only(values: Iterable[float | int | None]) -> Any:
    """The one round's value as it is: what `sum_known` and `sum_all_or_none` give for one."""
    (value,) = values
    return value


def sum_known(values: Iterable[float | int | None]) -> Any:
    """The sum of the values present; None when none is."""
    present = [value for value in values if value is not None]
    return sum(present) if present else None


def sum_all_or_none(values: Iterable[float | int | None]) -> Any:
    """The sum, or None as soon as one value is missing (a partial sum would under-bill)."""
    listed = list(values)
    return None if any(value is None for value in listed) else sum(v for v in listed if v)


class LLMBackend(Generic[C]):
    """A backend that asks a language model: the shared pipeline behind `route`.

    Subclasses set `type`, implement `_exchange` (or `_attempt`, for a bound other than an
    asyncio timeout) and `check`, and override hooks where their API differs.
    """

    type: ClassVar[str]
    token_sums: ClassVar[Literal["known", "all-or-none"]] = "known"
    """How the rounds' token counts add up: over the counts reported, or None when a round
    reported none (the hosted APIs, whose counts are bills)."""
    server_times: ClassVar[Literal["summed", "last"]] = "summed"
    """Server prompt/generation times: summed over the rounds, or the answering round's."""
    ttft_per_attempt: ClassVar[bool] = False
    """Whether time to first token restarts with each attempt of the first round, so that it
    is measured on the attempt that answered rather than on the first that streamed."""
    retries: ClassVar[bool] = True
    """False where a failed attempt is not transient (an in-process model)."""

    def __init__(self, config: BackendConfig, *, resolve: Resolver | None = None) -> None:
        self.config = config
        self.name = config.name or config.type
        self.retry_base_delay = retry.BASE_DELAY_S
        """Backoff base for retries; tests make it tiny."""
        self.retry_sleep = asyncio.sleep
        """How retries wait; tests swap it to record the delays."""

    @property
    def retry_base_delay_s(self) -> float:
        """`retry_base_delay` under the name the llama.cpp and Ollama backends gave it."""
        return self.retry_base_delay

    @retry_base_delay_s.setter
    def retry_base_delay_s(self, value: float) -> None:
        self.retry_base_delay = value

    @property
    def model(self) -> str:
        return self.config.model_name

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket (see `_route`); no error leaves with the key in its text."""
        try:
            return await self._route(ticket, taxonomy)
        except BackendError as error:
            try:
                key = self._key()
            except BackendError:
                key = None
            if key is not None:
                redact_error(error, key)
            raise

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket; one repair round when the first answer is unusable.

        `total_ms` spans the whole call (waiting for the backend, retries and the repair
        included), since the ticket waited that long.

        Raises:
            BackendError: Transport, HTTP or answer failures, typed as in `tui.core.backend`.
        """
        key = self._key()
        prompt = build_prompt(ticket, taxonomy, max_chars=self.config.max_prompt_chars)
        request = Request(prompt, self._messages(prompt), answer_schema(taxonomy), key)
        watch = Stopwatch()
        async with self._hold():
            load_ms = await self._prepare()
            done = [await self._round(request, watch, fresh=True)]
            try:
                answer = parse_answer(done[-1].text, taxonomy)
            except BadResponse as problem:
                turns = self._repair_turns(done[-1], repair_message(str(problem)))
                request = replace(request, messages=[*request.messages, *turns])
                done.append(await self._round(request, watch, fresh=False))
                answer = parse_answer(done[-1].text, taxonomy)
        return self._result(answer, done, prompt, watch, load_ms)

    async def _round(self, request: Request, watch: Stopwatch, *, fresh: bool) -> C:
        """One round (the answer, or the repair): attempts until one succeeds or retries end."""

        async def attempt() -> C:
            if fresh and self.ttft_per_attempt:
                watch.first = None
            return await self._attempt(request, watch)

        return await retry.with_retries(
            attempt,
            max_retries=self.config.max_retries if self.retries else 0,
            base_delay=self.retry_base_delay,
            sleep=self.retry_sleep,
        )

    async def _attempt(self, request: Request, watch: Stopwatch) -> C:
        """One exchange, bounded as a whole by `timeout_s`.

        httpx's own timeout is per read, so a server trickling a byte a second, or sending
        keep-alive comments forever, would hold a ticket for as long as it liked.
        """
        try:
            async with asyncio.timeout(self.config.timeout_s):
                return await self._exchange(request, watch)
        except TimeoutError:
            raise self._timed_out() from None

    def _result(
        self,
        answer: Answer,
        done: list[C],
        prompt: Prompt,
        watch: Stopwatch,
        load_ms: float | None,
    ) -> RouteResult:
        """The RouteResult of the answering round, with usage summed over every round."""
        final = done[-1]
        confidence: float | None = answer.confidence
        source: ConfidenceSource | None = "self-reported" if confidence is not None else None
        measured = self._token_confidence(final)
        if measured is not None:
            confidence, source = measured
        tokens = sum_all_or_none if self.token_sums == "all-or-none" else sum_known
        if len(done) == 1:  # one round (nearly every ticket): nothing to add up
            tokens = _only
        timed = done if self.server_times == "summed" else [final]
        return RouteResult(
            label=answer.label,
            confidence=confidence,
            confidence_source=source,
            reason=answer.reason,
            raw_output=final.text,
            model=self._answer_model(final),
            prompt_version=prompt.version,
            input_tokens=tokens(c.input_tokens for c in done),
            output_tokens=tokens(c.output_tokens for c in done),
            cached_input_tokens=tokens(c.cached_tokens for c in done),
            total_ms=watch.elapsed_ms(),
            ttft_ms=watch.ttft_ms(),
            server_load_ms=sum_known([load_ms, *(c.load_ms for c in done)]),
            server_prompt_ms=sum_known(c.prompt_ms for c in timed),
            server_gen_ms=sum_known(c.gen_ms for c in timed),
        )

    # The wire translation: what each backend supplies.

    async def _exchange(self, request: Request, watch: Stopwatch) -> C:
        """Send `request` once and read the reply, mapping every failure to a BackendError.

        Call `watch.mark_first()` when the first piece of the answer arrives.
        """
        raise NotImplementedError

    async def check(self) -> Health:
        """Whether the backend answers: server reachable, model present, key present."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections and loaded models."""

    # Hooks with a default, for what only some APIs do differently.

    def _key(self) -> SecretStr | None:
        """The API key, or None; raises AuthenticationFailed when a needed key is missing."""
        return None

    def _messages(self, prompt: Prompt) -> list[Message]:
        """The first round's conversation."""
        return list(prompt.messages())

    def _repair_turns(self, rejected: C, problem: str) -> list[Message]:
        """The turns appended for the repair round: the rejected answer and the complaint."""
        return [
            {"role": "assistant", "content": rejected.text},
            {"role": "user", "content": problem},
        ]

    def _token_confidence(self, final: C) -> tuple[float, ConfidenceSource | None] | None:
        """A confidence measured from token probabilities, preferred to the self-reported."""
        return None

    def _answer_model(self, final: C) -> str:
        """The model stored with the decision."""
        return final.model or self.config.model_name

    def _timed_out(self) -> Timeout:
        """The error for an attempt that ran past `timeout_s`."""
        return Timeout(f"no complete answer within {self.config.timeout_s:g} s (timeout_s)")

    def _hold(self) -> AbstractAsyncContextManager[Any]:
        """Held for both rounds of a ticket: a limit on concurrent tickets, or none."""
        return contextlib.nullcontext()

    async def _prepare(self) -> float | None:
        """Run under `_hold` before the first round (loading a model); its time in ms."""
        return None
