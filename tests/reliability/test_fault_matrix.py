"""Backend fault matrix: every wire-protocol backend × every fault, end to end through the Router.

Each case routes a batch of tickets with the real `Router.run` into a real `Store` on a tmp
path, against a loopback server that plays the fault either once per ticket (the first
request) or always. The outcome is read back from the decisions table: every ticket has
exactly one decision in the run, and it is either the right label (retried or repaired) or an
error decision of the precise class. `FAULTS` is also the source of the README's
"fault → outcome" table, and a test keeps the two equal.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.reliability.fault_servers import (
    GOOD_LABEL,
    RETRY_AFTER_S,
    AnyServer,
    FaultName,
    FaultyAnthropicServer,
    FaultyLlamaCppServer,
    FaultyOllamaServer,
    FaultyOpenAIServer,
    Plan,
    free_port,
)
from tui.core import registry
from tui.core.backend import Backend, Health, RouteResult
from tui.core.config import Settings
from tui.core.models import Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router

ROOT = Path(__file__).resolve().parents[2]

BackendKind = Literal["openai-stream", "openai", "anthropic", "ollama", "llamacpp"]
BACKENDS: tuple[BackendKind, ...] = ("openai-stream", "openai", "anthropic", "ollama", "llamacpp")
BACKEND_TITLES: dict[BackendKind, str] = {
    "openai-stream": "openai (stream)",
    "openai": "openai (no stream)",
    "anthropic": "anthropic (stream)",
    "ollama": "ollama (stream)",
    "llamacpp": "llamacpp server (stream)",
}
LABELS = {
    "billing": "Charges, invoices, refunds of payments",
    "shipping": "Delivery status, tracking, delays, lost parcels",
    "technical": "The app or website does not work",
    "account": "Login, password, profile",
}
MAX_RETRIES = 2
TIMEOUT_S = 5.0
"""Generous, so that a loaded machine never turns a normal answer into a timeout."""
SHORT_TIMEOUT_S = 0.5
"""For the faults that *are* a timeout: each attempt of those cases waits this long."""
TICKETS = 3
GUARD_S = 120.0
"""A case that has not finished by then hangs (it takes seconds): fail it, don't wait."""

Handling = Literal["retry", "repair", "fail"]


@dataclass(frozen=True)
class Expect:
    """What triagedesk does about a fault.

    `retry`: the shared retry loop tries again (up to `max_retries`); `repair`: the answer is
    sent back once with the complaint; `fail`: an error decision at once. `error` is the
    class stored when the fault persists (for `fail`, also when it happens once).
    """

    handling: Handling
    error: str


@dataclass(frozen=True)
class Fault:
    name: FaultName
    title: str
    """How the README names it."""
    expect: Expect
    backends: tuple[BackendKind, ...] = BACKENDS
    transient: bool = True
    """Whether a once-only variant exists (a refused port has no second chance to answer)."""
    timeout_s: float = TIMEOUT_S
    overrides: dict[BackendKind, Expect] = field(default_factory=dict)

    def expect_for(self, backend: BackendKind) -> Expect:
        return self.overrides.get(backend, self.expect)


RETRY_CONN = Expect("retry", "ConnectionFailed")
FAULTS: tuple[Fault, ...] = (
    Fault("connect_refused", "connection refused", RETRY_CONN, transient=False),
    Fault("reset_before_reply", "TCP reset before the reply", RETRY_CONN),
    Fault("reset_mid_reply", "TCP reset in the middle of the reply", RETRY_CONN),
    Fault(
        "read_timeout",
        "read timeout (no byte of reply)",
        Expect("retry", "Timeout"),
        timeout_s=SHORT_TIMEOUT_S,
    ),
    Fault(
        "stalled_stream",
        "stream stalls after the first tokens",
        Expect("retry", "Timeout"),
        timeout_s=SHORT_TIMEOUT_S,
    ),
    Fault("http_429", "HTTP 429 without Retry-After", Expect("retry", "RateLimited")),
    Fault("http_429_retry_after", "HTTP 429 with Retry-After", Expect("retry", "RateLimited")),
    Fault("http_500", "HTTP 500", Expect("retry", "ServerError")),
    Fault("http_502", "HTTP 502", Expect("retry", "ServerError")),
    Fault("http_503", "HTTP 503", Expect("retry", "ServerError")),
    Fault(
        "truncated_stream",
        "reply cut short (stream ends without its final event; body shorter than Content-Length)",
        Expect("fail", "BadResponse"),
        overrides={"openai": RETRY_CONN},
    ),
    Fault("body_not_json", "reply body / stream event is not JSON", Expect("fail", "BadResponse")),
    Fault("answer_not_json", "the model's answer is not JSON", Expect("repair", "BadResponse")),
    Fault("unknown_label", "label outside the taxonomy", Expect("repair", "LabelNotInTaxonomy")),
    Fault("nan_confidence", "confidence NaN", Expect("repair", "InvalidConfidence")),
    Fault("inf_confidence", "confidence Infinity", Expect("repair", "InvalidConfidence")),
    Fault("negative_confidence", "confidence -0.25", Expect("repair", "InvalidConfidence")),
    Fault(
        "empty_choices",
        "empty `choices`",
        Expect("fail", "BadResponse"),
        backends=("openai-stream", "openai"),
    ),
    Fault(
        "enormous_reply",
        "enormous reply (2 MB, twice the cap)",
        Expect("fail", "BadResponse"),
    ),
    Fault(
        "trickle",
        "reply trickled a byte at a time, never complete",
        Expect("retry", "Timeout"),
        timeout_s=SHORT_TIMEOUT_S,
    ),
    Fault(
        "keepalive_forever",
        "keep-alives (SSE comments, pings, empty parts) that never end",
        Expect("retry", "Timeout"),
        timeout_s=SHORT_TIMEOUT_S,
    ),
    Fault("html_body", "HTTP 200 with an HTML page (login, proxy)", Expect("fail", "BadResponse")),
    Fault("broken_chunked", "broken chunked encoding", RETRY_CONN),
    Fault("absurd_tokens", "token count 10^30", Expect("fail", "BadResponse")),
    Fault("negative_tokens", "token count -5", Expect("fail", "BadResponse")),
    Fault(
        "absurd_timing",
        "server timing 1e300 ms (10^30 ns)",
        Expect("fail", "BadResponse"),
        backends=("openai-stream", "openai", "ollama", "llamacpp"),
    ),
)
FAULTS_BY_NAME = {fault.name: fault for fault in FAULTS}


def _cases() -> Iterator[Any]:
    for fault in FAULTS:
        for backend in fault.backends:
            modes = ("once", "always") if fault.transient else ("always",)
            for mode in modes:
                yield pytest.param(backend, fault.name, mode, id=f"{backend}-{fault.name}-{mode}")


CASES = list(_cases())


def outcome_cell(expect: Expect, *, transient: bool = True) -> str:
    """One README cell: what happens when the fault hits once / keeps hitting."""
    if expect.handling == "fail":
        return f"`{expect.error}`"
    if not transient:
        return f"{expect.handling} → `{expect.error}`"
    return f"{expect.handling} → ok / `{expect.error}`"


def fault_table_markdown() -> str:
    """The README table, generated from `FAULTS`."""
    header = "| fault | " + " | ".join(BACKEND_TITLES[b] for b in BACKENDS) + " |"
    rule = "|---|" + "---|" * len(BACKENDS)
    rows = [header, rule]
    for fault in FAULTS:
        cells = [
            outcome_cell(fault.expect_for(b), transient=fault.transient)
            if b in fault.backends
            else "n/a"
            for b in BACKENDS
        ]
        rows.append(f"| {fault.title} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def server_for(backend: BackendKind, plan: Plan) -> AnyServer:
    if backend in ("openai-stream", "openai"):
        return FaultyOpenAIServer(plan)
    if backend == "anthropic":
        return FaultyAnthropicServer(plan)
    if backend == "ollama":
        return FaultyOllamaServer(plan)
    return FaultyLlamaCppServer(plan)


def server_root(server: AnyServer) -> str:
    if isinstance(server, FaultyOpenAIServer | FaultyAnthropicServer):
        return server.root
    return server.url


def backend_block(backend: BackendKind, root: str, **extra: Any) -> dict[str, Any]:
    """A `[backends.NAME]` table pointing at a loopback root URL."""
    common = {"timeout_s": TIMEOUT_S, "max_retries": MAX_RETRIES, **extra}
    if backend in ("openai-stream", "openai"):
        block = {"type": "openai", "base_url": f"{root}/v1", "model": "test-model"}
        return {**block, "stream": backend == "openai-stream", **common}
    if backend == "anthropic":
        return {"type": "anthropic", "base_url": root, "model": "claude-test", **common}
    if backend == "ollama":
        return {"type": "ollama", "host": root, "model": "llama3.1:8b", **common}
    return {"type": "llamacpp", "base_url": root, **common}


def make_settings(blocks: dict[str, dict[str, Any]], active: str) -> Settings:
    named = {name: {**block, "name": name} for name, block in blocks.items()}
    return Settings.model_validate(
        {
            "labels": LABELS,
            "routing": {"backend": active, "reference_backend": None},
            "backends": named,
        }
    )


def make_tickets(n: int = TICKETS) -> list[Ticket]:
    return [
        Ticket(id=f"T-{i}", text=f"[case-{i}] I was charged twice for order {1000 + i}.")
        for i in range(n)
    ]


@dataclass
class Sleeps:
    """Records the retry loop's waits instead of sleeping them (OpenAI and Anthropic)."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


async def prepare(backend: Backend, sleeps: Sleeps) -> None:
    """Tiny retry delays, and a warm HTTP client so that its creation costs no timeout."""
    for attribute in ("retry_base_delay", "retry_base_delay_s"):
        if hasattr(backend, attribute):
            setattr(backend, attribute, 0.001)
    if hasattr(backend, "retry_sleep"):
        backend.retry_sleep = sleeps  # type: ignore[attr-defined]
    await backend.check()


async def route_batch(
    tmp_path: Path, settings: Settings, tickets: list[Ticket], *, warm: list[str] | None = None
) -> tuple[list[dict[str, Any]], Sleeps]:
    """Import tickets, route them all with the real Router, return the run's decision rows."""
    store = Store(tmp_path / "triage.db")
    try:
        store.import_tickets(tickets)
        taxonomy = settings.taxonomy()
        assert taxonomy is not None
        router = Router(settings, taxonomy, store)
        sleeps = Sleeps()
        for name in warm or [settings.routing.backend]:
            await prepare(router.backend(name), sleeps)
        try:
            summary = await router.run(tickets, run_id="run-fault", concurrency=len(tickets))
        finally:
            await router.aclose()
        assert summary.routed == len(tickets)
        cursor = store.conn.execute(
            "SELECT ticket_id, label, confidence, error_class, error_message, raw_output, stages"
            " FROM decisions WHERE run_id = 'run-fault'"
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        assert store.count_unrouted() == 0, "a ticket of the batch has no current decision"
        assert store.integrity_ok()
    finally:
        store.close()
    return rows, sleeps


def assert_one_decision_each(rows: list[dict[str, Any]], tickets: list[Ticket]) -> None:
    ids = [row["ticket_id"] for row in rows]
    assert sorted(ids) == sorted(t.id for t in tickets), "a ticket was skipped or duplicated"


@pytest.mark.parametrize(("backend", "fault_name", "mode"), CASES)
async def test_fault_outcome(
    tmp_path: Path, backend: BackendKind, fault_name: FaultName, mode: str
) -> None:
    fault = FAULTS_BY_NAME[fault_name]
    expect = fault.expect_for(backend)
    plan = Plan(fault.name, times=1 if mode == "once" else None)
    server = server_for(backend, plan).start()
    try:
        root = server_root(server)
        if fault.name == "connect_refused":
            root = f"http://127.0.0.1:{free_port()}"
        settings = make_settings(
            {"under-test": backend_block(backend, root, timeout_s=fault.timeout_s)}, "under-test"
        )
        tickets = make_tickets()
        rows, sleeps = await asyncio.wait_for(route_batch(tmp_path, settings, tickets), GUARD_S)
    finally:
        server.stop()

    assert_one_decision_each(rows, tickets)
    recovers = mode == "once" and expect.handling != "fail"
    for row in rows:
        if recovers:
            assert (row["label"], row["error_class"]) == (GOOD_LABEL, None), row
        else:
            assert row["label"] is None, row
            assert row["error_class"] == expect.error, row
            assert row["error_message"], row
    requests = [plan.seen[str(i)] for i in range(len(tickets))]
    if fault.name == "connect_refused":
        assert requests == [0] * len(tickets)
    elif expect.handling == "fail":
        assert requests == [1] * len(tickets), "a non-retryable fault was retried"
    elif expect.handling == "repair":
        assert requests == [2] * len(tickets), "exactly one repair round"
    elif mode == "once":
        assert all(n >= 2 for n in requests), requests
    else:
        # every ticket was retried, never past max_retries (an attempt that timed out while
        # connecting never reaches the server, hence the lower bound of 2)
        assert all(2 <= n <= MAX_RETRIES + 1 for n in requests), requests
    if fault.name == "http_429_retry_after" and backend not in ("ollama", "llamacpp"):
        assert sleeps.delays and all(d == pytest.approx(RETRY_AFTER_S) for d in sleeps.delays)
    if fault.name == "http_429" and sleeps.delays:
        assert max(sleeps.delays) < RETRY_AFTER_S, "backoff ignored the tiny base delay"


def test_matrix_covers_every_backend_and_fault() -> None:
    named = {fault.name for fault in FAULTS}
    wanted = set(FaultName.__args__)  # type: ignore[attr-defined]
    assert named == wanted - {"ok"}
    assert {case.values[0] for case in CASES} == set(BACKENDS)
    assert len(CASES) >= 150


def test_readme_fault_table_matches_the_matrix() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert fault_table_markdown() in readme, (
        "README's fault → outcome table drifted from tests/reliability/test_fault_matrix.py "
        "FAULTS; regenerate it with fault_table_markdown()"
    )


CASCADE_CASES: list[Any] = [
    # first stage fault (None: it answers), its confidence, `then` fault, expected, `then` calls
    pytest.param(None, 0.3, "http_503", "ServerError", 3, id="unsure-then-503"),
    pytest.param(None, 0.3, "read_timeout", "Timeout", 3, id="unsure-then-timeout"),
    pytest.param("connect_refused", 0.9, "ok", None, 1, id="first-refused-then-ok"),
    pytest.param("http_500", 0.9, "unknown_label", "LabelNotInTaxonomy", 2, id="both-fail"),
    pytest.param(None, 0.95, "http_503", None, 0, id="sure-then-never-called"),
]


@pytest.mark.parametrize(
    ("first_fault", "first_conf", "then_fault", "expected", "then_calls"), CASCADE_CASES
)
async def test_cascade_with_failing_stage(
    tmp_path: Path,
    first_fault: FaultName | None,
    first_conf: float,
    then_fault: FaultName,
    expected: str | None,
    then_calls: int,
) -> None:
    first = FaultyOpenAIServer(Plan(first_fault or "ok"))
    first.confidence = first_conf
    then = FaultyAnthropicServer(Plan(then_fault))
    first.start()
    then.start()
    try:
        first_root = (
            f"http://127.0.0.1:{free_port()}" if first_fault == "connect_refused" else first.root
        )
        blocks = {
            "cheap": backend_block("openai-stream", first_root),
            "strong": backend_block("anthropic", then.root, timeout_s=SHORT_TIMEOUT_S),
            "cascade": {"type": "cascade", "first": "cheap", "then": "strong", "threshold": 0.8},
        }
        settings = make_settings(blocks, "cascade")
        tickets = make_tickets()
        rows, _ = await route_batch(tmp_path, settings, tickets, warm=["cheap", "strong"])
    finally:
        first.stop()
        then.stop()
    assert_one_decision_each(rows, tickets)
    for row in rows:
        assert row["error_class"] == expected, row
        if expected is None:
            assert row["label"] == GOOD_LABEL
        else:
            assert row["label"] is None
            assert "cascade stage 'then' (strong" in row["error_message"], row
    assert all(then.plan.seen[str(i)] == then_calls for i in range(len(tickets)))


class LyingBackend:
    """A plugin with bugs: answers outside the taxonomy, impossible confidences, non-results."""

    type = "lying"

    def __init__(self, config: Any, *, resolve: Any = None) -> None:
        self.config = config
        self.name = config.name

    @property
    def model(self) -> str:
        return "lying-1"

    async def route(self, ticket: Ticket, taxonomy: Taxonomy) -> RouteResult:
        answers: dict[str, Any] = {
            "label": RouteResult(label="vip_escalation", confidence=0.5),
            "nan": RouteResult(label=GOOD_LABEL, confidence=math.nan),
            "big": RouteResult(label=GOOD_LABEL, confidence=7.0),
            "tokens": RouteResult(label=GOOD_LABEL, input_tokens="many"),  # type: ignore[arg-type]
            "huge_tokens": RouteResult(label=GOOD_LABEL, input_tokens=10**30),
            "negative_ms": RouteResult(label=GOOD_LABEL, total_ms=-5.0),
            "infinite_cost": RouteResult(label=GOOD_LABEL, cost_usd=math.inf),
            "none": None,
            "ok": RouteResult(label=GOOD_LABEL, confidence=0.5),
        }
        if ticket.id == "raise":
            raise RuntimeError("plugin bug")
        result: RouteResult = answers[ticket.id]
        return result

    async def check(self) -> Health:
        return Health(True, "lies")

    async def aclose(self) -> None:
        pass


async def test_misbehaving_plugin_results_become_error_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        registry.BUILTIN, "lying", "tests.reliability.test_fault_matrix:LyingBackend"
    )
    settings = make_settings({"liar": {"type": "lying"}}, "liar")
    expected = {
        "label": "LabelNotInTaxonomy",
        "nan": "InvalidConfidence",
        "big": "InvalidConfidence",
        "tokens": "BadResponse",  # a number field that is not a number names the field
        "huge_tokens": "BadResponse",  # 10**30 once crashed the batch's write (OverflowError)
        "negative_ms": "BadResponse",
        "infinite_cost": "BadResponse",
        "none": "InternalError",
        "raise": "InternalError",
        "ok": None,
    }
    tickets = [Ticket(id=name, text=f"ticket {name}") for name in expected]
    store = Store(tmp_path / "t.db")
    store.import_tickets(tickets)
    taxonomy = settings.taxonomy()
    assert taxonomy is not None
    router = Router(settings, taxonomy, store)
    await router.run(tickets, run_id="r")
    got = dict(store.conn.execute("SELECT ticket_id, error_class FROM decisions").fetchall())
    labels = {row[0] for row in store.conn.execute("SELECT label FROM decisions")}
    store.close()
    assert got == expected
    assert labels <= {GOOD_LABEL, None}


def test_readme_table_renders_every_fault_once() -> None:
    table = fault_table_markdown()
    body = table.splitlines()[2:]
    assert len(body) == len(FAULTS)
    assert all(re.match(r"^\| .+ \|$", line) for line in body)


def test_readme_guarantees_name_real_tests() -> None:
    """Every `file::test` the README's Guarantees section cites exists."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Guarantees") :]
    cited: list[tuple[str, str]] = []
    current = ""
    for found in re.finditer(r"((?:tests/\w+/)?test_\w+\.py)?::(test_\w+)", section):
        current = found.group(1) or current
        cited.append((current, found.group(2)))
    assert len(cited) >= 15
    for filename, name in cited:
        folder = ROOT if filename.startswith("tests/") else ROOT / "tests" / "reliability"
        source = (folder / filename).read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), (filename, name)


HTML_NAMED: dict[BackendKind, str] = {
    "openai-stream": "not an OpenAI-compatible reply (HTML): page title 'Sign in - Corporate SSO'",
    "openai": "not an OpenAI-compatible reply (HTML): page title 'Sign in - Corporate SSO'",
    "anthropic": "not an Anthropic Messages API reply (HTML): page title 'Sign in - Corporate SSO'",
    "llamacpp": "not a llama.cpp server reply (HTML): page title 'Sign in - Corporate SSO'",
    "ollama": "not an Ollama reply (HTML)",
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_html_page_is_called_html_not_a_truncated_stream(
    tmp_path: Path, backend: BackendKind
) -> None:
    """A captive portal or SSO proxy answering 200 with its login page is named as such."""
    plan = Plan("html_body")
    server = server_for(backend, plan).start()
    try:
        settings = make_settings(
            {"under-test": backend_block(backend, server_root(server))}, "under-test"
        )
        tickets = make_tickets(1)
        rows, _ = await asyncio.wait_for(route_batch(tmp_path, settings, tickets), GUARD_S)
    finally:
        server.stop()
    (row,) = rows
    assert row["error_class"] == "BadResponse", row
    assert row["error_message"].startswith(HTML_NAMED[backend]), row["error_message"]
    assert plan.seen["0"] == 1, "an HTML page is not worth a retry"
