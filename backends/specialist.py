"""The `specialist` backend: the locally trained model, loaded lazily, routing in process.

Confidence is the model's calibrated probability. Cost is the CPU time it used, priced per
vCPU-hour, so it can be compared with token prices on the same screen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tui.core.backend import (
    BackendError,
    Health,
    LabelNotInTaxonomy,
    NotTrained,
    RouteResult,
)
from tui.core.config.options import SpecialistOptions
from tui.core.learning.model import SpecialistModel, TrainingError
from tui.core.paths import specialist_path

if TYPE_CHECKING:
    from tui.core.models import Taxonomy, Ticket


class SpecialistBackend:
    """Routes with the trained specialist; `route_batch` vectorises whole batches."""

    type = "specialist"
    Options = SpecialistOptions
    config: SpecialistOptions

    def __init__(self, config: SpecialistOptions, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name or "specialist"
        self.path = specialist_path(config)
        self._model: SpecialistModel | None = None
        self._loaded_mtime: float | None = None
        self._lock = asyncio.Lock()

    @property
    def model(self) -> str:
        info = SpecialistModel.read_info(self.path) if self._model is None else self._model.info
        if info is None:
            return "specialist (untrained)"
        return info.identity  # names the very model, so its training set can be left out

    def _load_sync(self) -> SpecialistModel:
        if not self.path.exists():
            raise NotTrained(f"no specialist model at {self.path}; run `triagedesk train` first")
        mtime = self.path.stat().st_mtime
        if self._model is None or mtime != self._loaded_mtime:
            # A retrained model file replaces the old one atomically; pick it up (hot swap).
            self._model = SpecialistModel.load(self.path)
            self._loaded_mtime = mtime
        return self._model

    async def _ensure_model(self) -> SpecialistModel:
        async with self._lock:
            return await asyncio.to_thread(self._load_sync)

    def set_model(self, model: SpecialistModel) -> None:
        """Use an in-memory model (eval of a freshly trained model, tests)."""
        self._model = model
        self._loaded_mtime = self.path.stat().st_mtime if self.path.exists() else None

    def _predict_sync(
        self, model: SpecialistModel, texts: Sequence[str], taxonomy: Taxonomy
    ) -> list[RouteResult | BackendError]:
        started = time.perf_counter()
        cpu_started = time.thread_time()
        allowed = set(taxonomy.names) if len(taxonomy) else None
        try:
            predictions = model.predict(texts, allowed)
        except TrainingError as exc:
            return [LabelNotInTaxonomy(str(exc)) for _ in texts]
        cpu_each = (time.thread_time() - cpu_started) / max(1, len(texts))
        wall_each = (time.perf_counter() - started) * 1000 / max(1, len(texts))
        out: list[RouteResult | BackendError] = []
        for label, probability in predictions:
            out.append(
                RouteResult(
                    label=label,
                    confidence=min(1.0, max(0.0, probability)),
                    confidence_source="probability",
                    model=self.model,
                    total_ms=wall_each,
                    cpu_seconds=cpu_each,
                )
            )
        return out

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        result = (await self.route_batch([ticket], taxonomy))[0]
        if isinstance(result, BackendError):
            raise result
        return result

    async def route_batch(
        self, tickets: Sequence[Ticket], taxonomy: Taxonomy
    ) -> list[RouteResult | BackendError]:
        """Predict a whole batch in one call (vectorised), off the event loop."""
        model = await self._ensure_model()
        return await asyncio.to_thread(
            self._predict_sync, model, [t.text for t in tickets], taxonomy
        )

    async def check(self) -> Health:
        if not self.path.exists():
            return Health(False, f"not trained yet (no model at {self.path})")
        info = SpecialistModel.read_info(self.path)
        if info is None:
            return Health(True, f"model at {self.path}")
        return Health(
            True,
            f"{info.kind} model, {info.n_examples} examples, {len(info.labels)} labels, "
            f"trained {info.trained_at}",
        )

    async def aclose(self) -> None:
        self._model = None
