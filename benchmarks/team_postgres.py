"""Team mode: the store on PostgreSQL beside SQLite, in one run on one machine.

- import N tickets (PostgreSQL: COPY; SQLite: executemany), through `Store.import_tickets`;
- inbox pages and filters at N (median ms of the first page and of a keyset page deep down);
- claim throughput: 20 desks (each its own store and connection) claiming one ticket at a
  time for `--claim-s` seconds;
- the cost of a server on another host: the same reads and claims through a loopback TCP proxy
  that delays every packet by `--delay-ms` each way.

The PostgreSQL server is a throwaway cluster (tests/servers/postgres.py) with fsync off, as in
the tests: the figures are the engine's and the protocol's, not a disk's.

    uv run python -m benchmarks.team_postgres --n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.store_scale import timed, write_tickets
from tests.servers.postgres import start_cluster
from tui.core.store import INBOX_FILTERS, Store


def import_into(target: Path | str, data: Path) -> tuple[float, Store]:
    from tui.core.ingest import parse_file

    parsed = parse_file(data)
    store = Store(target)
    started = time.perf_counter()
    store.import_tickets(parsed.tickets, parsed.labels, source=str(data))
    return time.perf_counter() - started, store


def inbox_figures(store: Store) -> dict[str, float]:
    out: dict[str, float] = {}
    for flt in INBOX_FILTERS:
        ms, rows = timed(lambda flt=flt: store.inbox_page(flt, limit=100))
        out[f"{flt} first page"] = ms
        if rows:
            deep = store.inbox_page(flt, limit=100)
            for _ in range(20):  # 2,000 rows down by keyset
                more = store.inbox_page(flt, after=store.cursor_of(deep[-1]), limit=100)
                if not more:
                    break
                deep = more
            cursor = store.cursor_of(deep[-1])
            ms, _ = timed(lambda flt=flt, c=cursor: store.inbox_page(flt, after=c, limit=100))
            out[f"{flt} keyset page"] = ms
        ms, _ = timed(lambda flt=flt: store.inbox_count(flt), repeats=3)
        out[f"{flt} count"] = ms
    return out


def claim_throughput(open_store: Callable[[], Store], desks: int, seconds: float) -> float:
    """Claims per second of `desks` threads, each with its own store, one ticket a claim."""
    stores = [open_store() for _ in range(desks)]
    counts = [0] * desks
    stop = time.monotonic() + seconds
    start = threading.Barrier(desks)

    def desk(i: int) -> None:
        start.wait()
        while time.monotonic() < stop:
            counts[i] += len(stores[i].claim_for_agent(f"a{i}", f"far-host:{i}:b", lease_s=600))

    threads = [threading.Thread(target=desk, args=(i,)) for i in range(desks)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    for s in stores:
        s.close()
    return sum(counts) / elapsed


class DelayProxy:
    """A loopback TCP proxy that holds every chunk `delay_s` before passing it on (each way):
    a server `2 * delay_s` of round trip away."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                loop.call_later(self.delay_s, writer.write, data)
        finally:
            loop.call_later(self.delay_s, writer.close)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )


def remote_figures(url: str, port: int, delay_ms: float) -> dict[str, float]:
    proxy = DelayProxy(port, delay_ms / 1000)
    far = url.replace(f":{port}/", f":{proxy.port}/")
    with Store(far) as store:
        out = {
            "inbox first page": timed(lambda: store.inbox_page("unlabelled", limit=100))[0],
            "ticket detail (4 reads)": timed(
                lambda: (
                    store.get_ticket("S0000001"),
                    store.decisions_for("S0000001"),
                    store.label_history("S0000001"),
                    store.ticket_link("S0000001"),
                )
            )[0],
            "claim one ticket": timed(
                lambda: store.claim_for_agent("far", "far-host:1:x", lease_s=600), repeats=9
            )[0],
            "label one ticket": timed(
                lambda: store.add_label("S0000003", "billing", agent="far"), repeats=5
            )[0],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--desks", type=int, default=20)
    parser.add_argument("--claim-s", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, nargs="*", default=[0.0, 1.0, 5.0])
    parser.add_argument("--out", default="benchmarks/results/team_postgres.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="td-team-"))
    data = tmp / "tickets.jsonl"
    write_tickets(data, args.n)
    cluster = start_cluster()
    figures: dict[str, Any] = {"n": args.n}
    try:
        url = cluster.create_database()
        pg_s, pg = import_into(url, data)
        sqlite_s, lite = import_into(tmp / "team.db", data)
        figures["import_s"] = {"postgresql": pg_s, "sqlite": sqlite_s}
        figures["inbox_ms"] = {"postgresql": inbox_figures(pg), "sqlite": inbox_figures(lite)}
        figures["claims_per_s"] = {
            "postgresql": claim_throughput(lambda: Store(url), args.desks, args.claim_s),
            "sqlite": claim_throughput(lambda: Store(tmp / "team.db"), args.desks, args.claim_s),
        }
        pg.close()
        lite.close()
        figures["remote_ms"] = {
            f"{delay:g} ms each way": remote_figures(url, cluster.port, delay)
            for delay in args.delay_ms
        }
    finally:
        cluster.remove()
    slowest = {
        engine: max(v for k, v in table.items() if "count" not in k)
        for engine, table in figures["inbox_ms"].items()
    }
    figures["slowest_inbox_page_ms"] = slowest
    figures["median_inbox_page_ms"] = {
        engine: statistics.median(v for k, v in table.items() if "count" not in k)
        for engine, table in figures["inbox_ms"].items()
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
