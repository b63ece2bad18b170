"""Routing in a worker process (`tui.services.routing.worker`), end to end: the real app on a
real SQLite store, a real loopback OpenAI-compatible server, the child process routing and
writing, and the inbox drawing what it stored. Also what goes wrong: a backend fault, the
child killed mid-run, a cancelled run, the parent dying."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from screens.widgets.ticket_table import TicketTable
from tests.screens.helpers import build_router, seed, settings_for, wait_until
from tests.servers.openai_server import OpenAIServer, Reply
from tui.app import make_app
from tui.core.models import Decision
from tui.core.store import Store
from tui.services.routing.worker import ENV, RoutingWorker, WorkerFailed, worker_wanted
from tui.services.runs import RunService, Selection

SIZE = (120, 40)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    running = OpenAIServer().start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def routing_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")


def openai_block(server: OpenAIServer, **extra: object) -> dict[str, object]:
    return {
        "type": "openai",
        "base_url": server.url,
        "model": "test-model",
        "stream": False,
        "max_retries": 0,
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.6,
        **extra,
    }


def test_the_variable_selects_the_worker_and_auto_follows_the_concurrency() -> None:
    few = settings_for({"a": {"type": "hash", "max_concurrency": 8}})
    many = settings_for({"a": {"type": "hash"}, "b": {"type": "hash", "max_concurrency": 128}})
    assert worker_wanted(few, {ENV: "1"}) and worker_wanted(few, {ENV: "worker"})
    assert not worker_wanted(many, {ENV: "0"}) and not worker_wanted(many, {ENV: "thread"})
    assert not worker_wanted(few, {}) and not worker_wanted(few, {ENV: "auto"})
    assert worker_wanted(many, {}) and worker_wanted(many, {ENV: "auto"})


async def test_decisions_routed_in_the_child_land_in_the_store_and_on_screen(
    store: Store, server: OpenAIServer
) -> None:
    seed(store, 40)
    settings = settings_for({"gpt": openai_block(server)})
    app = make_app(settings, store, build_router(settings, store))
    assert isinstance(app.desk.engine, RoutingWorker)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 40)
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0, timeout=30)
        await wait_until(pilot, lambda: all(r.predicted_label for r in table.window_rows))
        child = app.desk.engine.pid
        assert child is not None and child != os.getpid()
        assert {r.predicted_label for r in table.window_rows} == {"billing"}
        assert {r.backend for r in table.window_rows} == {"gpt"}
        assert len(server.completions()) == 40
        # the child wrote them: this process's router never called the backend
        assert app.router.concurrency_limit("gpt") is None
        assert store.decision_count() == 40
    assert app.desk.engine.pid is None  # closed with the app
    assert _gone(child)


async def test_a_backend_fault_shows_on_the_ticket_and_r_retries_it(
    store: Store, server: OpenAIServer
) -> None:
    seed(store, 1)
    server.script(Reply(status=400, body='{"error": {"message": "bad request"}}'))
    settings = settings_for({"gpt": openai_block(server)})
    app = make_app(settings, store, build_router(settings, store))
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TicketTable)
        await wait_until(pilot, lambda: table.total_rows == 1)
        await pilot.press("r")
        await wait_until(pilot, lambda: table.window_rows[0].error_class is not None, timeout=30)
        failed = table.window_rows[0]
        assert store.latest_decision(failed.ticket_id).error_class == failed.error_class
        await pilot.press("r")
        await wait_until(pilot, lambda: table.window_rows[0].predicted_label == "billing")
        assert len(store.decisions_for(failed.ticket_id)) == 2
        assert store.latest_decision(failed.ticket_id).ok


async def test_a_killed_child_is_an_error_and_the_next_run_starts_a_new_one(
    store: Store, server: OpenAIServer
) -> None:
    seed(store, 60)
    slow = {"type": "hash", "delay_s": 0.2, "max_concurrency": 2, "adaptive_concurrency": False}
    settings = settings_for({"slow": slow, "gpt": openai_block(server)})
    app = make_app(settings, store, build_router(settings, store))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_until(pilot, lambda: store.decision_count() >= 2, timeout=30)
        engine = app.desk.engine
        assert isinstance(engine, RoutingWorker)
        first = engine.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(pilot, lambda: not app.screen.batch_running, timeout=10)
        shown = [n.message for n in app._notifications]
        assert any("routing worker exited" in m for m in shown), shown
        app.swap_backend("gpt")  # the app answers; the next run is a new child
        await pilot.press("R")
        await wait_until(pilot, lambda: store.count_unrouted() == 0, timeout=30)
        assert engine.pid is not None and engine.pid != first
        assert _gone(first)


async def test_cancelling_a_run_stops_it_in_the_child(store: Store) -> None:
    seed(store, 200)
    slow = {"type": "hash", "delay_s": 0.1, "max_concurrency": 4, "adaptive_concurrency": False}
    settings = settings_for({"slow": slow})
    router = build_router(settings, store)
    worker = RoutingWorker(router, store)
    service = RunService(store, router)
    seen: list[Decision] = []
    try:
        plan = await asyncio.to_thread(service.plan, Selection("unrouted"), run_id="tui-c-1")
        task = asyncio.ensure_future(worker.route(service, plan, on_decision=seen.append))
        while len(seen) < 8:
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stopped_at = store.decision_count()
        assert stopped_at < 200
        await asyncio.sleep(0.5)  # four in flight may land; nothing new is dispatched
        assert store.decision_count() <= stopped_at + 4
        assert store.claim_holders("tui-c-1") == {}  # its claims were released
        # the same child routes the rest
        pid = worker.pid
        plan = await asyncio.to_thread(service.plan, Selection("unrouted"), run_id="tui-c-2")
        slow_done = await worker.route(service, plan)
        assert worker.pid == pid
        assert slow_done.summary.routed == 200 - store.decisions_in_run("tui-c-1")
        assert store.count_unrouted() == 0
    finally:
        await worker.aclose()


async def test_a_run_fails_with_the_childs_error(store: Store) -> None:
    seed(store, 3)
    settings = settings_for({"slow": {"type": "hash"}})
    router = build_router(settings, store)
    worker = RoutingWorker(router, store)
    service = RunService(store, router)
    try:
        plan = await asyncio.to_thread(service.plan, Selection("unrouted"), run_id="tui-f-1")
        store.close()  # the child opens the file itself: a database gone is its error
        Path(str(store.path)).unlink()
        with pytest.raises(WorkerFailed, match="routing worker exited"):
            await asyncio.wait_for(worker.route(service, plan), 30)
    finally:
        await worker.aclose()


CHILD_PARENT = """
import asyncio, sys
from tests.screens.helpers import build_router, seed, settings_for
from tui.core import registry
from tui.core.store import Store
from tui.services.routing.worker import RoutingWorker
from tui.services.runs import RunService, Selection

registry.BUILTIN["hash"] = "tests.unit.plugin_backends:HashBackend"

async def main():
    store = Store(sys.argv[1])
    seed(store, 50)
    settings = settings_for({"slow": {"type": "hash", "delay_s": 3600, "max_concurrency": 2}})
    router = build_router(settings, store)
    worker = RoutingWorker(router, store)
    service = RunService(store, router)
    plan = service.plan(Selection("unrouted"), run_id="tui-p-1")
    task = asyncio.ensure_future(worker.route(service, plan))
    while worker.pid is None:
        await asyncio.sleep(0.01)
    print(worker.pid, flush=True)
    await task

asyncio.run(main())
"""


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_PARENT, str(tmp_path / "p.db")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(0.5)
        assert not _gone(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child)
    finally:
        parent.kill()


def _gone(pid: int | None) -> bool:
    """The process has exited (reaped, or a zombie waiting for a dead parent's init)."""
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True
