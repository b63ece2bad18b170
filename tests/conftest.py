"""Machine isolation for every test: a temporary TRIAGEDESK_HOME and no real API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("TRIAGEDESK_HOME", str(home))
    for var in ("TRIAGEDESK_DB", "TRIAGEDESK_CONFIG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    # a teacher named on this machine would change what every fewshot test trains
    monkeypatch.delenv("TRIAGEDESK_FEWSHOT_TEACHER", raising=False)
    yield home


def dataset(name: str) -> Path:
    """Path to a shared dataset file; skips the test with a reason when shared/ is absent."""
    path = DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} not present (the shared datasets live beside the checkout)")
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL cluster per test process (`tests.servers.postgres`).

    Skipped with the reason when no server can be started here, except where
    `TRIAGEDESK_REQUIRE_PG=1` (CI): there it is a failure, never a silent skip."""
    import os

    from tests.servers.postgres import REQUIRE_ENV, NoPostgres, start_cluster

    try:
        cluster = start_cluster()
    except NoPostgres as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no PostgreSQL server could be started: {exc}")
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def pg_url(pg_cluster: object) -> Iterator[str]:
    """The URL of a new empty database on the test cluster, dropped after the test."""
    from tests.servers.postgres import Cluster

    assert isinstance(pg_cluster, Cluster)
    url = pg_cluster.create_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """The conformance suite's database: a SQLite file, then a PostgreSQL database (as
    harlequin runs its tests over every adapter). A test taking it runs on both engines."""
    if request.param == "sqlite":
        return tmp_path / "t.db"
    from tui.core.database_url import PgTarget

    return PgTarget(request.getfixturevalue("pg_url"))
