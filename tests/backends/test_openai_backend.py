"""OpenAIBackend against a real loopback Chat Completions server: results, faults, negotiation."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.http_common import join_url, parse_retry_after
from backends.http_reading import FirstLine, iter_lines, iter_sse, sse_events
from backends.openai_compat import OpenAIBackend, label_logprob_confidence
from tests.backends.finalizer import finalized
from tests.servers.openai_server import OpenAIServer, Reply, openai_server
from tui.core.backend import (
    AuthenticationFailed,
    Backend,
    BackendError,
    BadResponse,
    ConnectionFailed,
    Health,
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

SENTINEL = "sk-SENTINEL-3f9a1c77e2"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_OPENAI_KEY", SENTINEL)
    return SENTINEL


def make_config(server: OpenAIServer, **values: Any) -> BackendConfig:
    base = {
        "type": "openai",
        "name": "oai",
        "base_url": server.url,
        "model": "test-model",
        "api_key_env": "TEST_OPENAI_KEY",
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.60,
        "timeout_s": 5,
        "max_retries": 2,
    }
    return BackendConfig.model_validate({**base, **values})


@pytest.fixture
async def make_backend(keyed: str) -> AsyncIterator[Any]:
    """Build backends with tiny retry delays whose waits are recorded; close them after."""
    built: list[OpenAIBackend] = []

    def build(server: OpenAIServer, **values: Any) -> OpenAIBackend:
        backend = OpenAIBackend(make_config(server, **values))
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


def assert_no_key(error: BaseException) -> None:
    assert SENTINEL not in str(error)
    assert SENTINEL not in (getattr(error, "raw_output", None) or "")


@pytest.mark.parametrize("stream", [True, False])
async def test_route_fills_every_result_field(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy, stream: bool
) -> None:
    server.label, server.confidence = "shipping", 0.75
    server.usage = (1234, 17, 200)
    server.timings = {"prompt_ms": 12.5, "predicted_ms": 40.25}
    backend = make_backend(server, stream=stream, cached_input_usd_per_mtok=0.075)

    result = await backend.route(ticket, taxonomy)

    assert result.label == "shipping"
    assert result.confidence == 0.75
    assert result.confidence_source == "self-reported"
    assert result.raw_output == '{"label": "shipping", "confidence": 0.75}'
    assert result.model == "test-model"
    assert result.prompt_version == prompt_version(taxonomy)
    assert (result.input_tokens, result.output_tokens, result.cached_input_tokens) == (
        1234,
        17,
        200,
    )
    assert (result.server_prompt_ms, result.server_gen_ms) == (12.5, 40.25)
    assert result.total_ms is not None and result.total_ms > 0
    if stream:
        assert result.ttft_ms is not None and 0 < result.ttft_ms <= result.total_ms
    else:
        assert result.ttft_ms is None
    expected = ((1234 - 200) * 0.15 + 200 * 0.075 + 17 * 0.60) / 1_000_000
    assert price_result(backend.config, result) == pytest.approx(expected, abs=1e-12)
    assert round(price_result(backend.config, result) * 1000 * 100) == round(expected * 1000 * 100)


async def test_request_shape(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = make_backend(server)
    await backend.route(ticket, taxonomy)

    [request] = server.completions()
    assert request.path == "/v1/chat/completions"
    assert request.header("authorization") == f"Bearer {SENTINEL}"
    body = request.body
    assert body["model"] == "test-model"
    assert body["max_tokens"] == 200
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == list(taxonomy.names)
    system, user = body["messages"]
    assert system["role"] == "system" and "billing" in system["content"]
    assert user["content"].startswith("<ticket>\n") and user["content"].endswith("\n</ticket>")
    assert user["content"].count("</ticket>") == 1  # the ticket's own fence was neutralised
    assert SENTINEL not in json.dumps(body)


async def test_no_key_configured_sends_no_header(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = make_backend(server, api_key_env=None)
    await backend.route(ticket, taxonomy)
    assert server.completions()[0].header("authorization") is None


async def test_missing_key_variable_is_named_not_sent(
    server: OpenAIServer, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = OpenAIBackend(make_config(server, api_key_env="NOPE_UNSET_KEY"))
    with pytest.raises(AuthenticationFailed, match="NOPE_UNSET_KEY"):
        await backend.route(ticket, taxonomy)
    health = await backend.check()
    assert not health.ok and health.detail == "key variable NOPE_UNSET_KEY is not set"
    assert server.requests == []


async def test_azure_query_string_is_kept(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    backend = make_backend(server, base_url=server.url + "?api-version=2024-10-21")
    await backend.route(ticket, taxonomy)
    request = server.completions()[0]
    assert (request.path, request.query) == ("/v1/chat/completions", "api-version=2024-10-21")


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retries_then_succeeds(
    server: OpenAIServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    status: int,
) -> None:
    server.script(Reply(status=status), Reply(status=status))
    backend = make_backend(server)
    result = await backend.route(ticket, taxonomy)
    assert result.label == "billing"
    assert len(server.completions()) == 3
    assert len(backend.waits) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0.05", 0.05), ("0", 0.0), (formatdate(0, usegmt=True), 0.0)],
)
async def test_retry_after_is_honoured(
    server: OpenAIServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    header: str,
    expected: float,
) -> None:
    server.script(Reply(status=429, headers={"Retry-After": header}))
    backend = make_backend(server)
    await backend.route(ticket, taxonomy)
    assert backend.waits == [expected]


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=990.0) == 10.0
    assert parse_retry_after(formatdate(1000.0, usegmt=True), now=2000.0) == 0.0


async def test_rate_limit_exhausted_carries_retry_after(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.script(*[Reply(status=429, headers={"Retry-After": "0.01"})] * 3)
    backend = make_backend(server, max_retries=1)
    with pytest.raises(RateLimited) as caught:
        await backend.route(ticket, taxonomy)
    assert caught.value.retry_after == 0.01
    assert len(server.completions()) == 2


FAULTS: list[tuple[Reply, type[BackendError], bool]] = [
    (Reply(status=429), RateLimited, True),
    (Reply(status=500), ServerError, True),
    (Reply(status=502, body="<html>Bad gateway</html>"), ServerError, True),
    (Reply(status=503), ServerError, True),
    (Reply(status=401), AuthenticationFailed, True),
    (Reply(status=403), AuthenticationFailed, True),
    (
        Reply(status=404, body='{"error": {"message": "The model x does not exist"}}'),
        ModelNotFound,
        True,
    ),
    (Reply(status=404, body="no such route"), RequestRejected, True),
    (Reply(status=400), RequestRejected, True),
    (Reply(fault="reset"), ConnectionFailed, True),
    (Reply(fault="reset"), ConnectionFailed, False),
    (Reply(fault="reset_before"), ConnectionFailed, True),
    (Reply(fault="stall"), Timeout, True),
    (Reply(fault="stall"), Timeout, False),
    (Reply(fault="truncate"), BadResponse, True),
    (Reply(fault="empty_choices"), BadResponse, True),
    (Reply(fault="empty_choices"), BadResponse, False),
    (Reply(fault="huge"), BadResponse, True),
    (Reply(fault="huge"), BadResponse, False),
]


def _timeout_for(reply: Reply) -> float:
    """A stall is cut at 0.3 s; every other fault gets a timeout no loaded machine reaches, since
    `timeout_s` bounds the whole attempt and must not be what ends a fast, faulty reply."""
    return 0.3 if reply.fault == "stall" else 5.0


@pytest.mark.parametrize(("reply", "error", "stream"), FAULTS)
async def test_fault_maps_to_typed_error(
    server: OpenAIServer,
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


@pytest.mark.parametrize(
    ("reply", "stream", "message"),
    [
        (Reply(fault="huge"), True, "exceeds the 1000000-byte cap"),
        (Reply(fault="huge"), False, "exceeds the 1000000-byte cap"),
        (Reply(fault="truncate"), True, "truncated stream"),
        (Reply(fault="empty_choices"), True, "no choices"),
    ],
)
async def test_bad_reply_messages(
    server: OpenAIServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    reply: Reply,
    stream: bool,
    message: str,
) -> None:
    server.script(reply)
    backend = make_backend(server, max_retries=0, stream=stream, timeout_s=_timeout_for(reply))
    with pytest.raises(BadResponse, match=message):
        await backend.route(ticket, taxonomy)
    assert len(server.completions()) == 1  # no repair round for a broken transport


async def test_error_text_quotes_server_but_never_the_key(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    echoed = (
        f'{{"error": {{"message": "Incorrect API key provided: {SENTINEL}. ' + "x" * 500 + '"}}'
    )
    server.script(Reply(status=401, body=echoed))
    backend = make_backend(server, max_retries=0)
    with pytest.raises(AuthenticationFailed) as caught:
        await backend.route(ticket, taxonomy)
    message = str(caught.value)
    assert "Incorrect API key provided: [redacted]" in message
    assert len(message) < 260
    assert_no_key(caught.value)


async def test_connection_refused(make_backend: Any, ticket: Ticket, taxonomy: Taxonomy) -> None:
    with openai_server() as gone:
        pass
    backend = make_backend(gone, max_retries=0)
    with pytest.raises(ConnectionFailed):
        await backend.route(ticket, taxonomy)
    health = await backend.check()
    assert not health.ok and health.detail.startswith("connection refused")


async def test_reset_then_ok_is_retried(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.script(Reply(fault="reset"), Reply(fault="stall", stall_s=1.0))
    backend = make_backend(server, timeout_s=0.3)
    result = await backend.route(ticket, taxonomy)
    assert result.label == "billing" and len(server.completions()) == 3


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (Reply(content="{label: billing"), BadResponse),
        (Reply(label="refunds"), LabelNotInTaxonomy),
        (Reply(confidence=math.nan), InvalidConfidence),
        (Reply(confidence=math.inf), InvalidConfidence),
        (Reply(confidence=-0.2), InvalidConfidence),
        (Reply(confidence=1.5), InvalidConfidence),
    ],
)
async def test_bad_answer_is_repaired_once(
    server: OpenAIServer,
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
    first, second = server.completions()
    assert second.body["messages"][:2] == first.body["messages"]
    assistant, repair = second.body["messages"][2:]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == (bad.content or assistant["content"])
    assert repair["role"] == "user" and repair["content"].startswith(
        "Your previous answer was rejected"
    )
    assert (result.input_tokens, result.output_tokens) == (240, 24)  # both calls are billed

    server.script(bad, bad)
    with pytest.raises(error) as caught:
        await backend.route(ticket, taxonomy)
    assert type(caught.value) is error
    assert caught.value.raw_output is not None
    assert len(server.completions()) == 4


async def test_json_schema_rejection_falls_back_and_is_remembered(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.reject_json_schema = True
    backend = make_backend(server, max_retries=0)

    first = await backend.route(ticket, taxonomy)
    second = await backend.route(ticket, taxonomy)

    assert first.label == second.label == "billing"
    kinds = [r.body["response_format"]["type"] for r in server.completions()]
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert server.completions()[1].body["response_format"]["schema"]["required"] == [
        "label",
        "confidence",
    ]
    assert backend.format_mode == "json_object"


async def test_concurrent_rejections_step_down_once(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.reject_json_schema = True
    backend = make_backend(server, max_retries=0)
    results = await asyncio.gather(*(backend.route(ticket, taxonomy) for _ in range(6)))
    assert {r.label for r in results} == {"billing"}
    assert backend.format_mode == "json_object"


async def test_reasoning_model_parameters_are_negotiated(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    max_tokens = (
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )
    temperature = "Unsupported value: 'temperature' does not support 0.0 with this model."
    server.script(
        Reply(status=400, body=json.dumps({"error": {"message": max_tokens}})),
        Reply(status=400, body=json.dumps({"error": {"message": temperature}})),
    )
    backend = make_backend(server, max_retries=0)
    await backend.route(ticket, taxonomy)
    await backend.route(ticket, taxonomy)
    bodies = [r.body for r in server.completions()]
    assert ["max_tokens" in b for b in bodies] == [True, False, False, False]
    assert [b.get("max_completion_tokens") for b in bodies] == [None, 200, 200, 200]
    assert ["temperature" in b for b in bodies] == [True, True, False, False]


async def test_response_format_refused_entirely_uses_prompt_only(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    rejection = '{"error": {"message": "response_format is not supported"}}'
    server.script(Reply(status=400, body=rejection), Reply(status=400, body=rejection))
    backend = make_backend(server, max_retries=0)
    await backend.route(ticket, taxonomy)
    await backend.route(ticket, taxonomy)
    bodies = [r.body for r in server.completions()]
    assert [b.get("response_format", {}).get("type") for b in bodies] == [
        "json_schema",
        "json_object",
        None,
        None,
    ]


async def test_logprob_confidence(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.label, server.confidence, server.label_probability = "technical", 0.99, 0.8
    for stream in (True, False):
        backend = make_backend(server, stream=stream)
        result = await backend.route(ticket, taxonomy)
        assert result.label == "technical"
        assert result.confidence_source == "logprob"
        assert result.confidence == pytest.approx(0.8)


async def test_logprobs_rejection_is_dropped_and_remembered(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    server.reject_logprobs = True
    backend = make_backend(server, max_retries=0)
    result = await backend.route(ticket, taxonomy)
    await backend.route(ticket, taxonomy)
    assert result.confidence_source == "self-reported"
    assert [r.body.get("logprobs") for r in server.completions()] == [True, None, None]


def test_label_logprob_confidence_edges() -> None:
    tokens = [('{"', 0.0), ("label", 0.0), ('":"', 0.0), ("bill", -0.1), ("ing", -0.2), ('"}', 0.0)]
    assert label_logprob_confidence(tokens) == pytest.approx(math.exp(-0.3))
    assert label_logprob_confidence([]) is None
    assert label_logprob_confidence([("hello", -1.0)]) is None


async def test_no_redirect_is_followed(
    server: OpenAIServer, make_backend: Any, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    with openai_server() as elsewhere:
        location = elsewhere.url + "/chat/completions"
        server.script(Reply(status=307, fault="redirect", headers={"Location": location}))
        backend = make_backend(server, max_retries=0)
        with pytest.raises(RequestRejected, match="redirect"):
            await backend.route(ticket, taxonomy)
        assert elsewhere.requests == []


async def test_check(server: OpenAIServer, make_backend: Any) -> None:
    backend = make_backend(server)
    health = await backend.check()
    assert health.ok and health.detail == "reachable, model test-model listed"
    assert server.requests[-1].header("authorization") == f"Bearer {SENTINEL}"

    server.models = ["other-model"]
    health = await backend.check()
    assert not health.ok and "not listed" in health.detail

    server.models = []
    assert (await backend.check()).ok
    server.models = None
    assert (await backend.check()).ok


async def test_model_property_and_client_settings(server: OpenAIServer, make_backend: Any) -> None:
    backend = make_backend(server, max_concurrency=3, timeout_s=0.3)
    assert backend.model == "test-model" and backend.name == "oai" and backend.type == "openai"
    assert isinstance(backend, Backend)
    client = backend._client_now()
    assert client.follow_redirects is False
    assert client.timeout == httpx.Timeout(0.3)
    await backend.aclose()
    assert backend._client is None


def test_join_url() -> None:
    assert join_url("https://api.openai.com/v1", "chat/completions") == (
        "https://api.openai.com/v1/chat/completions"
    )
    assert join_url("https://x.openai.azure.com/openai/deployments/d/?api-version=1", "models") == (
        "https://x.openai.azure.com/openai/deployments/d/models?api-version=1"
    )


@pytest.mark.parametrize("stream", [True, False])
async def test_a_route_leaves_no_reader_to_the_loops_finalizer(
    server: OpenAIServer,
    make_backend: Any,
    ticket: Ticket,
    taxonomy: Taxonomy,
    stream: bool,
) -> None:
    """Every reader under a reply (ours, httpx's, the aiohttp transport's) is closed where
    the answer ends, [DONE] included, rather than left for the garbage collector."""
    backend = make_backend(server, stream=stream, http_transport="aiohttp")
    with finalized() as seen:
        for _ in range(3):
            result = await backend.route(ticket, taxonomy)
            assert result.label == server.label
        gc.collect()
    assert seen == []


async def test_a_stream_closed_early_leaves_no_reader_to_the_loops_finalizer(
    server: OpenAIServer, make_backend: Any
) -> None:
    """Stopping at the first event and closing the events closes every reader below."""
    backend = make_backend(server, stream=True, http_transport="aiohttp")
    body = {"model": "test-model", "messages": [], "stream": True}
    url = join_url(server.url, "chat/completions")
    with finalized() as seen:
        async with backend._client_now().stream("POST", url, json=body) as response:
            events = sse_events(response, FirstLine())
            async for event in events:
                assert event.data
                break
            await events.aclose()
            assert response.is_stream_consumed
        gc.collect()
    assert seen == []


async def test_iter_sse_joins_multiline_data() -> None:
    body = b": hello\r\nevent: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3"
    response = httpx.Response(200, content=body)
    events = [event async for event in iter_sse(iter_lines(response))]
    assert [(e.event, e.data) for e in events] == [("a", "1\n2"), ("", "3")]


@pytest.fixture
def llama_cpp_python_server(tiny_gguf: Path) -> Iterator[str]:
    """A real `python -m llama_cpp.server` on a random-weight GGUF; its base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    from tests.servers.llama_cpp_python import ServerDidNotStart, llama_server

    try:
        with llama_server(tiny_gguf) as url:
            yield url
    except ServerDidNotStart:
        pytest.skip("llama_cpp.server did not start")


@pytest.mark.slow
async def test_real_llama_cpp_python_server(
    llama_cpp_python_server: str, ticket: Ticket, taxonomy: Taxonomy
) -> None:
    """The real server refuses json_schema with HTTP 500; json_object (a grammar) is adopted.

    Random weights answer a valid label (the grammar enforces the enum) with an arbitrary
    number, so the call may end in InvalidConfidence: what matters is the negotiation.
    """
    config = BackendConfig.model_validate(
        {"type": "openai", "name": "lcp", "base_url": llama_cpp_python_server, "model": "tiny"}
    )
    backend = OpenAIBackend(config)
    try:
        assert await backend.check() == Health(True, "reachable, model tiny listed")
        for _ in range(2):
            with contextlib.suppress(InvalidConfidence):
                result = await backend.route(ticket, taxonomy)
                assert result.label in taxonomy and result.input_tokens
        assert backend.format_mode == "json_object"
    finally:
        await backend.aclose()
