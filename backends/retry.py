"""Retries with exponential backoff and full jitter, honouring Retry-After, for every backend."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from backends.base import BackendError, RateLimited

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 20.0


def backoff_delay(attempt: int, error: BackendError, *, base: float = BASE_DELAY_S) -> float:
    """Seconds to wait before retry number `attempt` (0-based) after `error`."""
    if isinstance(error, RateLimited) and error.retry_after is not None:
        return min(max(error.retry_after, 0.0), MAX_DELAY_S * 3)
    return random.uniform(0, min(MAX_DELAY_S, base * (2**attempt)))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    max_retries: int,
    base_delay: float = BASE_DELAY_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call`, retrying retryable BackendErrors up to `max_retries` times."""
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as error:
            if not error.retryable or attempt >= max_retries:
                raise
            await sleep(backoff_delay(attempt, error, base=base_delay))
            attempt += 1
