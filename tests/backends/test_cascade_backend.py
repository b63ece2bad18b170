"""CascadeBackend over two real backends: Ollama (first, cheap) and llama.cpp (then, dear),
each behind its loopback server, with token prices so every cost can be checked exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backends.cascade import CascadeBackend
from backends.llamacpp import LlamaCppServerBackend
from backends.ollama import OllamaBackend
from tests.backends.conftest import backend_config
from tests.servers.llamacpp_server import LlamaCppServer, llama_error
from tests.servers.ollama_server import OllamaServer, Reply
from tui.core.backend import Backend, BackendError, ConnectionFailed, ServerError
from tui.core.costs import token_cost
from tui.core.models import Taxonomy, Ticket
from tui.core.registry import create_backend

FIRST_PRICES = {"input_usd_per_mtok": 0.10, "output_usd_per_mtok": 0.40}
THEN_PRICES = {"input_usd_per_mtok": 2.50, "output_usd_per_mtok": 10.00}
FIRST_COST = (321 * 0.10 + 17 * 0.40) / 1_000_000
"""The Ollama fake reports 321 prompt and 17 generated tokens."""
THEN_COST = (312 * 2.50 + 15 * 10.00) / 1_000_000
"""The llama.cpp fake reports 312 prompt and 15 generated tokens."""


def build(
    ollama_server: OllamaServer,
    llamacpp_server: LlamaCppServer,
    threshold: float = 0.8,
    **first_values: Any,
) -> tuple[CascadeBackend, dict[str, Backend]]:
    first = OllamaBackend(
        backend_config(
            "ollama",
            name="small",
            host=ollama_server.url,
            model="qwen2.5:0.5b",
            max_retries=0,
            **{**FIRST_PRICES, **first_values},
        )
    )
    then = LlamaCppServerBackend(
        backend_config(
            "llamacpp",
            name="big",
            base_url=llamacpp_server.url,
            model="llama3.1-70b",
            max_retries=0,
            **THEN_PRICES,
        )
    )
    built: dict[str, Backend] = {"small": first, "big": then}
    config = backend_config(
        "cascade", name="cascade", first="small", then="big", threshold=threshold
    )
    return CascadeBackend(config, resolve=built.__getitem__), built


async def test_confident_first_stage_answers_alone(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    ollama_server.push(Reply.answer("shipping", 0.91))
    cascade, _ = build(ollama_server, llamacpp_server)

    result = await cascade.route(ticket, taxonomy)

    assert (result.label, result.confidence) == ("shipping", 0.91)
    assert result.model == "qwen2.5:0.5b"
    assert not llamacpp_server.completion_requests()
    (stage,) = result.stages
    assert (stage.backend, stage.backend_type, stage.label) == ("small", "ollama", "shipping")
    assert stage.cost_usd == FIRST_COST
    assert result.cost_usd == FIRST_COST
    assert (result.input_tokens, result.output_tokens) == (321, 17)
    await cascade.aclose()


async def test_confidence_equal_to_the_threshold_is_enough(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    ollama_server.push(Reply.answer("account", 0.8))
    cascade, _ = build(ollama_server, llamacpp_server, threshold=0.8)

    result = await cascade.route(ticket, taxonomy)

    assert len(result.stages) == 1 and result.label == "account"
    await cascade.aclose()


async def test_unsure_first_stage_escalates_and_both_stages_are_priced(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    ollama_server.push(Reply.answer("shipping", 0.55))
    llamacpp_server.push(Reply.answer("billing", 0.99, label_prob=0.9375))
    cascade, _ = build(ollama_server, llamacpp_server)

    result = await cascade.route(ticket, taxonomy)

    assert result.label == "billing"
    assert result.confidence == pytest.approx(0.9375)
    assert result.confidence_source == "logprob"
    assert result.model == "qwen2.5:0.5b→llama3.1-70b"
    first, then = result.stages
    assert (first.backend, first.label, first.confidence) == ("small", "shipping", 0.55)
    assert (then.backend, then.backend_type, then.label) == ("big", "llamacpp", "billing")
    assert first.cost_usd == FIRST_COST
    assert then.cost_usd == THEN_COST
    assert result.cost_usd == FIRST_COST + THEN_COST
    assert result.cost_usd == pytest.approx(
        token_cost(cascade._stages()[0].config, 321, 17)
        + token_cost(cascade._stages()[1].config, 312, 15)  # type: ignore[operator]
    )
    assert (result.input_tokens, result.output_tokens) == (321 + 312, 17 + 15)
    assert result.server_prompt_ms == pytest.approx(45.6 + 41.25)
    assert result.server_gen_ms == pytest.approx(98.765432 + 87.5)
    assert result.server_load_ms == pytest.approx(12.345678)
    assert result.total_ms is not None and first.total_ms is not None
    assert then.total_ms is not None and result.total_ms >= first.total_ms + then.total_ms
    assert result.ttft_ms is not None and first.total_ms < result.ttft_ms <= result.total_ms
    assert len(ollama_server.chat_requests()) == 1
    assert len(llamacpp_server.completion_requests()) == 1
    await cascade.aclose()


async def test_first_stage_error_escalates_and_is_recorded(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    ollama_server.push(Reply.error(500, "llama runner process has terminated"))
    cascade, _ = build(ollama_server, llamacpp_server)

    result = await cascade.route(ticket, taxonomy)

    assert result.label == "billing"
    failed, then = result.stages
    assert (failed.error_class, failed.label, failed.cost_usd) == ("ServerError", None, None)
    assert failed.total_ms is not None
    assert result.cost_usd == THEN_COST
    assert (result.input_tokens, result.output_tokens) == (312, 15)
    await cascade.aclose()


async def test_first_stage_without_confidence_escalates(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    ollama_server.push(Reply.text('{"label": "technical"}'))
    cascade, _ = build(ollama_server, llamacpp_server)

    result = await cascade.route(ticket, taxonomy)

    assert [stage.confidence for stage in result.stages] == [None, pytest.approx(0.8)]
    assert len(result.stages) == 2
    await cascade.aclose()


@pytest.mark.parametrize(
    ("reply", "error"),
    [(llama_error(503, "Loading model"), ServerError), (Reply.reset(), ConnectionFailed)],
)
async def test_second_stage_failure_raises_its_typed_error_naming_the_stage(
    ollama_server: OllamaServer,
    llamacpp_server: LlamaCppServer,
    taxonomy: Taxonomy,
    ticket: Ticket,
    reply: Reply,
    error: type[BackendError],
) -> None:
    ollama_server.push(Reply.answer("shipping", 0.2))
    llamacpp_server.push(reply)
    cascade, _ = build(ollama_server, llamacpp_server)

    with pytest.raises(
        error, match=r"cascade stage 'then' \(big, after low confidence from small\)"
    ):
        await cascade.route(ticket, taxonomy)
    await cascade.aclose()


async def test_check_needs_both_stages(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer
) -> None:
    cascade, _ = build(ollama_server, llamacpp_server)
    health = await cascade.check()
    assert health.ok
    assert health.detail.startswith("first small: ") and "; then big: " in health.detail

    llamacpp_server.push(llama_error(503, "Loading model"), path="/health")
    health = await cascade.check()
    assert not health.ok and "then big:" in health.detail and "Loading model" in health.detail
    await cascade.aclose()


async def test_registry_resolver_and_missing_resolver(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    _, built = build(ollama_server, llamacpp_server)
    config = backend_config("cascade", name="c", first="small", then="big", threshold=0.5)
    cascade = create_backend(config, resolve=built.__getitem__)
    assert isinstance(cascade, CascadeBackend)
    assert cascade.model == "small→big"  # nothing is built before first use
    assert (await cascade.route(ticket, taxonomy)).label == "billing"
    assert cascade.model == "qwen2.5:0.5b→llama3.1-70b"
    await cascade.aclose()

    orphan = CascadeBackend(config)
    assert orphan.model == "small→big"
    with pytest.raises(BackendError, match="without a backend resolver"):
        await orphan.route(ticket, taxonomy)
    assert not (await orphan.check()).ok

    unknown: Callable[[str], Backend] = lambda name: {}[name]  # noqa: E731
    broken = CascadeBackend(config, resolve=unknown)
    with pytest.raises(BackendError, match="cannot build its stages"):
        await broken.route(ticket, taxonomy)


async def test_cascades_calling_each_other_fail_instead_of_recursing(
    taxonomy: Taxonomy, ticket: Ticket
) -> None:
    built: dict[str, Backend] = {}
    for name, other in (("a", "b"), ("b", "a")):
        config = backend_config("cascade", name=name, first=other, then=other, threshold=0.5)
        built[name] = CascadeBackend(config, resolve=lambda n: built[n])

    with pytest.raises(BackendError, match="'a' calls itself"):
        await built["a"].route(ticket, taxonomy)


async def test_aclose_closes_the_stages_which_reopen(
    ollama_server: OllamaServer, llamacpp_server: LlamaCppServer, taxonomy: Taxonomy, ticket: Ticket
) -> None:
    cascade, built = build(ollama_server, llamacpp_server)
    ollama_server.push(Reply.answer("shipping", 0.1))
    await cascade.route(ticket, taxonomy)

    await cascade.aclose()
    assert built["small"]._client is None  # type: ignore[attr-defined]
    assert built["big"]._client is None  # type: ignore[attr-defined]
    assert (await cascade.route(ticket, taxonomy)).label == "billing"
    await cascade.aclose()
