"""`triagedesk serve` over real HTTP: without the token the page and the websocket are refused
(401/403) and no app process starts; with it the page loads, the cookie it sets is HttpOnly and
SameSite=Strict, and the websocket starts the app. The token never reaches the server's output
nor the app processes' environment."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.screens.helpers import make_tickets
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    """The processes `pid` started (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def start_serve(home: Path, *args: str, env_token: str | None = None) -> Served:
    db = home / "serve.db"
    with Store(db) as store:
        tickets, _ = make_tickets(6)
        store.import_tickets(tickets, source="test")
    port = free_port()
    env = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for var in ("TRIAGEDESK_DB", "TRIAGEDESK_CONFIG", "TRIAGEDESK_SERVE_TOKEN"):
        env.pop(var, None)
    if env_token is not None:
        env["TRIAGEDESK_SERVE_TOKEN"] = env_token
    log = home / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tui", "--db", str(db), "serve", "--port", str(port), *args],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            httpx.get(url + "/", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail(f"serve did not listen within 90 s: {log.read_text()}")
    return Served(process, url, log)


def stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home = tmp_path / "serve-home"
    home.mkdir()
    server = start_serve(home, env_token=TOKEN)
    yield server
    stop(server)


async def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The status a websocket handshake gets (101 when it opens; then it is closed)."""
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers=headers or {})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


@pytest.mark.slow
def test_without_the_token_nothing_is_served_and_no_app_starts(served: Served) -> None:
    ws = served.url.replace("http", "ws") + "/ws?width=80&height=24"
    assert httpx.get(served.url + "/").status_code == 401
    assert httpx.get(served.url + "/static/js/textual.js").status_code == 401
    assert httpx.get(served.url + "/?token=wrong-token-0123456789").status_code == 403
    wrong_cookie = {"Cookie": "triagedesk_token=wrong-token-0123456789"}
    assert httpx.get(served.url + "/", headers=wrong_cookie).status_code == 403
    assert asyncio.run(ws_status(ws)) == 401
    assert asyncio.run(ws_status(ws, wrong_cookie)) == 403
    assert asyncio.run(ws_status(ws + "&token=" + TOKEN[:-1] + "x")) == 403
    time.sleep(1.0)
    assert descendants(served.process.pid) == []  # no app process was started


@pytest.mark.slow
def test_with_the_token_the_page_loads_and_the_websocket_starts_the_app(served: Served) -> None:
    first = httpx.get(served.url + "/?token=" + TOKEN + "&fontsize=14")
    assert first.status_code == 303 and first.headers["location"] == "/?fontsize=14"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with httpx.Client(base_url=served.url, cookies=first.cookies) as client:
        page = client.get("/?fontsize=14")
        assert page.status_code == 200 and 'data-session-websocket-url="ws://' in page.text
        assert client.get("/static/js/textual.js").status_code == 200

    async def open_app() -> tuple[bytes, list[int], str]:
        headers = {"Cookie": f"triagedesk_token={TOKEN}"}
        async with aiohttp.ClientSession() as session:
            ws_url = served.url.replace("http", "ws") + "/ws?width=100&height=30"
            async with session.ws_connect(ws_url, headers=headers) as ws:
                await ws.send_json(["resize", {"width": 100, "height": 30}])
                received = b""
                deadline = time.monotonic() + 90
                while b"T-" not in received and time.monotonic() < deadline:
                    message = await ws.receive(timeout=90)
                    if message.type == aiohttp.WSMsgType.BINARY:
                        received += message.data
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        received += message.data.encode()
                    else:
                        break
                apps = descendants(served.process.pid)
                environ = ""
                for pid in apps:
                    with contextlib.suppress(OSError):  # an app may have exited already
                        environ += Path(f"/proc/{pid}/environ").read_text(errors="replace")
                return received, apps, environ

    received, apps, environ = asyncio.run(open_app())
    assert apps, "the websocket started no app process"
    assert b"T-" in received  # the inbox's ticket ids reached the browser's terminal
    assert TOKEN not in environ and "TRIAGEDESK_SERVE_TOKEN" not in environ
    stop(served)
    assert TOKEN not in served.log.read_text()  # the access log is off


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "TRIAGEDESK_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-m", "tui", "serve", "--token", "short"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "must be at least 16 characters" in r.stderr and "short" not in r.stdout


@pytest.mark.slow
def test_a_generated_token_is_printed_once_and_works(tmp_path: Path) -> None:
    served = start_serve(tmp_path)
    try:
        deadline = time.monotonic() + 30
        while "?token=" not in served.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        line = next(s for s in served.log.read_text().splitlines() if "?token=" in s)
        token = line.split("?token=", 1)[1].strip()
        assert len(token) >= 16
        assert httpx.get(served.url + "/").status_code == 401
        response = httpx.get(served.url + "/?token=" + token, follow_redirects=True)
        assert response.status_code == 200
    finally:
        stop(served)
