"""LlamaCppLocalBackend on a real (tiny, random-weight) GGUF model, and the same model served
by the real `llama_cpp.server` reached through the OpenAI-compatible backend.

Random weights answer nonsense, so these tests assert the contract, not the labels: every
answer names a label of the taxonomy (the schema grammar sees to it), or the ticket fails with
a precise error class; nothing crashes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.llamacpp_local import LlamaCppLocalBackend
from tests.backends.conftest import backend_config
from tests.servers.gguf_model import write_tiny_llama
from tui.core.backend import (
    BackendError,
    BackendUnavailable,
    BadResponse,
    InvalidConfidence,
    LabelNotInTaxonomy,
    ModelNotFound,
    RequestRejected,
    RouteResult,
    Timeout,
)
from tui.core.models import Taxonomy, Ticket
from tui.core.registry import create_backend

pytest.importorskip("llama_cpp", reason="llama-cpp-python (test group) runs the model")

TICKETS = (
    "I was charged twice for order 1234, please refund one payment.",
    "Where is my parcel? Tracking has said 'in transit' for ten days.",
    "The app crashes whenever I open the settings page.",
    "I forgot my password and the reset e-mail never arrives.",
)
ALLOWED_ERRORS = (InvalidConfidence, BadResponse)
"""What random weights may legitimately cause: a malformed or out-of-range confidence."""


def make_backend(model_path: Path | str, **values: Any) -> LlamaCppLocalBackend:
    settings = {"model_path": str(model_path), "n_threads": 1, **values}
    config = backend_config("llamacpp-local", name="gguf", **settings)
    return LlamaCppLocalBackend(config)


def assert_label_in_taxonomy(result: RouteResult | BackendError, taxonomy: Taxonomy) -> None:
    """A valid answer's label, or the label inside a rejected confidence's raw output."""
    if isinstance(result, RouteResult):
        assert result.label in taxonomy
        return
    assert isinstance(result, ALLOWED_ERRORS), repr(result)
    assert not isinstance(result, LabelNotInTaxonomy), repr(result)
    if isinstance(result, InvalidConfidence):
        assert result.raw_output is not None
        assert json.loads(result.raw_output)["label"] in taxonomy


async def outcome(
    backend: LlamaCppLocalBackend | Any, text: str, taxonomy: Taxonomy
) -> RouteResult | BackendError:
    try:
        return await backend.route(Ticket(id=str(hash(text)), text=text), taxonomy)
    except BackendError as error:
        return error


@pytest.fixture(scope="module")
def seeded_ggufs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Several random models: different weights answer differently (some with bad confidence)."""
    folder = tmp_path_factory.mktemp("seeded")
    return [write_tiny_llama(folder / f"tiny-{seed}.gguf", seed=seed) for seed in range(5)]


async def test_labels_are_in_the_taxonomy_or_the_error_is_precise(
    seeded_ggufs: list[Path], taxonomy: Taxonomy
) -> None:
    successes = 0
    for path in seeded_ggufs:
        backend = make_backend(path)
        for text in TICKETS[:2]:
            result = await outcome(backend, text, taxonomy)
            assert_label_in_taxonomy(result, taxonomy)
            if isinstance(result, BackendError):
                continue
            successes += 1
            assert result.label in taxonomy
            assert result.confidence is not None and 0 <= result.confidence <= 1
            assert result.confidence_source == "self-reported"
            assert result.model == path.stem
            assert result.input_tokens is not None and result.input_tokens > 100
            assert result.output_tokens is not None and result.output_tokens > 0
            assert result.server_prompt_ms is not None and result.server_gen_ms is not None
            assert result.ttft_ms is None
            assert result.total_ms is not None and result.total_ms > 0
        await backend.aclose()
    assert successes > 0, "no random model produced a valid answer"


async def test_model_loads_lazily_once_and_again_after_aclose(
    tiny_gguf: Path, taxonomy: Taxonomy
) -> None:
    backend = make_backend(tiny_gguf)
    health = await backend.check()
    assert health.ok and "not loaded yet" in health.detail

    first = await outcome(backend, TICKETS[0], taxonomy)
    second = await outcome(backend, TICKETS[1], taxonomy)
    if isinstance(first, RouteResult) and isinstance(second, RouteResult):
        assert first.server_load_ms is not None and first.server_load_ms > 0
        assert second.server_load_ms is None
    assert "(" in (await backend.check()).detail and "loaded)" in (await backend.check()).detail

    await backend.aclose()
    await backend.aclose()
    assert "not loaded yet" in (await backend.check()).detail
    again = await outcome(backend, TICKETS[0], taxonomy)
    assert type(again) is type(first)
    if isinstance(again, RouteResult) and isinstance(first, RouteResult):
        assert (again.label, again.raw_output) == (first.label, first.raw_output)
        assert again.server_load_ms is not None
    await backend.aclose()


async def test_concurrent_tickets_run_one_at_a_time_without_crashing(
    tiny_gguf: Path, taxonomy: Taxonomy
) -> None:
    backend = make_backend(tiny_gguf)

    results = await asyncio.gather(*(outcome(backend, text, taxonomy) for text in TICKETS * 2))

    for result in results:
        assert_label_in_taxonomy(result, taxonomy)
    # Greedy decoding on one model: the same ticket gets the same answer, whatever the order.
    assert [type(r) for r in results[:4]] == [type(r) for r in results[4:]]
    await backend.aclose()


async def test_deadline_aborts_the_computation_and_the_model_stays_usable(
    tiny_gguf: Path, taxonomy: Taxonomy
) -> None:
    backend = make_backend(tiny_gguf, timeout_s=0.000_001)
    await outcome(backend, "warm-up: load the model first", taxonomy)

    with pytest.raises(Timeout, match="aborted"):
        await backend.route(Ticket(id="slow", text="A brand new ticket text " * 20), taxonomy)

    backend.config = backend.config.model_copy(update={"timeout_s": 30.0})
    result = await outcome(backend, TICKETS[2], taxonomy)
    assert isinstance(result, RouteResult | InvalidConfidence | BadResponse)
    await backend.aclose()


async def test_prompt_longer_than_the_context_is_rejected(
    tiny_gguf: Path, taxonomy: Taxonomy
) -> None:
    backend = make_backend(tiny_gguf, n_ctx=256)

    with pytest.raises(RequestRejected, match="n_ctx is 256"):
        await backend.route(Ticket(id="long", text=TICKETS[0]), taxonomy)
    await backend.aclose()


async def test_missing_or_broken_model_file(tmp_path: Path, taxonomy: Taxonomy) -> None:
    missing = make_backend(tmp_path / "absent.gguf")
    broken_path = tmp_path / "broken.gguf"
    broken_path.write_bytes(b"GGUF" + bytes(100))
    broken = make_backend(broken_path)

    with pytest.raises(ModelNotFound, match="absent.gguf"):
        await missing.route(Ticket(id="1", text="hello"), taxonomy)
    health = await missing.check()
    assert not health.ok and "not found" in health.detail
    with pytest.raises(BackendError, match="cannot load GGUF model"):
        await broken.route(Ticket(id="1", text="hello"), taxonomy)


async def test_without_llama_cpp_installed_it_names_the_extra(
    tiny_gguf: Path, taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    backend = make_backend(tiny_gguf)

    with pytest.raises(BackendUnavailable, match=r"pip install 'triagedesk\[llamacpp\]'"):
        await backend.route(Ticket(id="1", text="hello"), taxonomy)
    health = await backend.check()
    assert not health.ok and "triagedesk[llamacpp]" in health.detail


def test_registry_builds_it(tiny_gguf: Path) -> None:
    backend = create_backend(backend_config("llamacpp-local", model_path=str(tiny_gguf)))
    assert isinstance(backend, LlamaCppLocalBackend)
    assert backend.model == "tiny-llama"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real `python -m llama_cpp.server` serving the tiny model; yields its /v1 URL."""
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(module, reason="llama_cpp.server needs the test group's web stack")
    # Seed 1 answers with a valid confidence through the server's chat path.
    model = write_tiny_llama(tmp_path_factory.mktemp("served") / "served-tiny.gguf", seed=1)
    port = _free_port()
    log = (tmp_path_factory.mktemp("served-log") / "server.log").open("w+")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    command += ["--model_alias", "tiny-llama", "--n_threads", "1"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not answer within 120 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
async def test_real_llama_cpp_server_through_the_openai_backend(
    llama_cpp_server: str, taxonomy: Taxonomy, stream: bool
) -> None:
    openai_compat = pytest.importorskip("backends.openai_compat")
    config = backend_config(
        "openai", name="served", base_url=llama_cpp_server, model="tiny-llama", stream=stream
    )
    backend = openai_compat.OpenAIBackend(config)

    results = [await outcome(backend, text, taxonomy) for text in TICKETS]

    for result in results:
        assert_label_in_taxonomy(result, taxonomy)
    answered = [result for result in results if isinstance(result, RouteResult)]
    assert answered, results
    for result in answered:
        assert result.model == "tiny-llama"
        if not stream:  # llama-cpp-python's server sends no usage in streams
            assert result.input_tokens and result.output_tokens
    # llama-cpp-python ignores `json_schema`; the backend must have fallen back to json_object.
    assert backend.format_mode == "json_object"
    assert (await backend.check()).ok
    await backend.aclose()
