"""The TUI's start-up: the database opens on a thread beside the app's imports (`Opening`),
failures still end in one line and exit status 2, and the scan for unusable stored labels
waits until the inbox's first page is on screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tui.core.config import Settings
from tui.core.ingest import parse_bytes
from tui.core.store import Store, StoreError
from tui.services.opening import Opening
from tui.services.routing import resolve_taxonomy


def _settings(**routing: Any) -> Settings:
    return Settings.model_validate(
        {
            "routing": {"backend": "specialist", "reference_backend": None, **routing},
            "backends": {"specialist": {"type": "specialist", "name": "specialist"}},
        }
    )


def _labelled_db(path: Path) -> Path:
    with Store(path) as store:
        parsed = parse_bytes(
            b'{"id": "a", "text": "card charged twice", "label": "billing"}\n'
            b'{"id": "b", "text": "parcel is late", "label": "shipping"}\n'
            b'{"id": "c", "text": "no label yet"}\n',
            "jsonl",
        )
        store.import_tickets(parsed.tickets, parsed.labels)
    return path


def test_the_opening_gives_the_store_and_the_taxonomy_of_the_stored_labels(
    tmp_path: Path,
) -> None:
    settings = _settings()
    store, taxonomy = Opening(settings, _labelled_db(tmp_path / "t.db"), make_folder=False).result()
    try:
        assert taxonomy.names == ("billing", "shipping")
        assert taxonomy == resolve_taxonomy(settings, store)
        assert store.ticket_count() == 3
    finally:
        store.close()


def test_no_labels_anywhere_is_an_empty_taxonomy(tmp_path: Path) -> None:
    store, taxonomy = Opening(_settings(), tmp_path / "new.db", make_folder=False).result()
    try:
        assert taxonomy.labels == ()
        assert (tmp_path / "new.db").exists()  # the TUI may create its database
    finally:
        store.close()


def test_a_database_that_cannot_be_opened_is_raised_where_the_result_is_asked(
    tmp_path: Path,
) -> None:
    opening = Opening(_settings(), tmp_path / "missing" / "t.db", make_folder=False)
    with pytest.raises(StoreError, match="does not exist"):
        opening.result()
    with pytest.raises(StoreError):  # asked again, the same answer
        opening.result()


def test_run_app_says_why_and_exits_2_when_the_opening_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tui.app import run_app

    target = tmp_path / "missing" / "t.db"
    opening = Opening(_settings(), target, make_folder=False)
    assert run_app(_settings(), target, opening=opening) == 2
    err = capsys.readouterr().err
    assert err.startswith("triagedesk: error: ") and "does not exist" in err


async def test_unusable_labels_are_looked_for_after_the_first_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from screens.widgets.ticket_table import TicketTable
    from tui.app import TriageApp, make_app
    from tui.services.routing import Router

    monkeypatch.setattr(TriageApp, "LABEL_CHECK_DELAY_S", 0.05)
    settings = _settings()
    store, taxonomy = Opening(settings, _labelled_db(tmp_path / "t.db"), make_folder=False).result()
    rows_when_checked: list[int] = []
    real = store.unusable_labels

    def watched() -> dict[str, tuple[str, int]]:
        tables = app.screen.query(TicketTable)
        rows_when_checked.append(len(tables.first().window_rows) if tables else -1)
        return real()

    monkeypatch.setattr(store, "unusable_labels", watched)
    try:
        app = make_app(settings, store, Router(settings, taxonomy, store))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(200):
                if rows_when_checked:
                    break
                await pilot.pause(0.05)
        assert rows_when_checked == [3]  # once, with the first page already in the table
    finally:
        store.close()
