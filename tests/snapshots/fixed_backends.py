"""A deterministic backend for snapshots: same label, confidence, timings and tokens every run."""

from __future__ import annotations

import zlib
from typing import Any

from tui.core.backend import Health, RouteResult
from tui.core.config import BackendConfig
from tui.core.models import Taxonomy, Ticket


class FixedBackend:
    """Answers from a hash of the text with the configured `latency_ms` (no clock involved)."""

    type = "fixed"

    def __init__(self, config: BackendConfig, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.latency = float(getattr(config, "latency_ms", 5.0))
        self.tokens = getattr(config, "tokens", True)

    @property
    def model(self) -> str:
        return self.config.model_name

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        digest = zlib.crc32(f"{self.name}:{ticket.text}".encode())
        label = taxonomy.names[zlib.crc32(ticket.text.encode()) % len(taxonomy)]
        if digest % 5 == 0:
            label = taxonomy.names[digest % len(taxonomy)]
        return RouteResult(
            label=label,
            confidence=0.5 + (digest % 50) / 100,
            confidence_source="self-reported" if self.tokens else "probability",
            input_tokens=180 if self.tokens else None,
            output_tokens=9 if self.tokens else None,
            total_ms=self.latency + digest % 7,
            ttft_ms=self.latency * 0.6 if self.tokens else None,
            model=self.model,
            prompt_version="v1" if self.tokens else None,
            cpu_seconds=None if self.tokens else 0.0004,
        )

    async def check(self) -> Health:
        return Health(True, f"{self.model} answers")

    async def aclose(self) -> None:
        pass
