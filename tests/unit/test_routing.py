"""The routing engine on a real store: pricing, errors, hot swap, interruption and resume."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from tui.core import registry
from tui.core.config import _build
from tui.core.models import Decision, Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router, RunSummary, page_pending

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "returns"])


@pytest.fixture(autouse=True)
def plugin_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    monkeypatch.setitem(registry.BUILTIN, "crash", "tests.unit.plugin_backends:CrashingBackend")


def settings(**extra: dict) -> object:
    return _build(
        {
            "routing": {"backend": "a", "reference_backend": "ref"},
            "backends": {
                "a": {"type": "hash", "input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0},
                "b": {"type": "hash", "gpu_usd_per_hour": 3.6, "delay_s": 0.01},
                "slow": {"type": "hash", "delay_s": 0.02, "max_concurrency": 4},
                "crash": {"type": "crash"},
                "ref": {
                    "type": "openai",
                    "base_url": "http://127.0.0.1:9/v1",
                    "model": "m",
                    "input_usd_per_mtok": 0.15,
                    "output_usd_per_mtok": 0.6,
                },
                **extra,
            },
        },
        None,
    )


def make(tmp_path: Path, n: int, fail_every: int = 0) -> Store:
    store = Store(tmp_path / "r.db")
    store.import_tickets(
        [
            Ticket(
                id=f"T{i:05d}",
                text=("FAIL " if fail_every and i % fail_every == 0 else "") + f"text {i}",
            )
            for i in range(n)
        ]
    )
    return store


async def test_decisions_are_priced_and_stored(tmp_path: Path) -> None:
    store = make(tmp_path, 20, fail_every=7)
    router = Router(settings(), TAXONOMY, store)
    run = store.open_run("a", "unrouted")
    summary = await router.run(
        page_pending(store, run.id, unrouted_only=True), run_id=run.id, concurrency=4
    )
    assert summary.routed == 20 and summary.errors == 3
    ok = store.decisions_for("T00001")[0]
    assert ok.cost_usd == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)
    assert ok.counterfactual_cost_usd == pytest.approx((100 * 0.15 + 10 * 0.6) / 1e6)
    assert not ok.tokens_estimated
    failed = store.decisions_for("T00000")[0]
    assert failed.error_class == "ServerError" and failed.label is None
    assert store.count_unrouted() == 0 and store.inbox_count("errors") == 3


async def test_gpu_share_pricing(tmp_path: Path) -> None:
    store = make(tmp_path, 1)
    router = Router(settings(), TAXONOMY, store)
    d = await router.route_one(store.get_ticket("T00000"), backend="b")  # type: ignore[arg-type]
    assert d.cost_usd == pytest.approx(3.6 * d.total_ms / 3_600_000)


async def test_a_backend_bug_becomes_an_error_decision(tmp_path: Path) -> None:
    store = make(tmp_path, 3)
    router = Router(settings(), TAXONOMY, store)
    summary = await router.run(store.get_tickets(["T00000", "T00001"]), run_id="x", backend="crash")
    assert summary.errors == 2
    assert store.decisions_for("T00000")[0].error_class == "InternalError"


async def test_hot_swap_applies_to_the_next_ticket(tmp_path: Path) -> None:
    store = make(tmp_path, 40)
    router = Router(settings(), TAXONOMY, store)
    router.swap("slow")
    seen: list[str] = []

    def on_decision(d: object) -> None:
        seen.append(d.backend)  # type: ignore[attr-defined]
        if len(seen) == 10:
            router.swap("a")

    await router.run(
        store.get_tickets([f"T{i:05d}" for i in range(40)]),
        run_id="hs",
        concurrency=2,
        on_decision=on_decision,
    )
    assert seen[:10] == ["slow"] * 10
    assert seen[-1] == "a"
    assert {d.backend for t in range(40) for d in store.decisions_for(f"T{t:05d}")} == {"slow", "a"}


async def test_interrupted_run_resumes_with_exactly_one_decision_per_ticket(tmp_path: Path) -> None:
    store = make(tmp_path, 300)
    router = Router(settings(), TAXONOMY, store)
    run = store.open_run("slow", "all")
    count = 0

    def on_decision(_d: object) -> None:
        nonlocal count
        count += 1

    task = asyncio.create_task(
        router.run(
            page_pending(store, run.id),
            run_id=run.id,
            backend="slow",
            concurrency=4,
            on_decision=on_decision,
        )
    )
    while count < 40:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    done = store.decisions_in_run(run.id)
    assert 40 <= done < 300
    resumed = store.open_run("slow", "all")
    assert resumed.resumed and resumed.id == run.id
    summary = await router.run(
        page_pending(store, run.id), run_id=run.id, backend="slow", concurrency=8
    )
    assert summary.routed == 300 - done
    rows = store.conn.execute(
        "SELECT ticket_id, count(*) FROM decisions WHERE run_id = ? GROUP BY 1", (run.id,)
    ).fetchall()
    assert len(rows) == 300 and all(c == 1 for _, c in rows)


async def test_eval_mode_stores_nothing(tmp_path: Path) -> None:
    store = make(tmp_path, 5)
    router = Router(settings(), TAXONOMY, store)
    got = []
    await router.run(
        store.get_tickets(["T00001", "T00002"]), run_id="e", store=False, on_decision=got.append
    )
    assert len(got) == 2 and store.decision_count() == 0


def test_run_summary_counts_labels_and_errors() -> None:
    def decision(label: str | None = None, error_class: str | None = None) -> Decision:
        return Decision(
            ticket_id="t",
            run_id="r",
            backend="b",
            backend_type="fake",
            label=label,
            error_class=error_class,
        )

    summary = RunSummary("r")
    for one in (
        decision("billing"),
        decision("billing"),
        decision("shipping"),
        decision(error_class="Timeout"),
        decision(error_class=""),
    ):
        summary.count(one)
    assert summary.routed == 5
    assert summary.labels == Counter({"billing": 2, "shipping": 1})
    assert summary.errors == 2
    assert summary.error_classes == Counter({"Timeout": 1, "?": 1})
