"""Numbers from servers: an absurd token count or timing fails its own ticket, never the run.

`usage.prompt_tokens = 10**30` once made the batch's write raise OverflowError: the rest of
the batch was lost, and every rerun paid for the same tickets and crashed again. Here one
ticket of a batch gets an absurd number from a real loopback server of each protocol; it
becomes a `BadResponse` decision naming the field, the others are routed, a rerun runs
clean, and the headless `route` exits 0 both times. The engine's own boundary check
(`tui.core.numbers.check_result`) and its storage fallback are exercised directly too.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.fault_servers import (
    GOOD_LABEL,
    CasePlan,
    FaultName,
    FaultyOpenAIServer,
)
from tests.reliability.test_fault_matrix import (
    BackendKind,
    Sleeps,
    backend_block,
    make_settings,
    make_tickets,
    prepare,
    server_for,
    server_root,
)
from tui.core import registry
from tui.core.backend import BadResponse, Health, InvalidConfidence, RouteResult
from tui.core.models import Taxonomy, Ticket
from tui.core.prompt import parse_answer
from tui.core.store import Store
from tui.services.routing import Router

ROOT = Path(__file__).resolve().parents[2]
BAD_CASE = 2
"""The ticket of the batch that gets the absurd number."""
FIELD_NAMED: dict[tuple[BackendKind, FaultName], str] = {
    ("openai-stream", "absurd_tokens"): "usage.prompt_tokens",
    ("openai", "absurd_tokens"): "usage.prompt_tokens",
    ("anthropic", "absurd_tokens"): "usage.input_tokens",
    ("ollama", "absurd_tokens"): "prompt_eval_count",
    ("llamacpp", "absurd_tokens"): "tokens_evaluated",
    ("openai-stream", "negative_tokens"): "usage.completion_tokens",
    ("openai", "negative_tokens"): "usage.completion_tokens",
    ("anthropic", "negative_tokens"): "usage.output_tokens",
    ("ollama", "negative_tokens"): "eval_count",
    ("llamacpp", "negative_tokens"): "tokens_predicted",
    ("openai-stream", "absurd_timing"): "timings.prompt_ms",
    ("openai", "absurd_timing"): "timings.prompt_ms",
    ("ollama", "absurd_timing"): "eval_duration",
    ("llamacpp", "absurd_timing"): "timings.prompt_ms",
}
"""Where each protocol carries the number, as the error message must name it."""


async def _route(store: Store, router: Router, tickets: list[Ticket], run_id: str) -> None:
    summary = await router.run(tickets, run_id=run_id, concurrency=len(tickets))
    assert summary.routed == len(tickets)


def _rows(store: Store, run_id: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    cursor = store.conn.execute(
        "SELECT ticket_id, label, error_class, error_message FROM decisions WHERE run_id = ?",
        (run_id,),
    )
    return {row[0]: (row[1], row[2], row[3]) for row in cursor.fetchall()}


@pytest.mark.parametrize(
    ("backend", "fault"), [pytest.param(b, f, id=f"{b}-{f}") for b, f in FIELD_NAMED]
)
async def test_an_absurd_number_fails_only_its_ticket_and_a_rerun_is_clean(
    tmp_path: Path, backend: BackendKind, fault: FaultName
) -> None:
    plan = CasePlan({BAD_CASE: fault})
    server = server_for(backend, plan).start()
    store = Store(tmp_path / "numbers.db")
    try:
        settings = make_settings(
            {"under-test": backend_block(backend, server_root(server))}, "under-test"
        )
        taxonomy = settings.taxonomy()
        assert taxonomy is not None
        tickets = make_tickets(5)
        store.import_tickets(tickets)
        for run_id in ("first", "rerun"):  # the rerun meets the same number again
            router = Router(settings, taxonomy, store)
            await prepare(router.backend("under-test"), Sleeps())
            try:
                await _route(store, router, tickets, run_id)
            finally:
                await router.aclose()
            rows = _rows(store, run_id)
            assert sorted(rows) == sorted(t.id for t in tickets), "a ticket of the batch was lost"
            bad = f"T-{BAD_CASE}"
            label, error_class, message = rows.pop(bad)
            assert (label, error_class) == (None, "BadResponse"), rows
            assert message is not None and FIELD_NAMED[(backend, fault)] in message, message
            assert all(row[:2] == (GOOD_LABEL, None) for row in rows.values()), rows
        assert plan.seen[str(BAD_CASE)] == 2, "a bad number is not worth a retry"
        assert store.integrity_ok()
    finally:
        store.close()
        server.stop()


def _cli(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAGEDESK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv], capture_output=True, text=True, env=env, timeout=120
    )


def test_headless_route_survives_an_absurd_token_count_and_reruns(tmp_path: Path) -> None:
    server = FaultyOpenAIServer(CasePlan({1: "absurd_tokens"})).start()
    try:
        config = tmp_path / "triagedesk.toml"
        config.write_text(
            '[labels]\nbilling = "Charges"\nshipping = "Parcels"\n\n'
            '[routing]\nbackend = "api"\n\n'
            f'[backends.api]\ntype = "openai"\nbase_url = "{server.url}"\nmodel = "test-model"\n'
            "max_retries = 0\ntimeout_s = 10\n"
        )
        tickets = tmp_path / "tickets.jsonl"
        tickets.write_text(
            "".join(
                json.dumps({"id": f"T-{i}", "text": f"[case-{i}] charged twice"}) + "\n"
                for i in range(4)
            )
        )
        db = tmp_path / "t.db"
        base = ("--db", str(db), "--config", str(config))
        imported = _cli(tmp_path, *base, "import", str(tickets))
        assert imported.returncode == 0, imported.stderr
        first = _cli(tmp_path, *base, "route")
        assert first.returncode == 0, first.stderr
        assert "routed 4 tickets" in first.stdout and "BadResponse: 1" in first.stdout, first.stdout
        again = _cli(tmp_path, *base, "route", "--all")  # routes the same tickets once more
        assert again.returncode == 0, again.stderr
        assert "Traceback" not in first.stderr + again.stderr
    finally:
        server.stop()
    conn = sqlite3.connect(db)
    try:
        failed = conn.execute(
            "SELECT count(*), min(error_message) FROM decisions WHERE error_class = 'BadResponse'"
        ).fetchone()
        good = conn.execute("SELECT count(*) FROM decisions WHERE label = ?", (GOOD_LABEL,))
        assert failed[0] == 2 and "usage.prompt_tokens" in failed[1], failed
        assert good.fetchone()[0] == 6
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (10**30, "outside"),
        (-1, "outside"),
        (12.5, "whole"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        (True, "not a number"),
        ("120", "not a number"),
        (10**5000, "digit number"),  # str() of it would raise in Python >= 3.11
    ],
    ids=["1e30", "negative", "fraction", "inf", "nan", "bool", "string", "5000-digits"],
)
def test_a_count_out_of_bounds_is_a_bad_response_naming_the_field(value: Any, problem: str) -> None:
    from tui.core import numbers

    with pytest.raises(BadResponse, match=problem) as raised:
        numbers.count(value, "usage.prompt_tokens")
    assert "usage.prompt_tokens" in str(raised.value)
    assert len(str(raised.value)) < 200


def test_sane_numbers_pass() -> None:
    from tui.core import numbers

    assert numbers.count(None, "x") is None
    assert numbers.count(12.0, "x") == 12
    assert numbers.count(numbers.MAX_TOKENS, "x") == numbers.MAX_TOKENS
    assert numbers.duration(2_500_000, "eval_duration", per_ms=numbers.NS_PER_MS) == 2.5
    with pytest.raises(BadResponse, match="eval_duration"):
        numbers.duration(10**30, "eval_duration", per_ms=numbers.NS_PER_MS)


def test_huge_integers_in_an_answer_are_answer_errors_not_crashes() -> None:
    taxonomy = Taxonomy.from_names(["billing", "shipping"])
    huge = '{"label": "billing", "confidence": 1' + "0" * 400 + "}"
    with pytest.raises(InvalidConfidence):  # float() of it would raise OverflowError
        parse_answer(huge, taxonomy)
    enormous = '{"label": "billing", "confidence": 1' + "0" * 5000 + "}"
    with pytest.raises(BadResponse):  # json.loads raises a plain ValueError on it
        parse_answer(enormous, taxonomy)


class AbsurdPlugin:
    """A plugin backend that reports whatever numbers its ticket asks for."""

    type = "absurd"

    def __init__(self, config: Any, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name

    @property
    def model(self) -> str:
        return "absurd-1"

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        if ticket.id == "huge":
            return RouteResult(label=GOOD_LABEL, input_tokens=10**30, raw_output="{}")
        return RouteResult(label=GOOD_LABEL, input_tokens=100, output_tokens=10)

    async def check(self) -> Health:
        return Health(True, "ok")

    async def aclose(self) -> None:
        pass


async def test_a_decision_the_store_refuses_does_not_lose_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a number to slip past the boundary check, the batch's write
    falls back to one decision at a time and the refused one becomes an error decision."""
    monkeypatch.setitem(
        registry.BUILTIN, "absurd", "tests.reliability.test_server_numbers:AbsurdPlugin"
    )
    from tui.core import numbers

    monkeypatch.setattr(numbers, "check_result", lambda result: None)  # the gap, simulated
    settings = make_settings({"plug": {"type": "absurd"}}, "plug")
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    tickets = [Ticket(id=name, text=f"ticket {name}") for name in ("a", "huge", "b", "c")]
    with Store(tmp_path / "t.db") as store:
        store.import_tickets(tickets)
        router = Router(settings, taxonomy, store)
        await _route(store, router, tickets, "r")
        rows = _rows(store, "r")
    assert sorted(rows) == ["a", "b", "c", "huge"]
    assert rows["huge"][1] == "InternalError" and "could not be stored" in (rows["huge"][2] or "")
    assert all(rows[t][:2] == (GOOD_LABEL, None) for t in ("a", "b", "c")), rows
