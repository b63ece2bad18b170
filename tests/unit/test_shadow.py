"""Shadow mode on real SQLite files and real backends: the trained specialist decides, an
OpenAI-compatible shadow on a loopback server answers beside it (slowly, or failing), and the
comparison and `promote` read what was stored."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.screens.helpers import (
    LABELS,
    build_router,
    make_tickets,
    seed,
    settings_for,
    train_specialist,
)
from tests.servers.openai_server import OpenAIServer, Recorded, Reply, ScriptedHandler
from tui import cli
from tui.core.config import ConfigError, load_settings
from tui.core.intervals import wilson_interval
from tui.core.models import Decision
from tui.core.store import ShadowAnswer, ShadowCounts, ShadowPair, Store
from tui.services.routing import SHADOW_DRAIN_S
from tui.services.runs import RunService, Selection
from tui.services.shadow_compare import compare, compare_shadows


class ShadowServer(OpenAIServer):
    """An OpenAI-compatible server that takes `delay_s` per answer, or fails every request
    (HTTP 400: not retried), always answering `label` otherwise."""

    def __init__(self, *, delay_s: float = 0.0, fail: bool = False) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.fail = fail
        self.release = threading.Event()
        """Set to let every waiting (slow) request answer at once."""

    def respond(self, handler: ScriptedHandler, request: Recorded, reply: Reply) -> None:
        if request.path.endswith("/chat/completions"):
            self.release.wait(self.delay_s)
            if self.fail:
                reply = Reply(status=400)
        super().respond(handler, request, reply)


@pytest.fixture
def slow_server() -> Iterator[ShadowServer]:
    server = ShadowServer(delay_s=600.0).start()
    yield server
    server.release.set()
    server.stop()


@pytest.fixture
def failing_server() -> Iterator[ShadowServer]:
    server = ShadowServer(fail=True).start()
    yield server
    server.stop()


@pytest.fixture
def quick_server() -> Iterator[ShadowServer]:
    server = ShadowServer().start()
    yield server
    server.stop()


def openai_block(server: OpenAIServer, **extra: Any) -> dict[str, Any]:
    return {
        "type": "openai",
        "base_url": server.url,
        "model": "test-model",
        "api_key_env": "SHADOW_TEST_KEY",
        "input_usd_per_mtok": 1.0,
        "output_usd_per_mtok": 2.0,
        "max_retries": 0,
        **extra,
    }


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOW_TEST_KEY", "sk-shadow-test")


def specialist_store(tmp_path: Path, n: int, labelled: int) -> tuple[Store, Path]:
    store = Store(tmp_path / "shadow.db")
    tickets, truth = make_tickets(n)
    model = train_specialist(tmp_path / "specialist.joblib", tickets[:40], truth)
    seed(store, n, labelled=labelled)
    return store, model


# --- config ---------------------------------------------------------------------------


def write_config(path: Path, shadow: str) -> Path:
    path.write_text(
        '[routing]\nbackend = "specialist"\n'
        f"shadow = {shadow}\n"
        '[backends.api]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
    )
    return path


@pytest.mark.parametrize(
    ("shadow", "problem"),
    [
        ('["apii"]', "routing.shadow.0: no backend named \"apii\" (did you mean 'api'?)"),
        ('["specialist"]', 'routing.shadow.0: "specialist" is the active backend'),
        ('["api", "api"]', 'routing.shadow.1: "api" is listed twice'),
        ('"api"', "routing.shadow: "),
    ],
)
def test_a_bad_shadow_list_is_one_line_naming_the_key(
    tmp_path: Path, shadow: str, problem: str
) -> None:
    path = write_config(tmp_path / "config.toml", shadow)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(caught.value)
    err = io.StringIO()
    status = cli.run(["--config", str(path), "backends"], out=io.StringIO(), err=err)
    assert status == 2
    assert err.getvalue().count("\n") == 1 and "routing.shadow" in err.getvalue()


def test_a_good_shadow_list_loads(tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "config.toml", '["api"]'))
    assert settings.routing.shadow == ("api",)


# --- routing --------------------------------------------------------------------------


async def test_a_slow_shadow_never_holds_the_active_backend_back(
    tmp_path: Path, slow_server: ShadowServer
) -> None:
    """The specialist routes all 300 tickets while the shadow (one call at a time, each held
    until the test releases it) has answered none: the run never waited for it. Every ticket
    is then either answered by the shadow or counted as skipped, and nothing is left running
    once the router is closed."""
    store, model = specialist_store(tmp_path, 300, 0)
    settings = settings_for(
        {
            "specialist": {"type": "specialist", "path": str(model)},
            "slow": openai_block(slow_server, max_concurrency=1, timeout_s=120),
        },
        shadow=["slow"],
    )
    router = build_router(settings, store)
    service = RunService(store, router, lease_s=60)
    plan = service.plan(Selection("unrouted"), backend="specialist")
    before = asyncio.all_tasks()
    outcome = await service.route(plan)
    assert outcome.summary.routed == 300 and outcome.summary.errors == 0
    assert len(slow_server.completions()) <= 1  # the one call in flight, still held
    tally = router.shadows.tallies()["slow"]
    assert tally.answered == 0 and tally.skipped > 0
    slow_server.release.set()
    await router.aclose()  # the call in flight is cancelled, the queue skipped
    assert asyncio.all_tasks() <= before  # no shadow worker or writer outlives the router
    assert router.shadows.running == 0
    counts = store.shadow_counts("slow", "specialist")
    assert counts.routed + counts.skipped == 300
    assert counts.routed == tally.answered
    # the agent's decisions are the specialist's alone
    assert store.backend_stats()[0].backend == "specialist"
    assert [s.backend for s in store.backend_stats()] == ["specialist"]
    store.close()


async def test_shadow_faults_are_stored_as_shadow_errors_and_never_reach_the_run(
    tmp_path: Path, failing_server: ShadowServer
) -> None:
    store, model = specialist_store(tmp_path, 40, 10)
    settings = settings_for(
        {
            "specialist": {"type": "specialist", "path": str(model)},
            "failing": openai_block(failing_server),
            "unbuildable": {"type": "specialist", "path": str(tmp_path / "missing.joblib")},
        },
        shadow=["failing", "unbuildable"],
    )
    router = build_router(settings, store)
    service = RunService(store, router, lease_s=60)
    outcome = await service.route(service.plan(Selection("unrouted"), backend="specialist"))
    assert outcome.summary.errors == 0 and outcome.summary.routed == 40
    assert await router.shadows.drain(SHADOW_DRAIN_S)
    await router.aclose()
    for name in ("failing", "unbuildable"):
        counts = store.shadow_counts(name, "specialist")
        assert counts == ShadowCounts(routed=40, errors=40, skipped=0), name
    # every inbox row shows the specialist's decision, never a shadow's
    rows = store.conn.execute("SELECT predicted_label, error_class FROM tickets").fetchall()
    assert all(label in LABELS and error is None for label, error in rows)
    assert "sk-shadow-test" not in json.dumps(
        store.conn.execute("SELECT * FROM shadow_decisions").fetchall()
    )
    store.close()


async def test_a_shadow_is_not_asked_about_a_ticket_it_decided_itself(
    tmp_path: Path, quick_server: ShadowServer
) -> None:
    """After a hot swap to a shadow (the TUI's picker), that shadow decides: it is not asked
    again beside itself; the other shadow still is."""
    store, model = specialist_store(tmp_path, 20, 0)
    settings = settings_for(
        {
            "specialist": {"type": "specialist", "path": str(model)},
            "api": openai_block(quick_server),
            "other": {"type": "specialist", "path": str(model)},
        },
        shadow=["api", "other"],
    )
    router = build_router(settings, store)
    router.swap("api")
    service = RunService(store, router, lease_s=60)
    await service.route(service.plan(Selection("unrouted"), run_id="tui-1"))
    assert await router.shadows.drain(SHADOW_DRAIN_S)
    await router.aclose()
    assert len(quick_server.completions()) == 20  # once per ticket: as the active backend
    assert store.shadow_counts("api", "api").routed == 0
    assert store.shadow_counts("other", "api").routed == 20
    store.close()


# --- comparison -----------------------------------------------------------------------


def pair(ticket: str, truth: str | None, shadow: str | None, active: str | None) -> ShadowPair:
    return ShadowPair(
        ticket, truth, shadow, "s-model", None, 100.0, 0.002, active, "a-model", None, 10.0, 0.0
    )


def test_the_comparison_on_a_case_with_known_answers() -> None:
    """10 labelled tickets: the active backend right on 8, the shadow on 3, agreeing on 4
    of the 12 tickets both answered; an error on either side leaves the ticket out."""
    truth = ["a"] * 10
    active = ["a"] * 8 + ["b"] * 2
    shadow = ["a"] * 3 + ["b"] * 7
    pairs = [pair(f"T{i}", truth[i], shadow[i], active[i]) for i in range(10)]
    pairs += [pair("U1", None, "c", "c"), pair("U2", None, "c", "d")]  # unlabelled
    failed = ShadowPair("E1", "a", None, "s", "Timeout", None, None, "a", "a", None, 5.0, 0.0)
    pairs.append(failed)
    c = compare("cand", "live", pairs, ShadowCounts(13, 1, 7), "openai")
    assert c.compared == 12 and c.labelled == 10
    # agreement: T0-T2 (a/a), T8-T9 (b/b), U1 (c/c) = 6 of 12
    assert c.agreement == pytest.approx(6 / 12)
    assert c.shadow.accuracy == wilson_interval(3, 10)
    assert c.active.accuracy == wilson_interval(8, 10)
    assert c.shadow.p50_ms == 100.0 and c.active.p50_ms == 10.0
    assert c.shadow.cost_per_1k_usd == pytest.approx(2.0)
    assert c.active.cost_per_1k_usd == 0.0
    out = c.to_json()
    assert out["accuracy"]["shadow"] == {
        "value": 0.3,
        "low": wilson_interval(3, 10).low,
        "high": wilson_interval(3, 10).high,
        "scored_on": 10,
    }
    assert (out["answered"], out["errors"], out["skipped"]) == (13, 1, 7)
    assert c.has_evidence


def test_no_labels_is_no_evidence() -> None:
    c = compare("cand", "live", [pair("U", None, "a", "a")], ShadowCounts(), "openai")
    assert c.agreement == 1.0 and not c.has_evidence
    assert c.to_json()["accuracy"]["shadow"]["value"] is None


def record_pairs(store: Store, rows: list[tuple[str, str, str]], run_id: str = "r1") -> None:
    """Store each (ticket id, active label, shadow label) as a live decision of `specialist`
    and the shadow's answer beside it."""
    live = store.record_decisions(
        [
            Decision(
                ticket_id=t,
                run_id=run_id,
                backend="specialist",
                backend_type="specialist",
                label=a,
                total_ms=2.0,
                cost_usd=0.0,
            )
            for t, a, _ in rows
        ]
    )
    answers = []
    for decision, (t, _, s) in zip(live, rows, strict=True):
        answer = Decision(
            ticket_id=t,
            run_id=run_id,
            backend="api",
            backend_type="openai",
            label=s,
            total_ms=200.0,
            cost_usd=0.001,
        )
        assert decision.id is not None
        answers.append(ShadowAnswer(answer, "specialist", decision.id))
    store.record_shadow_answers(answers, {("api", "specialist"): 2})


def test_the_store_pairs_each_shadow_answer_with_the_decision_it_shadowed(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "pairs.db")
    truth = seed(store, 8, labelled=4)
    ids = sorted(truth)
    # the shadow always says billing; the active backend is always right
    record_pairs(store, [(t, truth[t], "billing") for t in ids])
    (c,) = compare_shadows(store, "specialist", ["api"], {"api": "openai"})
    billing_labelled = sum(1 for t in ids[:4] if truth[t] == "billing")
    assert c.shadow.accuracy.successes == billing_labelled and c.shadow.accuracy.n == 4
    assert c.active.accuracy == wilson_interval(4, 4)
    assert c.agreement == pytest.approx(sum(truth[t] == "billing" for t in ids) / 8)
    assert c.counts == ShadowCounts(routed=8, errors=0, skipped=2)
    assert c.shadow.p50_ms == 200.0 and c.active.p50_ms == 2.0
    # a second shadow answer for a ticket replaces the first in the comparison
    record_pairs(store, [(ids[0], truth[ids[0]], truth[ids[0]])], run_id="r2")
    (again,) = compare_shadows(store, "specialist", ["api"], {"api": "openai"})
    assert again.shadow.accuracy.successes == billing_labelled + (truth[ids[0]] != "billing")
    # shadow answers are in no backend statistic and no inbox row
    assert [s.backend for s in store.backend_stats()] == ["specialist"]
    store.close()


# --- stats --json and promote through the command line --------------------------------

CONFIG = """# the team's config
[labels]
billing = "Charges, invoices, refunds of payments"
shipping = "Delivery status, tracking, delays, lost parcels"
returns = "Sending items back, exchanges"
technical = "Website, app and login problems"

[routing]
backend = "specialist"   # the live one
daily_volume = 1000
shadow = [
    "api",  # the candidate
    "spare",
]

[backends.specialist]
type = "specialist"

[backends.api]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "cand"

[backends.spare]
type = "specialist"
"""


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.run(list(args), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def desk_files(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    os.chmod(config, 0o640)
    db = tmp_path / "desk.db"
    with Store(db) as store:
        truth = seed(store, 8, labelled=4)
        record_pairs(store, [(t, truth[t], "billing") for t in sorted(truth)])
    return config, db, truth


def test_stats_json_shows_the_shadows_on_the_active_backend(
    desk_files: tuple[Path, Path, dict[str, str]],
) -> None:
    config, db, _ = desk_files
    status, out, err = run_cli("--db", str(db), "--config", str(config), "stats", "--json")
    assert status == 0, err
    (entry,) = json.loads(out)
    assert entry["backend"] == "specialist"
    assert [s["shadow"] for s in entry["shadows"]] == ["api", "spare"]
    api = entry["shadows"][0]
    assert api["active"] == "specialist" and api["compared"] == 8 and api["labelled"] == 4
    assert api["accuracy"]["active"]["value"] == 1.0
    assert entry["shadows"][1]["answered"] == 0 and entry["shadows"][1]["compared"] == 0
    status, out, _ = run_cli("--db", str(db), "--config", str(config), "stats")
    assert "shadow api vs specialist: 8 both answered" in out


def test_promote_rewrites_the_config_and_records_the_evidence(
    desk_files: tuple[Path, Path, dict[str, str]],
) -> None:
    config, db, _ = desk_files
    status, out, err = run_cli(
        "--db", str(db), "--config", str(config), "promote", "api", "--agent", "ana", "--json"
    )
    assert status == 0, err
    printed = json.loads(out)
    assert printed["backend"] == "api" and printed["previous_backend"] == "specialist"
    assert printed["agent"] == "ana" and printed["shadows"] == ["specialist", "spare"]
    assert printed["evidence"]["compared"] == 8
    assert printed["evidence"]["accuracy"]["active"]["scored_on"] == 4
    text = config.read_text()
    routing = tomllib.loads(text)["routing"]
    assert routing["backend"] == "api" and routing["shadow"] == ["specialist", "spare"]
    assert "# the team's config" in text and "daily_volume = 1000" in text
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert load_settings(config).routing.backend == "api"
    with Store(db) as store:
        (event,) = store.promotions()
    assert event.evidence == printed["evidence"] and event.agent == "ana" and not event.forced
    # promoting back the other way has no evidence yet (no shadow answers beside `api`)
    status, _, err = run_cli("--db", str(db), "--config", str(config), "promote", "specialist")
    assert status == 2 and err.startswith("triagedesk: error: no evidence for")
    assert err.count("\n") == 1
    status, out, err = run_cli(
        "--db", str(db), "--config", str(config), "promote", "specialist", "--force"
    )
    assert status == 0, err
    assert "promoted specialist (was api)" in out
    with Store(db) as store:
        assert [e.forced for e in store.promotions()] == [False, True]
    assert tomllib.loads(config.read_text())["routing"]["shadow"] == ["api", "spare"]


def test_promote_refuses_a_backend_that_is_not_a_shadow(
    desk_files: tuple[Path, Path, dict[str, str]],
) -> None:
    config, db, _ = desk_files
    before = config.read_text()
    for name in ("specialist", "nope"):
        status, out, err = run_cli("--db", str(db), "--config", str(config), "promote", name)
        assert status == 2 and out == ""
        assert err == (
            f'triagedesk: error: "{name}" is not a shadow backend'
            ' ([routing] shadow: "api", "spare")\n'
        )
    assert config.read_text() == before
    with Store(db) as store:
        assert store.promotions() == []


def test_a_route_run_stores_shadow_answers_and_says_what_they_did(
    tmp_path: Path, quick_server: ShadowServer
) -> None:
    """`triagedesk route` end to end: the specialist decides, the shadow answers every ticket
    (its queue holds them all here), and stats compares the two."""
    tickets, truth = make_tickets(24)
    model = train_specialist(tmp_path / "specialist.joblib", tickets, truth)
    db = tmp_path / "route.db"
    with Store(db) as store:
        seed(store, 24, labelled=12)
    config = tmp_path / "config.toml"
    labels = "\n".join(f'{k} = "{v}"' for k, v in LABELS.items())
    config.write_text(
        f'[labels]\n{labels}\n[routing]\nbackend = "specialist"\nshadow = ["api"]\n'
        f'[backends.specialist]\ntype = "specialist"\npath = "{model}"\n'
        f'[backends.api]\ntype = "openai"\nbase_url = "{quick_server.url}"\nmodel = "m"\n'
        'api_key_env = "SHADOW_TEST_KEY"\nmax_retries = 0\n'
    )
    status, out, err = run_cli("--db", str(db), "--config", str(config), "route")
    assert status == 0, err
    assert "routed 24 tickets" in out
    assert "shadow api: answered 24 (0 failed), skipped 0 (queue full)" in err
    status, out, err = run_cli("--db", str(db), "--config", str(config), "stats", "--json")
    (entry,) = json.loads(out)
    (api,) = entry["shadows"]
    # the seeded tickets are the specialist's own training texts: none of their labels is
    # evidence for either side (every accuracy leaves out what the answering model learnt)
    assert api["compared"] == 24
    assert api["labelled"] == 0 and api["accuracy"]["shadow"]["value"] is None


def test_labels_the_active_model_trained_on_count_for_neither_side(tmp_path: Path) -> None:
    """A label the specialist learnt is not evidence: both sides are scored on the rest."""
    store = Store(tmp_path / "trained.db")
    truth = seed(store, 8, labelled=4)
    ids = sorted(truth)
    record_pairs(store, [(t, truth[t], truth[t]) for t in ids])
    store.conn.execute("UPDATE decisions SET model = 'tfidf:40ex@feed'")
    store.conn.execute(
        "INSERT INTO trained_models VALUES ('tfidf:40ex@feed', 'tfidf', 'db', 't', 2, 't', 0)"
    )
    store.conn.executemany(
        "INSERT INTO trained_examples VALUES ('tfidf:40ex@feed', ?, ?, NULL)",
        [(t, truth[t]) for t in ids[:2]],
    )
    store.conn.commit()
    (c,) = compare_shadows(store, "specialist", ["api"], {"api": "openai"})
    assert c.shadow.accuracy == wilson_interval(2, 2)
    assert c.active.accuracy == wilson_interval(2, 2)
    assert c.compared == 8  # agreement and latency still use every pair
    store.close()
