"""A cascade: a cheap `first` backend answers, and a ticket it is unsure of goes to `then`.

Both stages stay visible in the result, each with its own cost, so the saving of answering
most tickets cheaply and the price of escalating the rest can be read from every decision.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tui.core.backend import BackendError, Health, RouteResult
from tui.core.config.options import CascadeOptions
from tui.core.costs import price_result
from tui.core.models import StageResult

if TYPE_CHECKING:
    from tui.core.backend import Backend
    from tui.core.models import Taxonomy, Ticket
    from tui.core.registry import Resolver

_ACTIVE: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "active_cascades", default=frozenset()
)
"""Cascades routing in the current task, to refuse a cycle (a → b → a) instead of recursing."""


class CascadeBackend:
    """Routes with `first`; escalates to `then` on an error or a confidence under `threshold`."""

    type = "cascade"
    Options = CascadeOptions
    config: CascadeOptions

    def __init__(self, config: CascadeOptions, *, resolve: Resolver | None = None) -> None:
        self.config = config
        self.name = config.name or config.type
        self.threshold = config.threshold
        self._resolve = resolve
        self._first: Backend | None = None
        self._then: Backend | None = None

    def _stages(self) -> tuple[Backend, Backend]:
        """The two stage backends, resolved on first use (the resolver may build them)."""
        if self._first is None or self._then is None:
            if self._resolve is None:
                raise BackendError(f"cascade {self.name!r} was built without a backend resolver")
            if not self.config.first or not self.config.then:
                raise BackendError(f"cascade {self.name!r} needs both 'first' and 'then'")
            try:
                self._first = self._resolve(self.config.first)
                self._then = self._resolve(self.config.then)
            except BackendError:
                raise
            except Exception as exc:  # unknown name, broken plugin: a decision error, not a crash
                raise BackendError(f"cascade {self.name!r} cannot build its stages: {exc}") from exc
        return self._first, self._then

    @property
    def model(self) -> str:
        """Both stages' models once resolved, else their names; it never builds anything, so
        a cycle of cascades cannot recurse through it."""
        if self._first is not None and self._then is not None:
            return f"{self._first.config.model_name}→{self._then.config.model_name}"
        return f"{self.config.first}→{self.config.then}"

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Route with `first`, and with `then` when `first` failed or was unsure.

        Raises:
            BackendError: `then` failed (same class, message naming the stage), or the
                stages cannot be built.
        """
        active = _ACTIVE.get()
        if self.name in active:
            raise BackendError(f"cascade {self.name!r} calls itself through its stages")
        token = _ACTIVE.set(active | {self.name})
        try:
            return await self._route(ticket, taxonomy)
        finally:
            _ACTIVE.reset(token)

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        first, then = self._stages()
        started = time.perf_counter()
        answered: list[tuple[Backend, RouteResult, float]] = []
        stages: list[StageResult] = []
        try:
            result = await first.route(ticket, taxonomy)
        except BackendError as error:
            stages.append(_failed_stage(first, error, (time.perf_counter() - started) * 1000.0))
        else:
            stages.append(_stage(first, result))
            answered.append((first, result, 0.0))
            if result.confidence is not None and result.confidence >= self.threshold:
                return self._combine(answered, stages, started)
        offset_ms = (time.perf_counter() - started) * 1000.0
        try:
            result = await then.route(ticket, taxonomy)
        except BackendError as error:
            why = (
                f"after {stages[0].error_class}"
                if stages[0].error_class
                else "after low confidence"
            )
            error.args = (f"cascade stage 'then' ({then.name}, {why} from {first.name}): {error}",)
            raise
        stages.append(_stage(then, result))
        answered.append((then, result, offset_ms))
        return self._combine(answered, stages, started)

    def _combine(
        self,
        answered: list[tuple[Backend, RouteResult, float]],
        stages: list[StageResult],
        started: float,
    ) -> RouteResult:
        """The answering stage's answer, with usage, timings and costs summed over all stages."""
        _, final, offset_ms = answered[-1]
        results = [result for _, result, _ in answered]
        costs = [stage.cost_usd for stage in stages if stage.cost_usd is not None]
        return replace(
            final,
            model="→".join(stage.model for stage in stages),
            input_tokens=_sum(r.input_tokens for r in results),
            output_tokens=_sum(r.output_tokens for r in results),
            cached_input_tokens=_sum(r.cached_input_tokens for r in results),
            total_ms=(time.perf_counter() - started) * 1000.0,
            ttft_ms=None if final.ttft_ms is None else offset_ms + final.ttft_ms,
            server_load_ms=_sum(r.server_load_ms for r in results),
            server_prompt_ms=_sum(r.server_prompt_ms for r in results),
            server_gen_ms=_sum(r.server_gen_ms for r in results),
            cpu_seconds=_sum(r.cpu_seconds for r in results),
            stages=tuple(stages),
            cost_usd=sum(costs) if costs else None,
        )

    async def check(self) -> Health:
        """Both stages must answer for the cascade to be usable."""
        try:
            first, then = self._stages()
        except BackendError as error:
            return Health(False, str(error))
        first_health, then_health = await asyncio.gather(_check(first), _check(then))
        detail = (
            f"first {first.name}: {first_health.detail}; then {then.name}: {then_health.detail}"
        )
        return Health(first_health.ok and then_health.ok, detail)

    async def aclose(self) -> None:
        """Close the stages: a resolver that built them for this cascade alone leaves them to
        it, and backends close idempotently when a shared router closes them again."""
        for backend in (self._first, self._then):
            if backend is not None:
                await backend.aclose()
        self._first = self._then = None


async def _check(backend: Backend) -> Health:
    try:
        return await backend.check()
    except Exception as exc:  # a check reports, never raises
        return Health(False, f"{type(exc).__name__}: {exc}")


def _stage(backend: Backend, result: RouteResult) -> StageResult:
    return StageResult(
        backend=backend.name,
        backend_type=backend.type,
        model=result.model or backend.model,
        label=result.label,
        confidence=result.confidence,
        total_ms=result.total_ms,
        input_tokens=result.input_tokens,
        output_tokens=result.output_tokens,
        cost_usd=price_result(backend.config, result),
    )


def _failed_stage(backend: Backend, error: BackendError, total_ms: float) -> StageResult:
    return StageResult(
        backend=backend.name,
        backend_type=backend.type,
        model=backend.model,
        total_ms=total_ms,
        error_class=error.error_class,
    )


def _sum(values: Any) -> Any:
    present = [value for value in values if value is not None]
    return sum(present) if present else None
