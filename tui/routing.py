"""The routing engine: tickets in, priced decisions out, written to the store in batches.

Textual-free so the headless CLI, the TUI and the benchmarks share it. The active backend is
read when each ticket is dispatched, which is what makes the TUI's hot swap safe: tickets in
flight finish on the backend they started on, the next one goes to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backends import create_backend
from backends.base import Backend, BackendError, LabelNotInTaxonomy, RouteResult
from backends.prompt import build_prompt, check_confidence, estimate_tokens, estimated_answer
from backends.secrets import api_key, redact
from tui.config import ConfigError, Settings
from tui.costs import price_result, token_cost
from tui.models import Decision, Taxonomy, Ticket

if TYPE_CHECKING:
    from tui.store import Store

BATCH = 64
"""Tickets per call for backends that route whole batches (the specialist)."""
FLUSH_EVERY_S = 0.2
"""Longest a finished decision waits in memory before it is written."""

DecisionCallback = Callable[[Decision], None]


class NoTaxonomy(Exception):
    """Neither the config, the database nor a trained model says which labels exist."""


def resolve_taxonomy(settings: Settings, store: Store | None = None) -> Taxonomy:
    """The config's `[labels]`, else the labels agents have used, else the specialist's."""
    configured = settings.taxonomy()
    if configured is not None:
        return configured
    if store is not None:
        labels = store.known_labels()
        if labels:
            return Taxonomy.from_names(labels)
    from backends.specialist import specialist_path
    from backends.specialist_model import SpecialistModel

    for config in settings.backends.values():
        if config.type == "specialist":
            info = SpecialistModel.read_info(specialist_path(config))
            if info is not None:
                return Taxonomy.from_names(info.labels)
    raise NoTaxonomy(
        "no labels known: add a [labels] table to the config, or import labelled tickets"
    )


@dataclass(slots=True)
class RunSummary:
    """What a batch run did, for the CLI's last line and the TUI's notification."""

    run_id: str
    routed: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    labels: Counter[str] = field(default_factory=Counter)
    error_classes: Counter[str] = field(default_factory=Counter)

    @property
    def per_second(self) -> float:
        return self.routed / self.elapsed_s if self.elapsed_s else 0.0


class Router:
    """Builds backends on demand, routes tickets, prices and stores the decisions."""

    def __init__(self, settings: Settings, taxonomy: Taxonomy, store: Store | None = None) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.store = store
        self.active: str = settings.routing.backend
        """Backend that gets the next dispatched ticket; the TUI swaps it live."""
        self._backends: dict[str, Backend] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._secrets = [api_key(c) for c in settings.backends.values()]
        self.in_flight = 0

    def backend(self, name: str) -> Backend:
        """The backend instance for a configured name, built once and reused."""
        if name not in self._backends:
            self._backends[name] = create_backend(self.settings.backend(name), resolve=self.backend)
        return self._backends[name]

    def swap(self, name: str) -> None:
        """Make `name` the backend for tickets dispatched from now on."""
        self.settings.backend(name)  # raises ConfigError for an unknown name
        self.active = name

    def _limit(self, name: str) -> asyncio.Semaphore:
        if name not in self._limits:
            self._limits[name] = asyncio.Semaphore(self.settings.backend(name).max_concurrency)
        return self._limits[name]

    async def aclose(self) -> None:
        for backend in self._backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        self._backends.clear()

    def _counterfactual(
        self, ticket: Ticket, result: RouteResult | None, backend_name: str
    ) -> tuple[float | None, bool]:
        reference = self.settings.reference
        if reference is None:
            return None, False
        if result is not None and reference.name == backend_name:
            return price_result(reference, result), False
        if result is not None and result.input_tokens is not None and result.output_tokens:
            cost = token_cost(reference, result.input_tokens, result.output_tokens)
            return cost, False
        prompt = build_prompt(ticket, self.taxonomy, max_chars=reference.max_prompt_chars)
        tokens_in = estimate_tokens(prompt.text) + 8  # role and message framing
        tokens_out = estimate_tokens(estimated_answer(self.taxonomy))
        return token_cost(reference, tokens_in, tokens_out), True

    def decision(
        self,
        ticket: Ticket,
        backend_name: str,
        run_id: str,
        outcome: RouteResult | BaseException,
        wall_ms: float,
    ) -> Decision:
        """Turn a backend's answer or error into a priced Decision (nothing is stored)."""
        config = self.settings.backend(backend_name)
        backend_type = config.type
        if isinstance(outcome, RouteResult):
            outcome = self._checked(outcome)
        if isinstance(outcome, RouteResult):
            if outcome.total_ms is None:  # the engine's wall time prices self-hosted backends
                outcome = dataclasses.replace(outcome, total_ms=wall_ms)
            try:
                counterfactual, estimated = self._counterfactual(ticket, outcome, backend_name)
                return Decision(
                    ticket_id=ticket.id,
                    run_id=run_id,
                    backend=backend_name,
                    backend_type=backend_type,
                    model=self._clean(outcome.model) or config.model_name,
                    prompt_version=outcome.prompt_version,
                    label=outcome.label,
                    confidence=outcome.confidence,
                    confidence_source=outcome.confidence_source,
                    reason=self._clean(outcome.reason),
                    total_ms=outcome.total_ms,
                    ttft_ms=outcome.ttft_ms,
                    server_load_ms=outcome.server_load_ms,
                    server_prompt_ms=outcome.server_prompt_ms,
                    server_gen_ms=outcome.server_gen_ms,
                    input_tokens=outcome.input_tokens,
                    output_tokens=outcome.output_tokens,
                    cached_input_tokens=outcome.cached_input_tokens,
                    tokens_estimated=estimated,
                    cost_usd=price_result(config, outcome),
                    counterfactual_cost_usd=counterfactual,
                    raw_output=self._clean(outcome.raw_output),
                    stages=tuple(
                        stage.model_copy(update={"model": self._clean(stage.model) or ""})
                        for stage in outcome.stages
                    ),
                )
            except (ValueError, TypeError) as exc:  # a malformed result field from a buggy backend
                outcome = exc
        if isinstance(outcome, BackendError):
            error_class, raw = outcome.error_class, outcome.raw_output
        else:  # a bug in a backend must not take the app down: record it like any failure
            error_class, raw = "InternalError", None
        message = str(outcome) or type(outcome).__name__
        return Decision(
            ticket_id=ticket.id,
            run_id=run_id,
            backend=backend_name,
            backend_type=backend_type,
            model=config.model_name,
            total_ms=wall_ms,
            error_class=error_class,
            error_message=self._clean(message[:2000]),
            raw_output=self._clean(raw[:20_000] if raw else raw),
        )

    def _checked(self, result: RouteResult) -> RouteResult | BackendError:
        """The result, or the error it is: a plugin or a stale model may answer a label outside
        the taxonomy or an impossible confidence, which must become an error decision."""
        if len(self.taxonomy) and result.label not in self.taxonomy:
            return LabelNotInTaxonomy(
                f"backend answered {str(result.label)[:60]!r}, which is not in the taxonomy",
                raw_output=result.raw_output,
            )
        try:
            check_confidence(result.confidence)
        except BackendError as error:
            error.raw_output = result.raw_output
            return error
        return result

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, *self._secrets)

    async def _call(
        self, backend_name: str, tickets: Sequence[Ticket]
    ) -> list[tuple[RouteResult | BaseException, float]]:
        """Route tickets on one backend within its concurrency limit; never raises."""
        try:
            backend = self.backend(backend_name)
        except Exception as exc:  # a broken optional backend becomes error decisions
            return [(BackendError(str(exc)), 0.0) for _ in tickets]
        async with self._limit(backend_name):
            self.in_flight += len(tickets)
            started = time.perf_counter()
            try:
                batch_route = getattr(backend, "route_batch", None)
                if batch_route is not None and len(tickets) > 1:
                    outcomes: list[Any] = await batch_route(tickets, self.taxonomy)
                    wall = (time.perf_counter() - started) * 1000 / len(tickets)
                    return [(o, wall) for o in outcomes]
                try:
                    result: RouteResult | BaseException = await backend.route(
                        tickets[0], self.taxonomy
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    result = exc
                return [(result, (time.perf_counter() - started) * 1000)]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wall = (time.perf_counter() - started) * 1000
                return [(exc, wall) for _ in tickets]
            finally:
                self.in_flight -= len(tickets)

    async def route_one(
        self, ticket: Ticket, *, backend: str | None = None, run_id: str = "adhoc"
    ) -> Decision:
        """Route one ticket and return its decision without storing it."""
        name = backend or self.active
        ((outcome, wall),) = await self._call(name, [ticket])
        return self.decision(ticket, name, run_id, outcome, wall)

    async def run(
        self,
        tickets: AsyncIterator[Ticket] | Iterable[Ticket],
        *,
        run_id: str,
        backend: str | None = None,
        concurrency: int = 8,
        on_decision: DecisionCallback | None = None,
        store: bool = True,
    ) -> RunSummary:
        """Route a stream of tickets with bounded concurrency, storing decisions in batches.

        Args:
            tickets: Tickets to route; an async iterator lets callers page from the store.
            run_id: The run the decisions belong to (one decision per ticket per run).
            backend: A fixed backend; None follows `self.active` at each dispatch (hot swap).
            concurrency: Tickets (or batches, for batch backends) in flight at once.
            on_decision: Called with each decision once it has been stored.
            store: False routes without writing anything (eval without --store).
        """
        summary = RunSummary(run_id)
        queue: asyncio.Queue[Ticket | None] = asyncio.Queue(maxsize=max(256, concurrency * 4))
        pending: list[Decision] = []
        flushed = asyncio.Event()
        started = time.perf_counter()
        workers_count = max(1, concurrency)

        async def produce() -> None:
            try:
                if isinstance(tickets, AsyncIterator):
                    async for ticket in tickets:
                        await queue.put(ticket)
                else:
                    for ticket in tickets:
                        await queue.put(ticket)
            finally:
                for _ in range(workers_count):
                    await queue.put(None)

        async def flush() -> None:
            if not pending:
                return
            batch = pending[:]
            pending.clear()
            if store and self.store is not None:
                stored = await asyncio.to_thread(self.store.record_decisions, batch)
            else:
                stored = batch
            for decision in stored:
                if on_decision is not None:
                    on_decision(decision)

        async def flusher() -> None:
            while not flushed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(flushed.wait(), FLUSH_EVERY_S)
                await flush()

        async def work() -> None:
            done = False
            while not done:
                first = await queue.get()
                if first is None:
                    return
                name = backend or self.active
                group = [first]
                if hasattr(self.backend_or_none(name), "route_batch"):
                    while len(group) < BATCH and not queue.empty():
                        extra = queue.get_nowait()
                        if extra is None:
                            done = True
                            break
                        group.append(extra)
                outcomes = await self._call(name, group)
                for ticket, (outcome, wall) in zip(group, outcomes, strict=True):
                    decision = self.decision(ticket, name, run_id, outcome, wall)
                    summary.routed += 1
                    if decision.ok and decision.label:
                        summary.labels[decision.label] += 1
                    else:
                        summary.errors += 1
                        summary.error_classes[decision.error_class or "?"] += 1
                    pending.append(decision)
                if len(pending) >= BATCH:
                    await flush()

        flush_task = asyncio.create_task(flusher())
        producer = asyncio.create_task(produce())
        try:
            await asyncio.gather(producer, *(work() for _ in range(workers_count)))
        finally:
            producer.cancel()
            flushed.set()
            await flush_task
            await flush()  # what was routed before a cancel is still written
            summary.elapsed_s = time.perf_counter() - started
        return summary

    def backend_or_none(self, name: str) -> Backend | None:
        try:
            return self.backend(name)
        except Exception:
            return None


async def page_pending(
    store: Store,
    run_id: str,
    *,
    ids: Sequence[str] | None = None,
    unrouted_only: bool = False,
    limit: int | None = None,
    page: int = 500,
) -> AsyncIterator[Ticket]:
    """Tickets still to route in a run, paged from the store in a worker thread."""
    after = 0
    yielded = 0
    while limit is None or yielded < limit:
        size = page if limit is None else min(page, limit - yielded)
        if unrouted_only:
            rows = await asyncio.to_thread(store.unrouted_tickets, after_seq=after, limit=size)
        else:
            rows = await asyncio.to_thread(
                store.pending_in_run, run_id, ids=ids, after_seq=after, limit=size
            )
        if not rows:
            return
        for seq, ticket in rows:
            after = seq
            yielded += 1
            yield ticket


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, for small in-memory samples (the status bar, eval)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return float(ordered[rank - 1])


__all__ = [
    "ConfigError",
    "NoTaxonomy",
    "Router",
    "RunSummary",
    "page_pending",
    "percentile",
    "resolve_taxonomy",
]
