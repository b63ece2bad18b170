"""A GGUF model loaded in process through llama-cpp-python (the optional `llamacpp` extra).

No server to run: the model is loaded on the first ticket, off the event loop, and every call
runs in a worker thread, one at a time, because a llama context is not thread-safe. The
routing pipeline is `backends.llm`'s; this module runs its attempts in process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backends import finetuned_batch, llamacpp_finetuned
from backends.llm import Completion, LLMBackend, Message, Request
from tui.core import numbers
from tui.core.backend import (
    BackendError,
    BackendUnavailable,
    BadResponse,
    Health,
    ModelNotFound,
    RequestRejected,
    RouteResult,
    Stopwatch,
    Timeout,
)
from tui.core.config.options import LlamaCppLocalOptions
from tui.core.llama_buffers import open_llama

if TYPE_CHECKING:
    from tui.core.models import Taxonomy, Ticket
    from tui.core.registry import Resolver

MAX_ANSWER_TOKENS = 200
"""An answer is one short JSON object; the cap stops a rambling model early."""
INSTALL_HINT = "pip install 'triagedesk[llamacpp]'"
SCORING_SEQUENCES = 64
"""Sequences of a `prompt = "finetuned"` context: one per branch of the label trie, so a
taxonomy of up to 64 labels is scored in one batch (more take a few)."""
BATCH_SEQUENCES = 256
"""Sequences of a `label_scoring = "constrained"` context (llama.cpp's most): a quarter for
the tickets of a batch, the rest for their branch points (`backends.finetuned_batch`)."""


def _import_llama_cpp() -> Any:
    """Import llama-cpp-python only when this backend is used (it is an optional extra)."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendUnavailable(f"llama-cpp-python is not installed: {INSTALL_HINT}") from exc
    except OSError as exc:  # the package is there but its shared library cannot load
        raise BackendUnavailable(f"llama-cpp-python cannot load its library: {exc}") from exc
    return llama_cpp


_Batched = tuple["llamacpp_finetuned.Scored", tuple[float | None, float | None], float | None]
"""One ticket's share of a batch: its scores, the batch's llama.cpp times, the load time."""


@dataclass(slots=True)
class _Waiting:
    """A ticket waiting for the next constrained batch."""

    text: str
    taxonomy: Taxonomy
    future: asyncio.Future[_Batched]
    deadline: float


@dataclass(slots=True)
class _Run:
    """One call's deadline and cancellation, shared with the worker thread."""

    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)


class LlamaCppLocalBackend(LLMBackend[Completion]):
    """Routes tickets with a GGUF model in this process.

    The schema reaches llama-cpp-python as `{"type": "json_object", "schema": ...}`: its
    `json_schema` response format is silently ignored in process, leaving output unconstrained.
    The grammar built from the schema pins the label to the taxonomy but drops minimum and
    maximum, so an out-of-range confidence is still possible and is caught by `parse_answer`.
    """

    type = "llamacpp-local"
    Options = LlamaCppLocalOptions
    config: LlamaCppLocalOptions
    retries = False
    """A failed computation is not transient: running it again would only repeat it."""

    def __init__(self, config: LlamaCppLocalOptions, *, resolve: Resolver | None = None) -> None:
        super().__init__(config, resolve=resolve)
        self.model_path = Path(config.model_path).expanduser()
        self._llm: Any = None
        self._order = asyncio.Lock()
        """Queues callers fairly; the thread lock below is what guarantees exclusivity."""
        self._thread_lock = threading.Lock()
        """Held by the worker thread while it uses the model: a call whose awaiting task was
        cancelled keeps running, and the next one must not start before it ends."""
        self._current: _Run | None = None
        """The call the worker thread is running, read by llama.cpp's abort callback."""
        self._abort_callback: Any = None
        self._waiting: list[_Waiting] = []
        """Tickets waiting for the next constrained batch, in arrival order."""
        self._drainer: asyncio.Task[None] | None = None

    def _hold(self) -> asyncio.Lock:
        """One ticket at a time, queued fairly, the model loaded under the same lock."""
        return self._order

    async def _prepare(self) -> float | None:
        return await self._ensure_loaded()

    async def _route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """`prompt = "finetuned"`: the trained prompt, every label scored (see
        `backends.llamacpp_finetuned`); otherwise the shared chat pipeline."""
        if self.config.prompt != "finetuned":
            return await super()._route(ticket, taxonomy)
        if self.config.label_scoring == "constrained":
            return await self._route_batched(ticket, taxonomy)
        watch = Stopwatch()
        async with self._hold():
            load_ms = await self._prepare()
            run = _Run(deadline=time.monotonic() + self.config.timeout_s)
            try:
                scored, perf = await _in_llama_thread(self._score_sync, ticket.text, taxonomy, run)
            except asyncio.CancelledError:
                run.cancelled.set()
                raise
        return self._scored_result(scored, taxonomy, watch, load_ms, perf)

    async def _route_batched(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        """Wait for a place in the next batch: tickets that arrive while one batch is being
        scored are scored together next (no timer: a lone ticket goes at once)."""
        watch = Stopwatch()
        future: asyncio.Future[_Batched] = asyncio.get_running_loop().create_future()
        self._waiting.append(
            _Waiting(ticket.text, taxonomy, future, time.monotonic() + self.config.timeout_s)
        )
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        scored, perf, load_ms = await future
        return self._scored_result(scored, taxonomy, watch, load_ms, perf)

    def _scored_result(
        self,
        scored: llamacpp_finetuned.Scored,
        taxonomy: Taxonomy,
        watch: Stopwatch,
        load_ms: float | None,
        perf: tuple[float | None, float | None],
    ) -> RouteResult:
        """The decision from a ticket's label scores, timed from its arrival."""
        return llamacpp_finetuned.result(
            scored,
            taxonomy,
            model=self.config.model_name,
            total_ms=watch.elapsed_ms(),
            load_ms=load_ms,
            perf=perf,
        )

    async def _drain(self) -> None:
        """Score waiting tickets a batch at a time until none wait; a failure fails only the
        batch it happened in, each of its tickets with the error."""
        while self._waiting:
            taxonomy = self._waiting[0].taxonomy
            batch = [w for w in self._waiting if w.taxonomy is taxonomy][
                : self.config.batch_tickets
            ]
            taken = {id(w) for w in batch}
            self._waiting = [w for w in self._waiting if id(w) not in taken]
            batch = [w for w in batch if not w.future.done()]  # its caller left
            if not batch:
                continue
            run = _Run(deadline=max(w.deadline for w in batch))
            try:
                async with self._order:
                    load_ms = await self._ensure_loaded()
                    scored, perf = await _in_llama_thread(
                        self._score_many_sync, [w.text for w in batch], taxonomy, run
                    )
            except Exception as exc:  # handed to every caller of the batch, as raised
                for waiting in batch:
                    if not waiting.future.done():
                        waiting.future.set_exception(exc)
                continue
            for waiting, one in zip(batch, scored, strict=True):
                if not waiting.future.done():
                    waiting.future.set_result((one, perf, load_ms))
                load_ms = None  # the load is counted once, on the first ticket

    def _score_many_sync(
        self, texts: list[str], taxonomy: Taxonomy, run: _Run
    ) -> tuple[list[llamacpp_finetuned.Scored], tuple[float | None, float | None]]:
        import llama_cpp

        with self._model_for(run) as llm:
            scored = finetuned_batch.score_many(
                llm,
                llama_cpp,
                texts,
                taxonomy,
                self.config.n_ctx,
                own_tokens=self.config.label_tokens,
            )
            return scored, _read_perf(llm)

    def _score_sync(
        self, text: str, taxonomy: Taxonomy, run: _Run
    ) -> tuple[llamacpp_finetuned.Scored, tuple[float | None, float | None]]:
        import llama_cpp

        with self._model_for(run) as llm:
            scored = llamacpp_finetuned.score(
                llm, llama_cpp, text, taxonomy, self.config.n_ctx, self.config.label_tokens
            )
            return scored, _read_perf(llm)

    @contextlib.contextmanager
    def _model_for(self, run: _Run) -> Iterator[Any]:
        """Hold the model for one ticket's call in the llama thread: refuse a closed model or a
        run cancelled while it waited, arm the abort callback for `run`, and turn llama.cpp's
        RuntimeError into Timeout (aborted at `timeout_s`) or BackendError."""
        with self._thread_lock:
            llm = self._llm
            if llm is None:
                raise BackendError("the model was closed while a ticket was waiting")
            if run.cancelled.is_set():
                raise Timeout("cancelled before the model was free")
            self._current = run
            _reset_perf(llm)
            try:
                yield llm
            except RuntimeError as exc:
                if self._should_abort():
                    raise Timeout(
                        f"no answer within {self.config.timeout_s:g} s (computation aborted)"
                    ) from exc
                raise BackendError(f"llama.cpp failed: {exc}") from exc
            finally:
                self._current = None

    async def _attempt(self, request: Request, watch: Stopwatch) -> Completion:
        """One generation, bounded by `timeout_s` through llama.cpp's abort callback (a
        thread cannot be cancelled, so an asyncio timeout would only stop the waiting)."""
        response_format = {"type": "json_object", "schema": request.schema}
        return await self._generate(request.messages, response_format)

    async def _ensure_loaded(self) -> float | None:
        """Load the model on first use; returns the load time in ms when it loaded now."""
        if self._llm is not None:
            return None
        llama_cpp = _import_llama_cpp()
        if not self.model_path.is_file():
            raise ModelNotFound(f"GGUF model file not found: {self.model_path}")
        started = time.perf_counter()
        self._llm = await _in_llama_thread(self._load, llama_cpp)
        return (time.perf_counter() - started) * 1000.0

    def _load(self, llama_cpp: Any) -> Any:
        with self._thread_lock:
            try:
                llm = open_llama(  # AMX CPUs: see tui.core.llama_buffers
                    llama_cpp,
                    model_path=str(self.model_path),
                    n_ctx=self.config.n_ctx,
                    n_gpu_layers=self.config.n_gpu_layers,
                    verbose=False,
                    **self._thread_options(),
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise BackendError(f"cannot load GGUF model {self.model_path}: {exc}") from exc
            if self.config.prompt == "finetuned":
                sequences = (
                    BATCH_SEQUENCES
                    if self.config.label_scoring == "constrained"
                    else SCORING_SEQUENCES
                )
                try:
                    llamacpp_finetuned.open_for_scoring(llm, llama_cpp, sequences)
                except (ValueError, RuntimeError, OSError) as exc:
                    llm.close()
                    raise BackendError(f"cannot open {self.model_path} for scoring: {exc}") from exc
            self._install_abort(llama_cpp, llm)
            return llm

    def _thread_options(self) -> dict[str, int]:
        """`n_threads` from the config block, when set (llama.cpp's default suits most boxes)."""
        threads = self.config.n_threads
        return {} if threads is None else {"n_threads": threads, "n_threads_batch": threads}

    def _install_abort(self, llama_cpp: Any, llm: Any) -> None:
        """Let llama.cpp stop a computation that is past its deadline or whose caller left.

        It reaches into llama-cpp-python's context handle and works on the CPU backend only,
        so any failure just leaves calls unabortable: they then run to their end.
        """
        with contextlib.suppress(Exception):
            callback = llama_cpp.ggml_abort_callback(lambda _data: self._should_abort())
            llama_cpp.llama_set_abort_callback(llm._ctx.ctx, callback, None)
            self._abort_callback = callback  # ctypes needs the object kept alive

    def _should_abort(self) -> bool:
        run = self._current
        return run is not None and (run.cancelled.is_set() or time.monotonic() > run.deadline)

    async def _generate(
        self, messages: list[Message], response_format: dict[str, Any]
    ) -> Completion:
        run = _Run(deadline=time.monotonic() + self.config.timeout_s)
        try:
            return await _in_llama_thread(self._generate_sync, messages, response_format, run)
        except asyncio.CancelledError:
            run.cancelled.set()  # the thread cannot be killed; llama.cpp stops at its next step
            raise

    def _generate_sync(
        self, messages: list[Message], response_format: dict[str, Any], run: _Run
    ) -> Completion:
        with self._model_for(run) as llm:
            try:
                result = llm.create_chat_completion(
                    messages=messages,
                    response_format=response_format,
                    temperature=self.config.temperature,
                    max_tokens=MAX_ANSWER_TOKENS,
                )
            except ValueError as exc:
                if "context window" in str(exc):
                    raise RequestRejected(
                        f"{exc} (n_ctx is {self.config.n_ctx}; raise it or max_prompt_chars)"
                    ) from exc
                raise BackendError(f"llama-cpp-python refused the call: {exc}") from exc
            return _read_result(result, _read_perf(llm))

    async def check(self) -> Health:
        """The file exists and llama-cpp-python is importable; the model is not loaded."""
        try:
            await asyncio.to_thread(_import_llama_cpp)
        except BackendUnavailable as exc:
            return Health(False, str(exc))
        if not self.model_path.is_file():
            return Health(False, f"GGUF model file not found: {self.model_path}")
        size_mb = self.model_path.stat().st_size / 1_000_000
        state = "loaded" if self._llm is not None else "not loaded yet"
        return Health(True, f"{self.model_path.name} ({size_mb:.1f} MB, {state})")

    async def aclose(self) -> None:
        """Free the model (after any running call); a later route loads it again."""
        async with self._order:
            await _in_llama_thread(self._close_sync)

    def _close_sync(self) -> None:
        with self._thread_lock:
            llm, self._llm = self._llm, None
            self._abort_callback = None
            if llm is not None:
                llm.close()


T = TypeVar("T")

LLAMA_THREAD_STACK_BYTES = 256 * 1024 * 1024
"""Stack of the thread that runs llama.cpp. Its grammar sampler recurses deeply over a large
vocabulary; a worker thread's default stack (2 MiB where `ulimit -s` is unlimited, as on GPU
machines) is not enough, while the main thread's grows. Untouched pages cost no memory."""

_llama_executor: concurrent.futures.ThreadPoolExecutor | None = None
_llama_executor_lock = threading.Lock()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    """One process-wide thread for llama.cpp calls, created with a large stack."""
    global _llama_executor
    with _llama_executor_lock:
        if _llama_executor is None:
            previous = threading.stack_size(LLAMA_THREAD_STACK_BYTES)
            try:
                executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llama")
                executor.submit(lambda: None).result()  # start the thread with this stack now
            finally:
                threading.stack_size(previous)
            _llama_executor = executor
        return _llama_executor


async def _in_llama_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking llama.cpp call on the dedicated thread, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), functools.partial(fn, *args))


def _reset_perf(llm: Any) -> None:
    with contextlib.suppress(Exception):
        import llama_cpp

        llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def _read_perf(llm: Any) -> tuple[float | None, float | None]:
    """llama.cpp's own prompt and generation times of the last call, when available."""
    try:
        import llama_cpp

        data = llama_cpp.llama_perf_context(llm._ctx.ctx)
        return float(data.t_p_eval_ms), float(data.t_eval_ms)
    except Exception:
        return None, None


def _read_result(result: Any, perf: tuple[float | None, float | None]) -> Completion:
    try:
        text = result["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BadResponse(f"unexpected completion shape: {json.dumps(result)[:120]}") from None
    found = result.get("usage")
    usage: dict[str, Any] = found if isinstance(found, dict) else {}
    return Completion(
        text=text if isinstance(text, str) else "",
        input_tokens=numbers.count(usage.get("prompt_tokens"), "usage.prompt_tokens"),
        output_tokens=numbers.count(usage.get("completion_tokens"), "usage.completion_tokens"),
        prompt_ms=numbers.duration(perf[0], "llama_perf_context.t_p_eval_ms"),
        gen_ms=numbers.duration(perf[1], "llama_perf_context.t_eval_ms"),
    )
