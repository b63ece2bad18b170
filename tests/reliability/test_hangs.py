"""Hangs: every wait is bounded, and every long wait is said.

- `timeout_s` bounds each attempt whole: a reply trickled a byte at a time or a stream of
  keep-alives forever ends as a `Timeout` decision (the backend × fault cases are in
  `test_fault_matrix.py`); here the compare screen, and a chunked reply broken after its
  headers (aiohttp's C parser then stalls instead of failing).
- Health checks read at most the 1 MB cap, counting inflated bytes: a gzip bomb or an
  endless model list costs little memory on every backend, through `backends --check` too.
- `--concurrency` outside 1..4096 is bad usage, and the engine never starts more workers.
- A Retry-After longer than a minute fails the ticket at once, saying until when; shorter
  waits are printed (once for all workers) and shown in the TUI.

Tests never assert how long something took: a guard of many times the bound only turns a
hang into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from screens.compare import CompareModal
from screens.widgets.ticket_table import TicketTable
from tests.reliability.fault_servers import (
    GOOD_LABEL,
    BodyKind,
    BodyServer,
    FaultyOpenAIServer,
    Plan,
)
from tests.reliability.test_fault_matrix import (
    BackendKind,
    Sleeps,
    backend_block,
    make_settings,
    make_tickets,
    prepare,
    server_for,
    server_root,
)
from tui.app import make_app
from tui.core import registry
from tui.core.backend import Health, RouteResult
from tui.core.models import Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 0.5
GUARD_S = 60.0
"""Far beyond any bound under test (≥ 10× each): only a hang reaches it."""
HEALTH_PEAK_BYTES = 24_000_000
"""Most memory one health check may allocate: the cap plus buffers, far below the 50-100 MB
the oversized bodies would take when read whole."""
CLOCK = r"\d\d:\d\d:\d\d UTC"


async def _until(pilot: Any, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await pilot.pause(0.05)


async def test_compare_screen_ends_with_a_timeout_for_a_trickling_backend(tmp_path: Path) -> None:
    good = FaultyOpenAIServer(Plan("ok")).start()
    slow = FaultyOpenAIServer(Plan("trickle")).start()
    blocks = {
        "good": backend_block("openai-stream", good.root),
        "slow": backend_block("openai-stream", slow.root, timeout_s=TIMEOUT_S, max_retries=1),
    }
    settings = make_settings(blocks, "good")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    store = Store(tmp_path / "compare.db")
    store.import_tickets(make_tickets(2))
    router = Router(settings, taxonomy, store)
    app = make_app(settings, store, router)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one(TicketTable)
            await _until(pilot, lambda: table.current is not None, "the inbox")
            assert table.current is not None
            ticket_id = table.current.ticket_id
            await pilot.press("c")
            await _until(pilot, lambda: isinstance(app.screen, CompareModal), "the compare screen")
            modal = app.screen
            assert isinstance(modal, CompareModal)
            help_line = modal.query_one("#compare-help")
            # `stored` is set before the message that writes the verdict is handled: wait for both.
            await _until(
                pilot,
                lambda: modal.stored and "Done" in str(help_line.render()),
                "every backend's answer",
            )
            help_text = str(help_line.render())
            assert "Done" in help_text and "1 failed" in help_text, help_text
            assert str(modal.query_one("#compare-table").get_cell("slow", "label")).endswith(
                "Timeout"
            )
    finally:
        await router.aclose()
        good.stop()
        slow.stop()
    decisions = {d.backend: d for d in store.decisions_for(ticket_id)}
    store.close()
    assert decisions["slow"].error_class == "Timeout", decisions["slow"]
    assert decisions["good"].label == GOOD_LABEL


async def test_broken_chunk_after_the_headers_is_retryable(tmp_path: Path) -> None:
    """The bad chunk comes in a later packet: aiohttp's C parser swallows the error (and its
    read timeout), so the attempt bound is what ends it; either way it is retried."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()
    served = []

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65_536)
                served.append(1)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n6\r\n: ok\n\n\r\n"
                )
                stop.wait(0.1)
                conn.sendall(b"ZZZ\r\nbroken\r\n")
                stop.wait(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    root = f"http://127.0.0.1:{listener.getsockname()[1]}"
    settings = make_settings(
        {"api": backend_block("openai-stream", root, timeout_s=TIMEOUT_S, max_retries=1)}, "api"
    )
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    router = Router(settings, taxonomy)
    try:
        await asyncio.wait_for(prepare(router.backend("api"), Sleeps()), GUARD_S)
        decision = await asyncio.wait_for(router.route_one(make_tickets(1)[0]), GUARD_S)
    finally:
        await router.aclose()
        stop.set()
        thread.join()
        listener.close()
    assert decision.error_class in ("ConnectionFailed", "Timeout"), decision
    assert len(served) >= 2, "a broken chunked reply is worth a retry"


HEALTH_BACKENDS: tuple[BackendKind, ...] = ("openai", "anthropic", "llamacpp", "ollama")


@pytest.mark.parametrize("body", ["gzip_bomb", "huge_list"])
@pytest.mark.parametrize("backend", HEALTH_BACKENDS)
async def test_health_checks_read_at_most_the_cap(backend: BackendKind, body: BodyKind) -> None:
    server = BodyServer(body).start()
    settings = make_settings({"api": backend_block(backend, server.root)}, "api")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    router = Router(settings, taxonomy)
    checked = router.backend("api")
    tracemalloc.start()
    try:
        health = await asyncio.wait_for(checked.check(), GUARD_S)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await router.aclose()
        server.stop()
    assert peak < HEALTH_PEAK_BYTES, f"the check held {peak:,} bytes: {health}"
    if backend != "llamacpp":  # /health's body is only quoted; the others say why
        assert "1 MB cap" in health.detail, health


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw_deflate"])
async def test_a_sane_compressed_reply_is_still_read(
    coding: Literal["gzip", "deflate", "raw_deflate"],
) -> None:
    """The capped reader inflates gzip and both spellings of deflate itself."""
    server = BodyServer(coding).start()
    settings = make_settings({"api": backend_block("openai", server.root)}, "api")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    router = Router(settings, taxonomy)
    try:
        health = await asyncio.wait_for(router.backend("api").check(), GUARD_S)
    finally:
        await router.aclose()
        server.stop()
    assert health == Health(True, "reachable, model test-model listed"), health


def _cli(home: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAGEDESK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _config(tmp_path: Path, base_url: str, **extra: Any) -> Path:
    values = {"type": "openai", "base_url": base_url, "model": "test-model", **extra}
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    path = tmp_path / "triagedesk.toml"
    path.write_text(
        '[labels]\nbilling = "Charges"\nshipping = "Parcels"\n\n[routing]\nbackend = "api"\n\n'
        f"[backends.api]\n{lines}"
    )
    return path


def test_backends_check_against_a_gzip_bomb_answers(tmp_path: Path) -> None:
    server = BodyServer("gzip_bomb").start()
    try:
        config = _config(tmp_path, f"{server.root}/v1")
        done = _cli(tmp_path, "--config", str(config), "backends", "--check", "--json")
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    (entry,) = [e for e in json.loads(done.stdout) if e["name"] == "api"]
    assert "1 MB cap" in entry["detail"], entry


def _import(tmp_path: Path, config: Path, n: int = 3) -> tuple[str, ...]:
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text(
        "".join(
            json.dumps({"id": f"T-{i}", "text": f"[case-{i}] charged twice"}) + "\n"
            for i in range(n)
        )
    )
    base = ("--db", str(tmp_path / "t.db"), "--config", str(config))
    done = _cli(tmp_path, *base, "import", str(tickets))
    assert done.returncode == 0, done.stderr
    return base


@pytest.mark.parametrize("value", ["0", "-1", "4097", "20000000"])
@pytest.mark.parametrize("command", ["route", "eval"])
def test_concurrency_outside_1_to_4096_is_bad_usage(
    tmp_path: Path, command: str, value: str
) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text('{"id": "a", "text": "charged twice", "label": "billing"}\n')
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    argv = ["--db", str(tmp_path / "t.db"), "--config", str(config), command]
    if command == "eval":
        argv += ["--backend", "api", "--data", str(data)]
    done = _cli(tmp_path, *argv, "--concurrency", value, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--concurrency" in done.stderr and "from 1 to 4096" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


class CountingPlugin:
    """A plugin backend that records how many tasks exist while it routes."""

    type = "counting"
    tasks_seen: list[int] = []

    def __init__(self, config: Any, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name

    @property
    def model(self) -> str:
        return "counting-1"

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        CountingPlugin.tasks_seen.append(len(asyncio.all_tasks()))
        return RouteResult(label=GOOD_LABEL, confidence=0.9)

    async def check(self) -> Health:
        return Health(True, "ok")

    async def aclose(self) -> None:
        pass


async def test_the_engine_starts_at_most_4096_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "counting", "tests.reliability.test_hangs:CountingPlugin")
    CountingPlugin.tasks_seen.clear()
    settings = make_settings({"plug": {"type": "counting"}}, "plug")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    router = Router(settings, taxonomy)
    tickets = make_tickets(3)
    summary = await asyncio.wait_for(
        router.run(tickets, run_id="r", concurrency=50_000, store=False), GUARD_S
    )
    assert summary.routed == 3
    assert max(CountingPlugin.tasks_seen) <= 4096 + 16, CountingPlugin.tasks_seen


RETRY_AFTER_BACKENDS: tuple[BackendKind, ...] = ("openai-stream", "openai", "anthropic", "llamacpp")


@pytest.mark.parametrize("backend", RETRY_AFTER_BACKENDS)
async def test_an_hour_of_retry_after_fails_at_once_saying_until_when(
    tmp_path: Path, backend: BackendKind
) -> None:
    plan = Plan("http_429_retry_after")
    server = server_for(backend, plan)
    server.retry_after = "3600"
    server.start()
    heard: list[tuple[str, Any]] = []
    settings = make_settings({"api": backend_block(backend, server_root(server))}, "api")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    tickets = make_tickets(3)
    with Store(tmp_path / "t.db") as store:
        store.import_tickets(tickets)
        router = Router(settings, taxonomy, store)
        router.on_wait = lambda name, wait: heard.append((name, wait))
        try:
            await prepare(router.backend("api"), Sleeps())
            await asyncio.wait_for(router.run(tickets, run_id="r", concurrency=3), GUARD_S)
        finally:
            await router.aclose()
            server.stop()
        rows = store.conn.execute("SELECT error_class, error_message FROM decisions").fetchall()
    assert len(rows) == 3
    for error_class, message in rows:
        assert error_class == "RateLimited", message
        assert re.search(rf"asks to wait 3600 s \(until {CLOCK}\)", message), message
    assert [plan.seen[str(i)] for i in range(3)] == [1, 1, 1], "an hour is not waited for"
    assert heard and all(name == "api" and wait.giving_up for name, wait in heard)


def test_route_prints_a_rate_limit_wait_once_for_all_workers(tmp_path: Path) -> None:
    server = FaultyOpenAIServer(Plan("http_429_retry_after", times=1))
    server.retry_after = "1"
    server.start()
    try:
        config = _config(tmp_path, server.url, max_retries=1, timeout_s=10)
        base = _import(tmp_path, config)
        done = _cli(tmp_path, *base, "route", "--concurrency", "3")
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "routed 3 tickets" in done.stdout and "0 failed" in done.stdout, done.stdout
    lines = [line for line in done.stderr.splitlines() if "rate limited" in line]
    assert len(lines) == 1, done.stderr
    assert re.fullmatch(
        rf"api: rate limited \(HTTP 429\), waiting 1 s until {CLOCK} \(retry 1 of 1\)", lines[0]
    ), lines


def test_route_fails_an_hour_long_rate_limit_at_once_and_says_so(tmp_path: Path) -> None:
    server = FaultyOpenAIServer(Plan("http_429_retry_after"))
    server.retry_after = "3600"
    server.start()
    try:
        config = _config(tmp_path, server.url, max_retries=1, timeout_s=10)
        base = _import(tmp_path, config)
        done = _cli(tmp_path, *base, "route", "--concurrency", "3", timeout=GUARD_S)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "RateLimited: 3" in done.stdout, done.stdout
    lines = [line for line in done.stderr.splitlines() if "rate limited" in line]
    assert len(lines) == 1, done.stderr
    assert re.match(
        rf"api: rate limited \(HTTP 429\), the server asks to wait 3600 s "
        rf"\(until {CLOCK}\)",
        lines[0],
    ), lines
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        classes = {row[0] for row in conn.execute("SELECT error_class FROM decisions")}
    finally:
        conn.close()
    assert classes == {"RateLimited"}


async def test_the_tui_says_what_a_rate_limited_run_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FaultyOpenAIServer(Plan("http_429_retry_after"))
    server.retry_after = "3600"
    server.start()
    settings = make_settings({"api": backend_block("openai-stream", server.root)}, "api")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    store = Store(tmp_path / "tui.db")
    store.import_tickets(make_tickets(4))
    router = Router(settings, taxonomy, store)
    app = make_app(settings, store, router)
    shown: list[tuple[str, str]] = []
    notify = app.notify

    def spy(message: str, **kwargs: Any) -> None:
        shown.append((kwargs.get("title", ""), message))
        notify(message, **kwargs)

    monkeypatch.setattr(app, "notify", spy)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one(TicketTable)
            await _until(pilot, lambda: len(table.window_rows) == 4, "the inbox")
            await pilot.press("R")
            await _until(pilot, lambda: store.decision_count() == 4, "the four decisions")
            await _until(
                pilot, lambda: any("asks to wait 3600 s" in m for _, m in shown), "the notice"
            )
    finally:
        await router.aclose()
        store.close()
        server.stop()
    notices = [(t, m) for t, m in shown if "asks to wait" in m]
    assert len(notices) == 1, shown  # four workers, one toast
    title, message = notices[0]
    assert title == "Rate limited"
    assert re.search(
        rf"api: rate limited \(HTTP 429\), the server asks to wait 3600 s "
        rf"\(until {CLOCK}\)",
        message,
    ), message
