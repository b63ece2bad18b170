"""The database and taxonomy the TUI starts on, opened on a thread while the app is imported.

Without a `[labels]` table the taxonomy is the labels tickets carry now. That was a
`SELECT DISTINCT` over the labelled tickets, 0.3-0.5 s at a million, and is now a seek per
label in `ix_tickets_label` (`Store.current_labels`), well under a millisecond; opening an
older database adds that index once (0.6 s at a million). Importing Textual and the screens
needs no database, and SQLite lets go of the interpreter while it works, so `triagedesk`
starts the one beside the other (`tui.cli.group`) and the app takes the result when it is
ready (`tui.app.run_app`).

"""

from __future__ import annotations

import threading

from tui.core.config import Settings
from tui.core.models import Taxonomy
from tui.core.store import DbTarget, Store
from tui.services.routing import NoTaxonomy, resolve_taxonomy


def open_for_tui(
    settings: Settings, db_path: DbTarget, *, make_folder: bool
) -> tuple[Store, Taxonomy]:
    """Open (or create) the database and resolve the taxonomy; none known is an empty one,
    which the app warns about. The store is closed again if the taxonomy fails.

    Raises:
        StoreError: The database cannot be opened or created.
    """
    store = Store(db_path, create=True, make_folder=make_folder)
    try:
        try:
            taxonomy = resolve_taxonomy(settings, store)
        except NoTaxonomy:
            taxonomy = Taxonomy(labels=())
    except BaseException:
        store.close()
        raise
    return store, taxonomy


class Opening:
    """`open_for_tui` on a daemon thread from the moment this is made; `result()` waits for
    it and raises what it raised."""

    def __init__(self, settings: Settings, db_path: DbTarget, *, make_folder: bool) -> None:
        self._args = (settings, db_path, make_folder)
        self._result: tuple[Store, Taxonomy] | None = None
        self._error: BaseException | None = None
        # A daemon: a start-up that fails on the main thread must not wait for the scan.
        self._thread = threading.Thread(target=self._run, name="triagedesk-open", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        settings, db_path, make_folder = self._args
        try:
            self._result = open_for_tui(settings, db_path, make_folder=make_folder)
        except BaseException as exc:  # handed to result(), on the thread that asks
            self._error = exc

    def result(self) -> tuple[Store, Taxonomy]:
        """The opened store and its taxonomy (the caller closes the store).

        Raises:
            StoreError: The database cannot be opened or created.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
