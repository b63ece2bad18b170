"""The direct aiohttp exchange fails exactly as the httpx-over-aiohttp path it replaces.

With `http_transport = "aiohttp"` the HTTP backends post straight on aiohttp
(`backends.aiohttp_exchange`); the same backend with its sender removed goes through
httpx's client and `PreciseAiohttpTransport`, as every request did before. Each fault of the
fault matrix is played against both, on real loopback servers, and the two outcomes (the
error's class, message, raw output and Retry-After, or the answer) must be the same; the
requests the server saw must be the same too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from backends.aiohttp_exchange import AiohttpSender, ReplyHeaders
from backends.http_backend import HTTPBackend
from tests.reliability.fault_servers import FaultName, FaultyOpenAIServer, Plan, free_port
from tests.reliability.test_fault_matrix import (
    FAULTS_BY_NAME,
    LABELS,
    TIMEOUT_S,
    BackendKind,
    backend_block,
    server_for,
    server_root,
)
from tui.core import registry
from tui.core.backend import BackendError, RouteResult
from tui.core.config import BackendConfig
from tui.core.models import Label, Taxonomy, Ticket

HTTP_BACKENDS: tuple[BackendKind, ...] = ("openai-stream", "openai", "anthropic", "llamacpp")
TAXONOMY = Taxonomy(labels=tuple(Label(name=n, description=d) for n, d in LABELS.items()))
TICKET = Ticket(id="T-0", text="[case-0] I was charged twice for order 1000.")


def _build(kind: BackendKind, root: str, timeout_s: float, direct: bool) -> HTTPBackend[Any]:
    block = backend_block(kind, root, timeout_s=timeout_s, max_retries=0)
    backend = registry.create_backend(BackendConfig.model_validate({**block, "name": "t"}))
    assert isinstance(backend, HTTPBackend)
    backend._client_now()
    assert isinstance(backend._sender, AiohttpSender)  # the default transport is aiohttp's
    if not direct:
        backend._sender = None
    return backend


def _counted(backend: HTTPBackend[Any]) -> list[int]:
    """Count the posts that went through the direct sender."""
    calls = [0]
    sender = backend._sender
    if sender is not None:
        post = sender.post

        def counting(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            return post(*args, **kwargs)

        sender.post = counting  # type: ignore[method-assign]
    return calls


def _outcome(outcome: RouteResult | BaseException, port: int) -> tuple[Any, ...]:
    """What a decision stores of an outcome, the server's port made neutral."""
    if isinstance(outcome, RouteResult):
        return ("answer", outcome.label, outcome.confidence, outcome.input_tokens)
    assert isinstance(outcome, BackendError), repr(outcome)
    neutral: Callable[[str | None], str | None] = lambda text: (  # noqa: E731
        None if text is None else re.sub(rf"\b{port}\b", "PORT", text)
    )
    return (
        outcome.error_class,
        neutral(str(outcome)),
        neutral(outcome.raw_output),
        getattr(outcome, "retry_after", None),
    )


async def _play(kind: BackendKind, fault: FaultName, direct: bool) -> tuple[Any, ...]:
    """Route one ticket against a server playing `fault` on every request."""
    plan = Plan(fault)
    server = server_for(kind, plan).start()
    try:
        root = server_root(server)
        if fault == "connect_refused":
            root = f"http://127.0.0.1:{free_port()}"
        port = int(root.rsplit(":", 1)[1].split("/")[0])
        timeout_s = FAULTS_BY_NAME[fault].timeout_s if fault != "ok" else TIMEOUT_S
        backend = _build(kind, root, timeout_s, direct)
        calls = _counted(backend)
        try:
            outcome: RouteResult | BaseException = await backend.route(TICKET, TAXONOMY)
        except BackendError as error:
            outcome = error
        finally:
            await backend.aclose()
        assert calls[0] >= (1 if direct else 0)
        if not direct:
            assert calls == [0]
        return _outcome(outcome, port)
    finally:
        server.stop()


@pytest.mark.parametrize("kind", HTTP_BACKENDS)
@pytest.mark.parametrize("fault", FaultName.__args__)  # type: ignore[attr-defined]
async def test_direct_exchange_fails_as_the_httpx_path_does(
    kind: BackendKind, fault: FaultName
) -> None:
    direct = await _play(kind, fault, direct=True)
    through_httpx = await _play(kind, fault, direct=False)
    assert direct == through_httpx
    if fault == "ok":
        assert direct[:2] == ("answer", "billing")
    elif fault in ("connect_refused", "reset_before_reply", "broken_chunked"):
        assert direct[0] == "ConnectionFailed", direct
    elif fault in ("read_timeout", "stalled_stream", "trickle", "keepalive_forever"):
        assert direct[0] == "Timeout", direct
    elif fault == "http_429_retry_after" and kind != "llamacpp":
        assert direct[0] == "RateLimited" and direct[3] == pytest.approx(0.05), direct


@pytest.mark.parametrize("stream", [True, False])
async def test_direct_exchange_sends_what_httpx_sends(stream: bool) -> None:
    """Same method, path, headers (key included) and JSON body on the wire from both paths."""
    seen: list[list[tuple[str, str, dict[str, str], Any]]] = []
    for direct in (True, False):
        server = FaultyOpenAIServer(Plan("ok")).start()
        try:
            kind: BackendKind = "openai-stream" if stream else "openai"
            backend = _build(kind, server.root, 5.0, direct)
            await backend.route(TICKET, TAXONOMY)
            await backend.aclose()
            port = str(server.root.rsplit(":", 1)[1])
            seen.append(
                [
                    (
                        r.method,
                        r.path,
                        {k: v.replace(port, "PORT") for k, v in r.headers.items()},
                        r.body,
                    )
                    for r in server.requests
                ]
            )
        finally:
            server.stop()
    assert seen[0] == seen[1]
    assert seen[0] and seen[0][0][2]["content-type"] == "application/json"


def test_reply_headers_read_as_httpx_reads_them() -> None:
    """Names without case, repeated headers joined, values that are not ASCII decoded as
    httpx decodes them: the checks on Content-Encoding and Content-Type see the same text."""
    raw = (
        (b"Content-Type", b"text/event-stream"),
        (b"content-encoding", b"gzip"),
        (b"Content-Encoding", b"gzip"),
        (b"Retry-After", b"0.05"),
        (b"Location", "https://exämple.test/ü".encode()),
        (b"X-Latin", "café".encode("latin-1")),
    )
    ours = ReplyHeaders(raw)
    theirs = httpx.Headers(list(raw))
    for name in (
        "content-type",
        "CONTENT-ENCODING",
        "retry-after",
        "location",
        "x-latin",
        "content-length",
    ):
        assert ours.get(name) == theirs.get(name), name
        assert ours.get(name, "") == theirs.get(name, ""), name
    assert ours.get("content-encoding") == "gzip, gzip"


@pytest.mark.parametrize("direct", [True, False])
async def test_an_environment_proxy_is_ignored_as_before(
    monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """httpx ignores the environment's proxies beside a transport of one's own, and the
    aiohttp session does not read them: a proxy variable changes neither path."""
    server = FaultyOpenAIServer(Plan("ok")).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
        backend = _build("openai", server.root, 5.0, direct=direct)
        calls = _counted(backend)
        result = await backend.route(TICKET, TAXONOMY)
        await backend.aclose()
        assert result.label == "billing" and len(server.requests) == 1
        assert calls == ([1] if direct else [0])
    finally:
        server.stop()
