"""AnthropicBackend against a real loopback Messages API server: tool answers, usage, faults."""

from __future__ import annotations

import gc
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from backends.anthropic import AnthropicBackend
from tests.backends.finalizer import finalized
from tests.servers.anthropic_server import AnthropicServer, Reply, anthropic_server
from tui.core.backend import (
    AuthenticationFailed,
    Backend,
    BackendError,
    BadResponse,
    ConnectionFailed,
    InvalidConfidence,
    LabelNotInTaxonomy,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    Timeout,
)
from tui.core.config import BackendConfig
from tui.core.costs import price_result
from tui.core.models import Taxonomy, Ticket
from tui.core.prompt import prompt_version

SENTINEL = "sk-SENTINEL-ant-91b2d4"


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with anthropic_server() as running:
        yield running


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", SENTINEL)
    return SENTINEL


def make_config(server: AnthropicServer, **values: Any) -> BackendConfig:
    base = {
        "type": "anthropic",
        "name": "haiku",
        "base_url": server.url,
        "model": "claude-test",
        "api_key_env": "TEST_ANTHROPIC_KEY",
        "input_usd_per_mtok": 0.80,
        "cached_input_usd_per_mtok": 0.08,
        "output_usd_per_mtok": 4.00,
        "timeout_s": 5,
        "max_retries": 2,
    }
    return BackendConfig.model_validate({**base, **values})


@pytest.fixture
async def make_backend(keyed: str) -> AsyncIterator[Any]:
    """Build backends with tiny retry delays whose waits are recorded; close them after."""
    built: list[AnthropicBackend] = []

    def build(server: AnthropicServer, **values: Any) -> AnthropicBackend:
        backend = AnthropicBackend(make_config(server, **values))
        backend.retry_base_delay = 0.001
        backend.waits = []  # type: ignore[attr-defined]
        real_sleep = backend.retry_sleep

        async def recording_sleep(seconds: float) -> None:
            backend.waits.append(seconds)  # type: ignore[attr-defined]
            await real_sleep(seconds)

        backend.retry_sleep = recording_sleep
        built.append(backend)
        return backend

    yield build
    for backend in built:
        await backend.aclose()


async def test_a_streamed_route_leaves_no_reader_to_the_loops_finalizer(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    """The events are closed where `message_stop` ends the answer, and with them httpx's
    byte-stream generator, rather than left for the garbage collector (CHANGES 21, 24). On
    the default transport (aiohttp): under httpx's own, httpcore keeps generators of its own."""
    server.label = "account"
    backend = make_backend(server, stream=True, http_transport="aiohttp")
    with finalized() as seen:
        for _ in range(3):
            result = await backend.route(ticket, taxonomy)
            assert result.label == "account"
        gc.collect()
    assert seen == []


def assert_no_key(error: BaseException) -> None:
    assert SENTINEL not in str(error)
    assert SENTINEL not in (getattr(error, "raw_output", None) or "")


@pytest.mark.parametrize("stream", [True, False])
async def test_route_fills_every_result_field(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy, stream: bool
) -> None:
    server.label, server.confidence = "account", 0.64
    backend = make_backend(server, stream=stream)

    result = await backend.route(ticket, taxonomy)

    assert result.label == "account"
    assert result.confidence == 0.64
    assert result.confidence_source == "self-reported"
    assert result.raw_output == '{"label": "account", "confidence": 0.64}'
    assert result.model == "claude-test"
    assert result.prompt_version == prompt_version(taxonomy)
    # input = fresh 300 + cache read 100 + cache write 20; cached = the reads
    assert (result.input_tokens, result.cached_input_tokens, result.output_tokens) == (420, 100, 25)
    assert result.total_ms is not None and result.total_ms > 0
    if stream:
        assert result.ttft_ms is not None and 0 < result.ttft_ms <= result.total_ms
    else:
        assert result.ttft_ms is None
    expected = (320 * 0.80 + 100 * 0.08 + 25 * 4.00) / 1_000_000
    cost = price_result(backend.config, result)
    assert cost == pytest.approx(expected, abs=1e-12)
    assert round(cost * 1000 * 100) == round(expected * 1000 * 100)


async def test_request_shape(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = make_backend(server)
    await backend.route(ticket, taxonomy)

    [request] = server.messages()
    assert request.path == "/v1/messages"
    assert request.header("x-api-key") == SENTINEL
    assert request.header("anthropic-version") == "2023-06-01"
    assert request.header("authorization") is None
    body = request.body
    assert body["model"] == "claude-test" and body["max_tokens"] == 200 and body["stream"] is True
    assert "billing" in body["system"]
    [message] = body["messages"]
    assert message["role"] == "user" and message["content"].startswith("<ticket>\n")
    [tool] = body["tools"]
    assert tool["name"] == "route_ticket"
    assert tool["input_schema"]["properties"]["label"]["enum"] == list(taxonomy.names)
    assert body["tool_choice"] == {"type": "tool", "name": "route_ticket"}


async def test_text_answer_is_accepted(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    for stream in (True, False):
        server.script(Reply(body="text-only"))
        result = await make_backend(server, stream=stream).route(ticket, taxonomy)
        assert result.label == "billing"


async def test_missing_key_variable_is_named(
    server: AnthropicServer, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = AnthropicBackend(make_config(server, api_key_env="NOPE_UNSET_KEY"))
    with pytest.raises(AuthenticationFailed, match="NOPE_UNSET_KEY"):
        await backend.route(ticket, taxonomy)
    assert (await backend.check()).detail == "key variable NOPE_UNSET_KEY is not set"
    assert server.requests == []


async def test_default_endpoint_needs_anthropic_api_key(ticket: Ticket, taxonomy: Taxonomy) -> None:
    config = BackendConfig.model_validate({"type": "anthropic", "name": "h", "model": "claude-x"})
    backend = AnthropicBackend(config)
    with pytest.raises(AuthenticationFailed, match="ANTHROPIC_API_KEY"):
        await backend.route(ticket, taxonomy)


@pytest.mark.parametrize("status", [429, 500, 529])
async def test_retries_then_succeeds(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy, status: int
) -> None:
    server.script(Reply(status=status), Reply(status=status))
    backend = make_backend(server)
    assert (await backend.route(ticket, taxonomy)).label == "billing"
    assert len(server.messages()) == 3 and len(backend.waits) == 2


async def test_retry_after_is_honoured(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.script(Reply(status=429, headers={"retry-after": "0.05"}))
    backend = make_backend(server)
    await backend.route(ticket, taxonomy)
    assert backend.waits == [0.05]


async def test_error_event_in_stream_is_retried(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.script(Reply(body="error-event"))
    backend = make_backend(server)
    assert (await backend.route(ticket, taxonomy)).label == "billing"
    assert len(server.messages()) == 2


FAULTS: list[tuple[Reply, type[BackendError], bool]] = [
    (Reply(status=429), RateLimited, True),
    (Reply(status=500), ServerError, True),
    (Reply(status=529), ServerError, True),
    (Reply(status=401), AuthenticationFailed, True),
    (
        Reply(
            status=404,
            body='{"type":"error","error":{"type":"not_found_error","message":"model: x"}}',
        ),
        ModelNotFound,
        True,
    ),
    (Reply(status=400), RequestRejected, True),
    (Reply(body="error-event"), ServerError, True),
    (Reply(fault="reset"), ConnectionFailed, True),
    (Reply(fault="reset_before"), ConnectionFailed, False),
    (Reply(fault="stall"), Timeout, True),
    (Reply(fault="stall"), Timeout, False),
    (Reply(fault="truncate"), BadResponse, True),
    (Reply(fault="huge"), BadResponse, True),
    (Reply(fault="huge"), BadResponse, False),
]


def _timeout_for(reply: Reply) -> float:
    """A stall is cut at 0.3 s; every other fault gets a timeout no loaded machine reaches, since
    `timeout_s` bounds the whole attempt and must not be what ends a fast, faulty reply."""
    return 0.3 if reply.fault == "stall" else 5.0


@pytest.mark.parametrize(("reply", "error", "stream"), FAULTS)
async def test_fault_maps_to_typed_error(
    server: AnthropicServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    reply: Reply,
    error: type[BackendError],
    stream: bool,
) -> None:
    server.script(reply)
    backend = make_backend(server, max_retries=0, stream=stream, timeout_s=_timeout_for(reply))
    with pytest.raises(BackendError) as caught:
        await backend.route(ticket, taxonomy)
    assert type(caught.value) is error
    assert_no_key(caught.value)


async def test_error_text_never_carries_the_key(
    server: AnthropicServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    body = (
        f'{{"type":"error","error":{{"type":"authentication_error","message":"bad {SENTINEL}"}}}}'
    )
    server.script(Reply(status=401, body=body))
    with pytest.raises(AuthenticationFailed, match=r"bad \[redacted\]") as caught:
        await make_backend(server, max_retries=0).route(ticket, taxonomy)
    assert_no_key(caught.value)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Reply(content='{"label": "billing", "confid'), BadResponse),
        (Reply(label="refunds"), LabelNotInTaxonomy),
        (Reply(confidence=math.nan), InvalidConfidence),
        (Reply(confidence=-1), InvalidConfidence),
    ],
)
async def test_bad_answer_is_repaired_once(
    server: AnthropicServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    bad: Reply,
    error: type[BackendError],
) -> None:
    server.script(bad)
    backend = make_backend(server)
    result = await backend.route(ticket, taxonomy)

    assert result.label == "billing"
    first, second = server.messages()
    assert second.body["messages"][0] == first.body["messages"][0]
    assistant, complaint = second.body["messages"][1:]
    assert assistant["role"] == "assistant" and complaint["role"] == "user"
    if bad.content is None:  # a parsable tool call is answered with an error tool_result
        assert assistant["content"][0]["type"] == "tool_use"
        assert complaint["content"][0]["type"] == "tool_result"
        assert complaint["content"][0]["tool_use_id"] == assistant["content"][0]["id"]
        assert complaint["content"][0]["is_error"] is True
    else:
        assert assistant["content"] == bad.content
        assert complaint["content"].startswith("Your previous answer was rejected")
    assert (result.input_tokens, result.output_tokens) == (840, 50)

    server.script(bad, bad)
    with pytest.raises(error) as caught:
        await backend.route(ticket, taxonomy)
    assert type(caught.value) is error
    assert len(server.messages()) == 4


async def test_check(server: AnthropicServer, make_backend: Any) -> None:
    backend = make_backend(server)
    health = await backend.check()
    assert health.ok and health.detail == "reachable, model claude-test listed"
    assert server.requests[-1].path == "/v1/models"
    assert server.requests[-1].header("x-api-key") == SENTINEL

    server.models = ["claude-other"]
    assert not (await backend.check()).ok
    assert (await make_backend(server, model="claude-3-5-haiku-latest").check()).ok


async def test_check_connection_refused(make_backend: Any) -> None:
    with anthropic_server() as gone:
        pass
    health = await make_backend(gone).check()
    assert not health.ok and health.detail.startswith("connection refused")


async def test_properties(server: AnthropicServer, make_backend: Any) -> None:
    backend = make_backend(server)
    assert (backend.name, backend.type, backend.model) == ("haiku", "anthropic", "claude-test")
    assert isinstance(backend, Backend)
