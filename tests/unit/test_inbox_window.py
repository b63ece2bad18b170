"""The inbox window over a real store: reloading in place, growing at an edge within `WINDOW`
rows, the attention scan, and which rows need a person. No Textual."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.core.database_url import PgTarget
from tui.core.inbox_window import (
    PAGE,
    WINDOW,
    extend_window,
    find_attention,
    needs_attention,
    reload_window,
    row_with_decision,
)
from tui.core.models import Decision, Ticket
from tui.core.store import Store

N = 1000


def decided(tid: str, *, label: str | None = "billing", confidence: float = 0.9) -> Decision:
    return Decision(
        ticket_id=tid,
        run_id="r",
        backend="api",
        backend_type="openai",
        label=label,
        confidence=confidence if label else None,
        total_ms=5.0,
        cost_usd=0.001,
        error_class=None if label else "ServerError",
    )


@pytest.fixture
def store(db_target: Path | PgTarget) -> Store:
    """On both engines: the conformance suite (tests/conftest.py `db_target`)."""
    opened = Store(db_target)
    opened.import_tickets([Ticket(id=f"T{i:04d}", text=f"text {i}") for i in range(N)])
    sure = [decided(f"T{i:04d}") for i in range(N)]
    opened.record_decisions(sure)
    yield opened
    opened.close()


def ids(rows: tuple[object, ...]) -> list[str]:
    return [r.ticket_id for r in rows]  # type: ignore[attr-defined]


def test_reload_reads_the_top_or_the_same_stretch_again(store: Store) -> None:
    top = reload_window(store, "all", (), 0)
    assert top.offset == 0 and top.total == N and len(top.rows) == 2 * PAGE
    assert ids(top.rows)[:2] == ["T0999", "T0998"]  # newest first
    down = extend_window(store, "all", top.rows, top.offset, "down")
    down = extend_window(store, "all", down.rows, down.offset, "down")
    assert len(down.rows) == WINDOW and down.offset == 4 * PAGE - WINDOW
    again = reload_window(store, "all", down.rows, down.offset)
    assert again.offset == down.offset and ids(again.rows) == ids(down.rows)


def test_growing_up_undoes_growing_down(store: Store) -> None:
    first = reload_window(store, "all", (), 0)
    down = extend_window(store, "all", first.rows, 0, "down")
    down = extend_window(store, "all", down.rows, down.offset, "down")
    up = extend_window(store, "all", down.rows, down.offset, "up")
    assert up.offset == down.offset - PAGE and len(up.rows) == WINDOW
    assert ids(up.rows)[0] == f"T{N - 1 - up.offset:04d}"
    top = extend_window(store, "all", up.rows, up.offset, "up")
    assert top.offset == 0 and ids(top.rows)[0] == "T0999"


def test_low_confidence_reload_keeps_its_order(store: Store) -> None:
    unsure = [decided(f"T{i:04d}", confidence=0.2 + i / 10_000) for i in range(0, N, 3)]
    store.record_decisions([d.model_copy(update={"run_id": "r2"}) for d in unsure])
    first = reload_window(store, "low_confidence", (), 0)
    down = extend_window(store, "low_confidence", first.rows, 0, "down")
    down = extend_window(store, "low_confidence", down.rows, down.offset, "down")
    assert down.offset == PAGE  # the window dropped its first page
    again = reload_window(store, "low_confidence", down.rows, down.offset)
    assert ids(again.rows) == ids(down.rows)
    confidences = [r.confidence for r in again.rows]
    assert confidences == sorted(confidences)  # least sure first


def test_the_scan_finds_the_next_ticket_that_needs_a_person(store: Store) -> None:
    store.record_decisions([decided("T0300", label=None).model_copy(update={"run_id": "r2"})])
    window = reload_window(store, "all", (), 0)
    found = find_attention(store, "all", window.rows, window.offset, 0.6)
    assert found is not None and found.focus == "T0300"
    position = N - 1 - 300
    assert found.offset == position - 5 and ids(found.rows)[5] == "T0300"
    past = tuple(r for r in found.rows[6:])
    assert find_attention(store, "all", past, found.offset + 6, 0.6) is None


def test_what_needs_attention(store: Store) -> None:
    row = store.inbox_row("T0001")
    assert row is not None and not needs_attention(row, 0.6)
    assert needs_attention(row, 0.95)  # 0.9 is unsure at this threshold
    failed = row_with_decision(row, decided("T0001", label=None))
    assert failed.error_class == "ServerError" and needs_attention(failed, 0.6)
    assert not needs_attention(failed.model_copy(update={"label": "billing"}), 0.6)
    assert needs_attention(row.model_copy(update={"disagreement": True}), 0.6)
    assert needs_attention(row.model_copy(update={"predicted_label": None}), 0.6)
