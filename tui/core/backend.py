"""The small protocol every backend implements, its result type and its typed errors.

The routing engine only sees this module. Backends report what they measured (tokens,
timings, raw output); the engine turns that into a priced, stored Decision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tui.core.config import BackendConfig
    from tui.core.models import ConfidenceSource, StageResult, Taxonomy, Ticket


class BackendError(Exception):
    """A routing attempt failed; becomes an error Decision, never a crash.

    Messages must never contain API keys: build them from status codes and server text only.
    """

    retryable = False
    """Whether the shared retry loop may try again."""

    def __init__(self, message: str, *, raw_output: str | None = None) -> None:
        super().__init__(message)
        self.raw_output = raw_output

    @property
    def error_class(self) -> str:
        return type(self).__name__


class ConnectionFailed(BackendError):
    """The server could not be reached or dropped the connection."""

    retryable = True


class Timeout(BackendError):
    """No (complete) answer within the backend's timeout."""

    retryable = True


class RateLimited(BackendError):
    """HTTP 429; `retry_after` is the server's Retry-After in seconds, when it sent one."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(BackendError):
    """HTTP 5xx from the server."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None, raw_output: str | None = None):
        super().__init__(message, raw_output=raw_output)
        self.status = status


class StreamInterrupted(BackendError):
    """A streamed answer ended properly but empty: the server dropped the request, as
    llama-cpp-python's server does to the stream in progress when another request arrives.
    Retryable, and a sign of too many requests at once (`backends.limiter`)."""

    retryable = True


class RequestRejected(BackendError):
    """HTTP 4xx other than 429: the request itself is wrong (bad model, bad key)."""


class AuthenticationFailed(RequestRejected):
    """HTTP 401/403, or no API key available."""


class ModelNotFound(RequestRejected):
    """The server does not have the configured model."""


class BadResponse(BackendError):
    """The answer is not the JSON object the prompt asked for."""


class LabelNotInTaxonomy(BadResponse):
    """The answer names a label that is not in the taxonomy."""


class InvalidConfidence(BadResponse):
    """The answer's confidence is NaN, infinite or outside [0, 1]."""


class NotTrained(BackendError):
    """The specialist has no trained model yet."""


class BackendUnavailable(BackendError):
    """An optional dependency of the backend is not installed."""


@dataclass(frozen=True, slots=True)
class RouteResult:
    """What one backend call produced, with the timings the client measured."""

    label: str
    confidence: float | None = None
    confidence_source: ConfidenceSource | None = None
    reason: str | None = None
    raw_output: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    total_ms: float | None = None
    ttft_ms: float | None = None
    server_load_ms: float | None = None
    server_prompt_ms: float | None = None
    server_gen_ms: float | None = None
    cpu_seconds: float | None = None
    """CPU time spent in process (the specialist), for CPU-hour pricing."""
    stages: tuple[StageResult, ...] = ()
    cost_usd: float | None = None
    """Set only by backends that price themselves (the cascade sums its stages)."""


@dataclass(frozen=True, slots=True)
class Health:
    """Answer of `check`: is the backend usable right now, and why not."""

    ok: bool
    detail: str


@dataclass(slots=True)
class Stopwatch:
    """Client-side timings: started when the request is sent, first byte, done."""

    started: float = field(default_factory=time.perf_counter)
    first: float | None = None

    def mark_first(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def ttft_ms(self) -> float | None:
        return None if self.first is None else (self.first - self.started) * 1000.0


@runtime_checkable
class Backend(Protocol):
    """A router of tickets. Instances are cheap to build; heavy loading happens lazily."""

    name: str
    type: str
    config: BackendConfig

    @property
    def model(self) -> str: ...

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Classify one ticket into one label of `taxonomy`.

        Raises:
            BackendError: Any failure; the engine records it as an error Decision.
        """
        ...

    async def check(self) -> Health:
        """Whether the backend answers: server reachable, model present, key present."""
        ...

    async def aclose(self) -> None:
        """Release connections and loaded models."""
        ...
