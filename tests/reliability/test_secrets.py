"""API keys never leak: not into SQLite, logs, exports, exception text or `backends --check`.

A sentinel key sits in the environment variable of every remote backend. Each backend then
meets every fault of the fault matrix plus servers that echo the request headers back into
their error bodies, their answers and their redirect targets; afterwards the sentinel must
appear nowhere. Every test also asserts that the key really reached the server, so an echo
had something to leak.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.reliability.fault_servers import (
    AnyServer,
    FaultName,
    FaultyAnthropicServer,
    FaultyLlamaCppServer,
    FaultyOpenAIServer,
    Plan,
    free_port,
)
from tests.reliability.test_fault_matrix import (
    FAULTS,
    LABELS,
    BackendKind,
    backend_block,
    make_settings,
    make_tickets,
    route_batch,
    server_root,
)
from tests.servers import ollama_server
from tests.servers.openai_server import LoopbackServer, Recorded, Reply, ScriptedHandler
from tui.core import export
from tui.core.backend import BackendError
from tui.core.models import Taxonomy, Ticket
from tui.core.registry import create_backend
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
SENTINEL = "sk-SENTINEL-7f3a9c2e1b5d4a6f"
KEY_ENV = "TRIAGEDESK_TEST_SENTINEL_KEY"
REMOTE: tuple[BackendKind, ...] = ("openai-stream", "openai", "anthropic", "llamacpp")
"""Backends that send a key (Ollama has none to send)."""

Echo = Literal[
    "echo_400",
    "echo_401",
    "echo_403",
    "echo_404",
    "echo_429",
    "echo_500",
    "echo_503",
    "echo_redirect",
    "echo_in_label",
    "echo_in_reason_and_model",
]
ECHOES: tuple[Echo, ...] = Echo.__args__  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def sentinel_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    return SENTINEL


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything at DEBUG, httpx's and httpcore's loggers included."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "asyncio", "backends", "tui"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def headers_text(request: Recorded) -> str:
    return json.dumps(request.headers)


class EchoServer(LoopbackServer):
    """Answers every request with `status` and a body (and headers) quoting the request's
    headers, the way a misconfigured proxy's error page does."""

    def __init__(self, status: int, location: str | None = None) -> None:
        super().__init__()
        self.status = status
        self.location = location

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        echoed = headers_text(request)
        body = {"error": {"message": f"rejected request with headers {echoed}", "type": "echo"}}
        headers = {"X-Echo": echoed[:200]}
        if self.location is not None:
            key = request.header("authorization") or request.header("x-api-key") or ""
            headers["Location"] = f"{self.location}{request.path}?leak={key}"
        handler.send_json(self.status, body, headers)


def key_seen(requests: list[Any]) -> bool:
    return any(SENTINEL in json.dumps(dict(r.headers)) for r in requests)


def keyed_block(backend: BackendKind, root: str, **extra: Any) -> dict[str, Any]:
    return backend_block(backend, root, api_key_env=KEY_ENV, **extra)


def faulty_server(backend: BackendKind, plan: Plan) -> AnyServer:
    if backend in ("openai-stream", "openai"):
        return FaultyOpenAIServer(plan)
    if backend == "anthropic":
        return FaultyAnthropicServer(plan)
    return FaultyLlamaCppServer(plan)


def echo_answer_server(backend: BackendKind, echo: Echo) -> AnyServer:
    """A server whose model answer carries the key: as the label, or in reason and model."""
    if echo == "echo_in_label":
        answer = {"label": SENTINEL, "confidence": 0.9}
    else:
        answer = {"label": "billing", "confidence": 0.9, "reason": f"key {SENTINEL}"}
    server = faulty_server(backend, Plan("ok"))
    if isinstance(server, FaultyOpenAIServer | FaultyAnthropicServer):
        server.script(*[Reply(content=json.dumps(answer)) for _ in range(20)])
        server.model = SENTINEL
        original = server.planned_reply

        def planned(fault: FaultName) -> Reply | None:
            with server.lock:
                return server.replies.popleft() if server.replies else original(fault)

        server.planned_reply = planned  # type: ignore[method-assign]
    else:
        server.model = SENTINEL
        text = ollama_server.Reply.text(json.dumps(answer))
        server.native = lambda fault: text  # type: ignore[method-assign]
    return server


def scan_store(db: Path) -> None:
    """The sentinel is in no byte of the database, its WAL or shared memory."""
    for suffix in ("", "-wal", "-shm"):
        path = db.with_name(db.name + suffix)
        if path.exists():
            assert SENTINEL.encode() not in path.read_bytes(), f"key in {path.name}"


def scan_logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    assert SENTINEL not in caplog.text
    for record in caplog.records:
        assert SENTINEL not in record.getMessage()
        assert SENTINEL not in repr(record.args)
    out, err = capsys.readouterr()
    assert SENTINEL not in out + err


def scan_exception(error: BaseException) -> None:
    text = "".join(traceback.format_exception(error))
    assert SENTINEL not in text
    assert SENTINEL not in repr(error)
    if isinstance(error, BackendError):
        assert SENTINEL not in (error.raw_output or "")


async def route_directly(settings_block: dict[str, Any]) -> BackendError | None:
    """Route one ticket on a bare backend (no Router redaction); the raised error, if any."""
    config = make_settings({"b": settings_block}, "b").backend("b")
    backend = create_backend(config)
    taxonomy = Taxonomy.from_names(list(LABELS))
    try:
        await backend.route(Ticket(id="direct", text="[case-99] refund please"), taxonomy)
    except BackendError as error:
        return error
    finally:
        await backend.aclose()
    return None


TRANSPORTS = ("aiohttp", "httpx")
"""Both HTTP transports: httpx's own (httpcore) logs response headers at DEBUG."""


def _secret_cases() -> list[Any]:
    cases = []
    for backend in REMOTE:
        for fault in FAULTS:
            if backend in fault.backends:
                name = f"{backend}-{fault.name}"
                cases.append(pytest.param(backend, fault.name, "aiohttp", id=name))
        for echo in ECHOES:
            for transport in TRANSPORTS:
                name = f"{backend}-{echo}-{transport}"
                cases.append(pytest.param(backend, echo, transport, id=name))
    return cases


@pytest.mark.parametrize(("backend", "scenario", "transport"), _secret_cases())
async def test_key_never_leaks_under_faults(
    tmp_path: Path,
    backend: BackendKind,
    scenario: str,
    transport: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    decoy: EchoServer | None = None
    timeout = next((f.timeout_s for f in FAULTS if f.name == scenario), 5.0)
    server: AnyServer | EchoServer
    if scenario.startswith("echo_in_"):
        server = echo_answer_server(backend, scenario)  # type: ignore[arg-type]
    elif scenario == "echo_redirect":
        decoy = EchoServer(200).start()
        server = EchoServer(307, location=decoy.root)
    elif scenario.startswith("echo_"):
        server = EchoServer(int(scenario.removeprefix("echo_")))
    else:
        server = faulty_server(backend, Plan(scenario))  # type: ignore[arg-type]
    server.start()
    try:
        root = server.root if isinstance(server, EchoServer) else server_root(server)
        if scenario == "connect_refused":
            root = f"http://127.0.0.1:{free_port()}"
        block = keyed_block(backend, root, timeout_s=timeout)
        if backend != "ollama":
            block["http_transport"] = transport
        tickets = make_tickets(2)
        rows, _ = await route_batch(tmp_path, make_settings({"b": block}, "b"), tickets)
        error = await route_directly(block)
    finally:
        server.stop()
        if decoy is not None:
            decoy.stop()

    if scenario != "connect_refused":
        assert key_seen(server.requests), "the key never reached the server: nothing to leak"
    if decoy is not None:
        assert decoy.requests == [], "a redirect was followed (with the key)"
    for row in rows:
        for column, value in row.items():
            assert SENTINEL not in str(value), f"key in decisions.{column}"
    scan_store(tmp_path / "triage.db")
    if error is not None:
        scan_exception(error)
    scan_logs(caplog, capsys)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("backend", REMOTE)
async def test_redirect_to_another_port_is_not_followed(
    tmp_path: Path, backend: BackendKind, status: int, transport: str
) -> None:
    target = EchoServer(200).start()
    redirector = EchoServer(status, location=target.root).start()
    try:
        block = keyed_block(backend, redirector.root, http_transport=transport)
        rows, _ = await route_batch(tmp_path, make_settings({"b": block}, "b"), make_tickets(2))
        config = make_settings({"b": block}, "b").backend("b")
        checker = create_backend(config)
        try:
            health = await checker.check()
        finally:
            await checker.aclose()
    finally:
        redirector.stop()
        target.stop()
    assert key_seen(redirector.requests)
    assert target.requests == [], "the key followed a redirect to another port"
    assert {row["error_class"] for row in rows} == {"RequestRejected"}
    assert all("not followed" in row["error_message"] for row in rows)
    assert not health.ok
    assert SENTINEL not in health.detail


async def test_exports_carry_no_key(tmp_path: Path) -> None:
    """Route with the key through an echoing server, label the tickets, export every format."""
    server = echo_answer_server("openai-stream", "echo_in_reason_and_model").start()
    try:
        block = keyed_block("openai-stream", server.root)
        settings = make_settings({"b": block}, "b")
        words = ["refund", "parcel", "password", "crash", "invoice", "courier", "login", "bug"]
        tickets = [
            Ticket(id=f"E-{i}", text=f"[case-{i}] {words[i % 8]} {words[(i * 3) % 8]} #{i * 7919}")
            for i in range(30)
        ]
        rows, _ = await route_batch(tmp_path, settings, tickets)
    finally:
        server.stop()
    assert key_seen(server.requests)
    assert all(row["label"] == "billing" for row in rows)
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    db = tmp_path / "triage.db"
    with Store(db) as store:
        for index, ticket in enumerate(tickets):
            store.add_label(ticket.id, list(LABELS)[index % 4], agent="ann", source="accept")
        for fmt in export.FORMATS:
            export.export(store, taxonomy, fmt=fmt, out=tmp_path / fmt, val_fraction=0.2, seed=1)
    files = [path for path in tmp_path.rglob("*") if path.is_file() and path.parent != tmp_path]
    assert len(files) >= 6
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), path
    scan_store(db)


def test_backends_check_json_hides_the_key(tmp_path: Path) -> None:
    """`triagedesk backends --check --json` against servers that answer 401/500 echoing the
    request headers, in a subprocess with the key in its environment."""
    servers = {
        "oai-401": EchoServer(401),
        "oai-500": EchoServer(500),
        "claude-401": EchoServer(401),
        "claude-500": EchoServer(500),
        "llama-401": EchoServer(401),
        "llama-500": EchoServer(500),
    }
    for server in servers.values():
        server.start()
    try:
        lines = []
        for name, server in servers.items():
            kind = {"oai": "openai", "claude": "anthropic", "llama": "llamacpp"}[name.split("-")[0]]
            block = keyed_block(kind, server.root)  # type: ignore[arg-type]
            lines.append(f'[backends."{name}"]')
            lines += [f"{key} = {json.dumps(value)}" for key, value in block.items()]
        lines += ["[routing]", 'backend = "oai-401"', "[labels]", 'billing = "money"']
        config = tmp_path / "config.toml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {**os.environ, KEY_ENV: SENTINEL, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "tui", "--config", str(config), "--db", str(tmp_path / "d.db")]
            + ["backends", "--check", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        for server in servers.values():
            server.stop()
    assert done.returncode == 0, done.stderr
    for name, server in servers.items():
        assert key_seen(server.requests), f"{name} never saw the key"
    assert SENTINEL not in done.stdout + done.stderr
    entries = {entry["name"]: entry for entry in json.loads(done.stdout)}
    assert {name for name, e in entries.items() if e["ok"] is False} >= set(servers)
