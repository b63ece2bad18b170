"""The Router: tickets in, priced decisions out, written to the store in batches.

The active backend is read when each ticket is dispatched, which is what makes the TUI's hot
swap safe: tickets in flight finish on the backend they started on, the next one goes to the
new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from backends import retry
from backends.limiter import AdaptiveLimit, limit_key, read_limit
from backends.secrets import api_key, redact
from tui.core import numbers
from tui.core.backend import Backend, BackendError, LabelNotInTaxonomy, RouteResult
from tui.core.claims import RunClaims
from tui.core.config import BackendConfig, ConfigError, Settings
from tui.core.costs import price_result, token_cost
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.prompt import build_prompt, check_confidence, estimate_tokens, estimated_answer
from tui.core.registry import create_backend
from tui.services.routing.shadow import ShadowPool
from tui.services.routing.summary import RunSummary
from tui.services.routing.writer import DecisionWriter

if TYPE_CHECKING:
    from tui.core.store import Store


BATCH = 64
"""Tickets per call for backends that route whole batches (the specialist)."""
FLUSH_EVERY_S = 0.2
"""Longest a finished decision waits in memory before it is written."""
WRITE_BATCH = 512
"""Decisions handed to the writer thread at once (sooner when `FLUSH_EVERY_S` passes): each
hand-over wakes the thread, whose statements trade the GIL with the event loop, so fewer
and larger ones cost the run less (7 % of its CPU at c=8 against 64, RESULTS §1 round five);
a run killed outright loses at most this many routed decisions, which a resumed run routes."""

DecisionCallback = Callable[[Decision], None]
WaitCallback = Callable[[str, retry.RetryWait], None]
"""Told (backend name, wait) before a backend's retry loop sleeps or gives up on a wait."""
MAX_CONCURRENCY = 4096
"""Most workers one run starts, whatever it is asked for (20,000,000 once took 40 s to
start); each backend's `max_concurrency` still bounds the calls really in flight."""


class Router:
    """Builds backends on demand, routes tickets, prices and stores the decisions."""

    def __init__(self, settings: Settings, taxonomy: Taxonomy, store: Store | None = None) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.store = store
        self.active: str = settings.routing.backend
        """Backend that gets the next dispatched ticket; the TUI swaps it live."""
        self._backends: dict[str, Backend] = {}
        self._limits: dict[str, AdaptiveLimit] = {}
        self._learnt: dict[str, int] | None = None
        """Limits earlier runs ended with (`limit_key`), read once, off the event loop."""
        self._secrets = [api_key(c) for c in settings.backends.values()]
        self.in_flight = 0
        self.on_wait: WaitCallback | None = None
        """Told of every retry wait (rate limits above all), so a run never waits unseen."""
        self.shadows = ShadowPool(self, settings.routing.shadow)
        """The `[routing] shadow` backends, offered each stored live decision (`RunService`)."""

    def backend(self, name: str) -> Backend:
        """The backend instance for a configured name, built once and reused."""
        if name not in self._backends:
            self._backends[name] = create_backend(self.settings.backend(name), resolve=self.backend)
        return self._backends[name]

    def add_backend(self, name: str, config: BackendConfig) -> None:
        """Configure one more backend while running (a fine-tune just wrote its table).

        The settings are replaced, not changed in place (they are frozen): whoever reads
        `router.settings` from now on sees it; existing backend instances are kept.

        Raises:
            ConfigError: A backend of that name is already configured.
        """
        if name in self.settings.backends:
            raise ConfigError(f"backend {name!r} is already configured")
        backends = {**self.settings.backends, name: config}
        self.settings = self.settings.model_copy(update={"backends": backends})
        self._secrets.append(api_key(config))

    def swap(self, name: str) -> None:
        """Make `name` the backend for tickets dispatched from now on."""
        self.settings.backend(name)  # raises ConfigError for an unknown name
        self.active = name

    def _limit(self, name: str) -> AdaptiveLimit:
        if name not in self._limits:
            config = self.settings.backend(name)
            self._limits[name] = AdaptiveLimit(
                config.max_concurrency,
                adaptive=config.adaptive_concurrency,
                learnt=(self._learnt or {}).get(name),
            )
        return self._limits[name]

    def _read_learnt(self) -> dict[str, int]:
        assert self.store is not None
        return {
            name: learnt
            for name in self.settings.backends
            if (learnt := read_limit(self.store.get_meta(limit_key(name)))) is not None
        }

    def _save_learnt(self) -> None:
        assert self.store is not None
        for name, limit in list(self._limits.items()):
            if limit.adaptive:
                self.store.set_meta(limit_key(name), json.dumps(limit.snapshot()))

    def concurrency_limit(self, name: str) -> tuple[int, int] | None:
        """(calls allowed at once now, `max_concurrency`) for a backend this router has
        called; None before its first call."""
        found = self._limits.get(name)
        return None if found is None else (found.limit, found.max_limit)

    async def aclose(self) -> None:
        await self.shadows.aclose()
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
            except Exception as exc:  # a malformed field, or pricing failed: this ticket only
                outcome = exc
        if isinstance(outcome, BackendError):
            error_class, raw = outcome.error_class, outcome.raw_output
            raw = raw if isinstance(raw, str) else None
        else:  # a bug in a backend must not take the app down: record it like any failure
            error_class, raw = "InternalError", None
        try:
            message = str(outcome) or type(outcome).__name__
        except Exception:  # an exception whose text cannot be built still names its class
            message = type(outcome).__name__
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
        the taxonomy or an impossible confidence, and any backend may relay an absurd number
        from its server (`prompt_tokens = 10**30` once made the batch's write raise
        OverflowError and lose the batch): each becomes this ticket's error decision.

        Every numeric field (tokens, timings, CPU seconds, cost, stages) is checked here once
        by `tui.core.numbers.check_result`, whichever backend produced it.
        """
        raw = result.raw_output if isinstance(result.raw_output, str) else None
        if not isinstance(result.label, str) or (
            len(self.taxonomy) and result.label not in self.taxonomy
        ):
            return LabelNotInTaxonomy(
                f"backend answered {numbers.shown(result.label)}, which is not in the taxonomy",
                raw_output=raw,
            )
        try:
            check_confidence(result.confidence)
            numbers.check_result(result)
        except BackendError as error:
            error.raw_output = raw
            return error
        return result

    def _clean(self, text: str | None) -> str | None:
        return None if text is None else redact(text, *self._secrets)

    def _wait_listener(self, backend_name: str) -> retry.WaitListener | None:
        """The retry-wait listener for calls on `backend_name`: `on_wait`, told the name."""
        on_wait = self.on_wait
        if on_wait is None:
            return None
        return lambda wait: on_wait(backend_name, wait)

    def _record(self, batch: list[Decision], owner: str | None) -> list[Decision]:
        """Store a batch; when it fails, store its decisions one by one, turning one that
        cannot be stored into an error decision, so one bad decision never loses the batch.

        A failure of the store itself (read-only, disk full) fails again on the error
        decision and is raised: the run stops, and what was stored before stays.
        """
        assert self.store is not None
        try:
            return self.store.record_decisions(batch, owner=owner)
        except Exception:
            if not batch:
                raise
        stored: list[Decision] = []
        for decision in batch:
            try:
                stored += self.store.record_decisions([decision], owner=owner)
            except Exception as exc:
                failed = self._unstorable(decision, exc)
                stored += self.store.record_decisions([failed], owner=owner)
        return stored

    def _unstorable(self, decision: Decision, exc: Exception) -> Decision:
        """The error decision that replaces one the store refused."""
        return Decision(
            ticket_id=decision.ticket_id,
            run_id=decision.run_id,
            backend=decision.backend,
            backend_type=decision.backend_type,
            model=decision.model,
            error_class="InternalError",
            error_message=self._clean(
                f"the decision could not be stored ({type(exc).__name__}: {str(exc)[:300]})"
            ),
        )

    async def _call(
        self, backend_name: str, tickets: Sequence[Ticket]
    ) -> list[tuple[RouteResult | BaseException, float]]:
        """Route tickets on one backend within its concurrency limit; never raises."""
        try:
            backend = self.backend(backend_name)
        except Exception as exc:  # a broken optional backend becomes error decisions
            return [(BackendError(str(exc)), 0.0) for _ in tickets]
        limit = self._limit(backend_name)
        async with limit.slot() as held, retry.listening(self._wait_listener(backend_name)):
            self.in_flight += len(tickets)
            started = time.perf_counter()
            try:
                batch_route = getattr(backend, "route_batch", None)
                if batch_route is not None and len(tickets) > 1:
                    outcomes: list[Any] = await batch_route(tickets, self.taxonomy)
                    wall = (time.perf_counter() - started) * 1000 / len(tickets)
                    if not any(isinstance(o, RouteResult) for o in outcomes):
                        held.error = next((o for o in outcomes if isinstance(o, Exception)), None)
                    return [(o, wall) for o in outcomes]
                try:
                    result: RouteResult | BaseException = await backend.route(
                        tickets[0], self.taxonomy
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    result = held.error = exc
                return [(result, (time.perf_counter() - started) * 1000)]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                held.error = exc
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
        claims: RunClaims | None = None,
    ) -> RunSummary:
        """Route a stream of tickets with bounded concurrency, storing decisions in batches.

        Args:
            tickets: Tickets to route; an async iterator lets callers page from the store.
            run_id: The run the decisions belong to (one decision per ticket per run).
            backend: A fixed backend; None follows `self.active` at each dispatch (hot swap).
            concurrency: Tickets (or batches, for batch backends) in flight at once.
            on_decision: Called with each decision once it has been stored.
            store: False routes without writing anything (eval without --store).
            claims: The session's claims on the tickets (taken by `page_pending` or
                `RunClaims.take`): renewed while this runs, each released in the transaction
                that stores its decision, the rest released when this returns or fails.
        """
        summary = RunSummary(run_id)
        if self._learnt is None and self.store is not None:
            with contextlib.suppress(Exception):  # a limit not read is learnt again
                self._learnt = await asyncio.to_thread(self._read_learnt)
        workers_count = max(1, min(concurrency, MAX_CONCURRENCY))
        queue: asyncio.Queue[Ticket | None] = asyncio.Queue(maxsize=max(256, workers_count * 4))
        pending: list[Decision] = []
        flushed = asyncio.Event()
        started = time.perf_counter()

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

        writer: DecisionWriter | None = None
        if store and self.store is not None:
            owner = None if claims is None else claims.owner

            def told(stored: list[Decision]) -> None:
                if on_decision is not None:
                    for decision in stored:
                        on_decision(decision)

            writer = DecisionWriter(lambda batch: self._record(batch, owner), told)

        async def flush() -> None:
            if not pending:
                return
            batch = pending[:]
            pending.clear()
            if writer is not None:
                writer.submit(batch)
                await writer.room()
            elif on_decision is not None:
                for decision in batch:
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
                    summary.count(decision)
                    pending.append(decision)
                if len(pending) >= WRITE_BATCH:
                    await flush()

        flush_task = asyncio.create_task(flusher())
        producer = asyncio.create_task(produce())
        renewer = None if claims is None else asyncio.create_task(claims.keep_alive())
        try:
            await asyncio.gather(producer, *(work() for _ in range(workers_count)))
        finally:
            producer.cancel()
            flushed.set()
            try:
                await flush_task
                await flush()  # what was routed before a cancel is still written
            finally:
                try:
                    if writer is not None:
                        await writer.finish()  # every decision stored before the run returns
                finally:
                    if claims is not None and renewer is not None:
                        renewer.cancel()
                        await claims.release()  # queued, never routed: other runs take them
                        await asyncio.gather(renewer, return_exceptions=True)
                        summary.skipped.update(claims.skipped)
                    summary.elapsed_s = time.perf_counter() - started
                    if store and self.store is not None:
                        with contextlib.suppress(Exception):  # the limits are a hint, not data
                            await asyncio.to_thread(self._save_learnt)
        return summary

    def backend_or_none(self, name: str) -> Backend | None:
        try:
            return self.backend(name)
        except Exception:
            return None
