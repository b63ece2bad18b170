"""The default config against the real llama-cpp-python server, which interrupts the stream in
progress whenever another request arrives: the adaptive limit finds that one at a time is what
it takes, and every ticket gets a valid answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tui.core.config import _build
from tui.core.models import Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "technical", "account"])


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("gguf", reason="the gguf package (test group) writes the model")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    from tests.servers.gguf_model import write_tiny_llama
    from tests.servers.llama_cpp_python import llama_server

    model = write_tiny_llama(tmp_path_factory.mktemp("gguf") / "decided.gguf", decided=True)
    with llama_server(model) as url:
        yield url


async def route(url: str, db: Path, backend: dict[str, object]) -> tuple[Store, Router]:
    settings = _build(
        {
            "routing": {"backend": "lcp"},
            "backends": {"lcp": {"type": "openai", "base_url": url, "model": "tiny", **backend}},
        },
        None,
    )
    store = Store(db)
    tickets = [Ticket(id=f"L{i:02d}", text=f"Order {i}: charged twice") for i in range(24)]
    store.import_tickets(tickets)
    router = Router(settings, TAXONOMY, store)
    try:
        await router.run(tickets, run_id="r", concurrency=8)
    finally:
        await router.aclose()
    return store, router


def outcomes(store: Store) -> dict[str | None, int]:
    rows = store._read("SELECT error_class, count(*) FROM decisions GROUP BY 1")
    return {row[0]: row[1] for row in rows}


@pytest.mark.slow
async def test_default_config_answers_every_ticket(server_url: str, tmp_path: Path) -> None:
    store, router = await route(server_url, tmp_path / "a.db", {})
    assert outcomes(store) == {None: 24}
    assert router.concurrency_limit("lcp") == (1, 8)


@pytest.mark.slow
async def test_a_fixed_limit_of_eight_loses_answers(server_url: str, tmp_path: Path) -> None:
    """The same server at a fixed 8: the interrupted streams are retried, and still fail."""
    store, router = await route(
        server_url, tmp_path / "f.db", {"adaptive_concurrency": False, "max_retries": 1}
    )
    found = outcomes(store)
    assert found.get("StreamInterrupted", 0) > 0
    assert router.concurrency_limit("lcp") == (8, 8)
