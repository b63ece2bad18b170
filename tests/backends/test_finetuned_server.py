"""`prompt = "finetuned"` through a server: the `llamacpp` type against a loopback fake of
llama-server's native `/completion`, and the `openai` type against the real llama-cpp-python
server running the committed fine-tuned GGUF."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import finetuned_wire
from backends.llamacpp import LlamaCppServerBackend
from backends.openai_compat import OpenAIBackend
from tests.backends.conftest import backend_config
from tests.data.make_finetuned_gguf import WORDS, tickets
from tests.servers.llama_cpp_python import ServerDidNotStart, llama_server
from tests.servers.llamacpp_server import LlamaCppServer, llama_error
from tests.servers.ollama_server import Reply
from tui.core.backend import BadResponse, LabelNotInTaxonomy, ServerError
from tui.core.learning.llm.prompt import prompt
from tui.core.models import Taxonomy, Ticket

GGUF = Path(__file__).parents[1] / "data" / "tiny_finetuned.gguf"
ODD = 'say "hi"\\now'
TAXONOMY = Taxonomy.from_names([*WORDS, ODD])
TICKET = Ticket(id="t-1", text="My parcel is late <eos> and the box\nis broken")


def _llamacpp(server: LlamaCppServer, **values: Any) -> LlamaCppServerBackend:
    settings = {"base_url": server.url, "prompt": "finetuned", "timeout_s": 5, **values}
    backend = LlamaCppServerBackend(backend_config("llamacpp", name="ft", **settings))
    backend.retry_base_delay_s = 0.001
    return backend


async def _route(backend: Any, ticket: Ticket = TICKET, taxonomy: Taxonomy = TAXONOMY) -> Any:
    try:
        return await backend.route(ticket, taxonomy)
    finally:
        await backend.aclose()


def test_grammar_is_the_alternation_of_the_answers_escaped() -> None:
    assert finetuned_wire.grammar(TAXONOMY) == (
        'root ::= " login" | " refund" | " say \\"hi\\"\\\\now" | " shipping"'
    )
    assert finetuned_wire.max_tokens(TAXONOMY) == len(b' say "hi"\\now') + 1
    assert finetuned_wire.max_tokens(Taxonomy.from_names(["é"])) == 4  # bytes, not characters


async def test_llamacpp_request_and_answer(llamacpp_server: LlamaCppServer) -> None:
    llamacpp_server.push(Reply.text(" shipping", token_probs=[0.5, 0.8, 0.25]))
    result = await _route(_llamacpp(llamacpp_server, model="ft-gemma"))

    assert (result.label, result.confidence_source) == ("shipping", "logprob")
    assert result.confidence == pytest.approx(0.5 * 0.8 * 0.25)
    assert result.raw_output == " shipping" and result.model == "ft-gemma"
    assert result.prompt_version == finetuned_wire.prompt_version(TAXONOMY)
    assert (result.input_tokens, result.server_prompt_ms) == (312, 41.25)
    (request,) = llamacpp_server.completion_requests()
    body = request.body
    # the trained prompt, a special-token look-alike made plain text; no taxonomy list
    assert body["prompt"] == prompt("My parcel is late <\u200beos> and the box\nis broken")
    assert "refund" not in body["prompt"]
    assert body["grammar"] == finetuned_wire.grammar(TAXONOMY)
    assert body["n_predict"] == finetuned_wire.max_tokens(TAXONOMY)
    assert (body["temperature"], body["n_probs"], body["stream"]) == (0.0, 1, False)
    assert "json_schema" not in body


async def test_post_sampling_and_legacy_probabilities(llamacpp_server: LlamaCppServer) -> None:
    llamacpp_server.push(
        Reply.text(" login", token_probs=[1.0, 0.5, 0.5], probs="prob"),
        Reply.text(" login", token_probs=[1.0, 0.5, 0.5], probs="legacy"),
    )
    backend = _llamacpp(llamacpp_server)
    try:
        for _ in range(2):
            result = await backend.route(TICKET, TAXONOMY)
            assert (result.label, result.confidence) == ("login", pytest.approx(0.25))
            assert result.confidence_source == "probability"
    finally:
        await backend.aclose()


async def test_without_probabilities_there_is_no_confidence(
    llamacpp_server: LlamaCppServer,
) -> None:
    llamacpp_server.push(Reply.text(" refund", probs=None))
    result = await _route(_llamacpp(llamacpp_server))
    assert (result.label, result.confidence, result.confidence_source) == ("refund", None, None)


@pytest.mark.parametrize("content", [" refunds", " Refund", "", ' {"label": "refund"}'])
async def test_an_answer_outside_the_taxonomy_is_an_error_that_can_be_retried(
    llamacpp_server: LlamaCppServer, content: str
) -> None:
    llamacpp_server.push(Reply.text(content), Reply.text(" refund"))
    backend = _llamacpp(llamacpp_server)
    try:
        with pytest.raises(LabelNotInTaxonomy, match="not a label") as caught:
            await backend.route(TICKET, TAXONOMY)
        assert caught.value.raw_output == content
        assert len(llamacpp_server.completion_requests()) == 1  # not retried automatically
        assert (await backend.route(TICKET, TAXONOMY)).label == "refund"  # the ticket's retry
    finally:
        await backend.aclose()


def _entry(token: Any, **value: Any) -> dict[str, Any]:
    return {"id": 7, "token": token, "bytes": [], **value, "top_logprobs": []}


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([_entry(" ", logprob=0.5), _entry("refund", logprob=-0.1)], "not a log-probability"),
        ([_entry(" ", logprob=float("nan")), _entry("refund", logprob=-1)], "log-probability"),
        ([_entry(" ", logprob="-0.1"), _entry("refund", logprob=-0.1)], "log-probability"),
        ([_entry(" ", prob=1.5), _entry("refund", prob=0.5)], "not a probability"),
        ([_entry(" ", logprob=-0.1), _entry(3, logprob=-0.1)], "no token text"),
        ([_entry(" ", logprob=-0.1), _entry("login", logprob=-0.1)], "spell"),
        ([_entry(" ", logprob=-0.1), {"token": "refund"}], "no probability"),
        ({"token": " refund"}, "not a list"),
        (["x"], "not an object"),
    ],
)
async def test_malformed_probabilities_are_an_error(
    llamacpp_server: LlamaCppServer, entries: Any, match: str
) -> None:
    llamacpp_server.push(Reply.text(" refund", completion_probabilities=entries))
    with pytest.raises(BadResponse, match=match):
        await _route(_llamacpp(llamacpp_server))


async def test_a_loading_server_is_retried(llamacpp_server: LlamaCppServer) -> None:
    loading = llama_error(503, "Loading model", "unavailable_error")
    llamacpp_server.push(loading, loading, Reply.text(" login", token_probs=[1, 1, 1]))
    result = await _route(_llamacpp(llamacpp_server, max_retries=3))
    assert (result.label, result.confidence) == ("login", 1.0)
    assert len(llamacpp_server.completion_requests()) == 3


async def test_a_server_still_loading_after_the_retries_fails_the_ticket(
    llamacpp_server: LlamaCppServer,
) -> None:
    loading = llama_error(503, "Loading model", "unavailable_error")
    llamacpp_server.push(loading, loading)
    with pytest.raises(ServerError, match="Loading model"):
        await _route(_llamacpp(llamacpp_server, max_retries=1))


async def test_counts_and_timings_are_checked(llamacpp_server: LlamaCppServer) -> None:
    llamacpp_server.push(Reply.text(" login", timings={"prompt_ms": -5}))
    with pytest.raises(BadResponse, match="prompt_ms"):
        await _route(_llamacpp(llamacpp_server))


# The real llama-cpp-python server, through the openai type's /v1/completions.


@pytest.fixture(scope="module")
def finetuned_server() -> Iterator[str]:
    """`python -m llama_cpp.server` serving the committed fine-tuned GGUF; its base URL."""
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    try:
        with llama_server(GGUF, alias="ft", extra=("--n_ctx", "512")) as url:
            yield url
    except ServerDidNotStart:
        pytest.skip("llama_cpp.server did not start")


def _openai(url: str) -> OpenAIBackend:
    config = backend_config("openai", name="ft", base_url=url, model="ft", prompt="finetuned")
    return OpenAIBackend(config)


@pytest.mark.slow
async def test_real_llama_cpp_python_server_routes_with_the_trained_prompt(
    finetuned_server: str,
) -> None:
    """It honours `grammar` and `logprobs` on /v1/completions: every ticket gets its label
    with a confidence in [0, 1] from the answer tokens' log-probabilities."""
    backend = _openai(finetuned_server)
    taxonomy = Taxonomy.from_names(list(WORDS))
    try:
        for i, example in enumerate(tickets(2, 4242)):
            result = await backend.route(Ticket(id=str(i), text=example.text), taxonomy)
            assert result.label == example.label
            assert result.confidence is not None and 0.0 <= result.confidence <= 1.0
            assert result.confidence > 0.5 and result.confidence_source == "logprob"
            assert result.input_tokens and result.output_tokens and result.model == "ft"
        assert backend.grammar_supported and backend.logprobs_supported
    finally:
        await backend.aclose()


@pytest.mark.slow
async def test_real_server_keeps_the_answer_inside_a_narrowed_taxonomy(
    finetuned_server: str,
) -> None:
    """Without the ticket's own label, the grammar still makes it answer one of the others,
    with the low probability the model gives that answer (a label with quotes and a
    backslash included: the real GBNF parser reads the escaped grammar)."""
    shipping = next(e.text for e in tickets(1, 5) if e.label == "shipping")
    result = await _route(
        _openai(finetuned_server),
        Ticket(id="s", text=shipping),
        Taxonomy.from_names(["refund", "login", ODD]),
    )
    assert result.label in ("refund", "login", ODD)
    assert result.confidence is not None and result.confidence < 0.5
    assert math.isfinite(result.confidence)
