"""A throwaway PostgreSQL cluster for tests and CI: initdb in a temporary folder, a server on a
free loopback port (and a Unix socket in the same folder), removed at the end.

Real PostgreSQL, no mock: the conformance suite runs every store test against it. The Debian
`postgresql` package puts `initdb` and `pg_ctl` under `/usr/lib/postgresql/<major>/bin`;
`initdb` refuses to run as root, so as root (CI containers) the cluster is made and run as the
`postgres` user the package creates, through `runuser`.

`TRIAGEDESK_REQUIRE_PG=1` (set by `.ci/run`) turns "no server could be started" from a skip
into a failure, so CI can never pass with the PostgreSQL half of the suite skipped.

Run as a script (`python -m tests.servers.postgres`) it starts a cluster, prints its URL and
waits for Ctrl-C: for benchmarks and trying the TUI by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REQUIRE_ENV = "TRIAGEDESK_REQUIRE_PG"
"""Set to 1 where PostgreSQL must be available (CI): a cluster that fails to start fails."""


class NoPostgres(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise NoPostgres(
            "no initdb/pg_ctl found (install the Debian `postgresql` package:"
            " apt-get install postgresql)"
        )
    return versions[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running throwaway cluster: `url(db)` for a database in it, `stop()` removes it."""

    root: Path
    port: int
    user: str
    bin_dir: Path
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200 -c shared_buffers=128MB"
        )
        done = self.pg_ctl("-w", "-t", "60", "-l", str(self.root / "log"), "-o", options, "start")
        if done.returncode != 0:
            raise NoPostgres(f"pg_ctl start failed: {done.stderr.strip()[-300:]}")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop", check=False)

    def restart(self) -> None:
        """Stop (fast: open connections are cut, as a server restart does) and start again."""
        self.stop("fast")
        self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"td_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_cluster() -> Cluster:
    """initdb + pg_ctl start on a free port in a new temporary folder.

    Raises:
        NoPostgres: The binaries are missing or the server would not start.
    """
    bin_dir = _bin_dir()
    as_user: list[str] = []
    user = os.environ.get("USER") or "postgres"
    root = Path(tempfile.mkdtemp(prefix="triagedesk-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise NoPostgres("running as root and no `runuser` to start PostgreSQL as postgres")
        as_user = [runuser, "-u", "postgres", "--"]
        user = "postgres"
        shutil.chown(root, "postgres", "postgres")
    else:
        import getpass

        user = getpass.getuser()
    root.chmod(0o700)
    made = subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(root / "data"),
            "-U",
            user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise NoPostgres(f"initdb failed: {made.stderr.strip()[-300:]}")
    for attempt in range(5):
        cluster = Cluster(root, free_port(), user, bin_dir, as_user)
        try:
            cluster.start()
            return cluster
        except NoPostgres:
            if attempt == 4:
                shutil.rmtree(root, ignore_errors=True)
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    running = start_cluster()
    print(running.url(), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        running.remove()
