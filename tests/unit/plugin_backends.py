"""Small real backends for engine tests, registered the way third-party plugins are."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from tui.core.backend import Health, RouteResult, ServerError
from tui.core.config import BackendConfig
from tui.core.models import Taxonomy, Ticket


class HashBackend:
    """Answers a label chosen by a hash of the text, after `delay_s`; fails tickets whose text
    contains 'FAIL'. Deterministic, so resumed runs can be compared with uninterrupted ones."""

    type = "hash"

    def __init__(self, config: BackendConfig, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.delay = float(getattr(config, "delay_s", 0.0) or 0.0)
        self.calls = 0

    @property
    def model(self) -> str:
        return "hash-1"

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if "FAIL" in ticket.text:
            raise ServerError("HTTP 503 from test server", status=503)
        label = taxonomy.names[zlib.crc32(ticket.text.encode()) % len(taxonomy)]
        return RouteResult(
            label=label,
            confidence=0.75,
            confidence_source="self-reported",
            input_tokens=100,
            output_tokens=10,
            model="hash-1",
        )

    async def check(self) -> Health:
        return Health(True, "always")

    async def aclose(self) -> None:
        pass


class CrashingBackend(HashBackend):
    """A backend with a bug: raises a plain exception instead of a BackendError."""

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        raise KeyError("oops")
