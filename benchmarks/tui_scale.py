"""The TUI at scale, headless through Pilot: time to the first painted inbox and peak memory on
a million-ticket database (against one of 100 tickets, in the same run), and key-to-screen
latency while 128 tickets are in flight on a backend that takes 500 ms to answer.

    uv run python -m benchmarks.tui_scale --db benchmarks/results/scale.db

Without --db a database is built with benchmarks.store_scale first (--n tickets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()
RESULTS = Path(__file__).parent / "results"


async def measure(db: Path, port: int | None, presses: int) -> dict[str, Any]:
    """Open the app on `db`; with a port, also route 128 at once and time key presses."""
    from screens.widgets.ticket_table import TicketTable
    from tui.app import make_app
    from tui.core.config import _build
    from tui.core.models import Taxonomy
    from tui.core.store import Store
    from tui.services.routing import NoTaxonomy, Router, resolve_taxonomy

    backends: dict[str, Any] = {"specialist": {"type": "specialist"}}
    if port is not None:
        backends["slow"] = {
            "type": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "bench-model",
            "stream": False,
            "max_concurrency": 128,
            "timeout_s": 60,
            "input_usd_per_mtok": 0.15,
            "output_usd_per_mtok": 0.6,
        }
    settings = _build(
        {
            "routing": {"backend": "slow" if port else "specialist", "reference_backend": None},
            "backends": backends,
        },
        None,
    )
    imported = time.perf_counter()
    store = Store(db)
    try:
        taxonomy = resolve_taxonomy(settings, store)
    except NoTaxonomy:
        taxonomy = Taxonomy(labels=())
    router = Router(settings, taxonomy, store)
    app = make_app(settings, store, router)
    figures: dict[str, Any] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        table = None
        while table is None or table.row_count == 0:
            await pilot.pause(0.01)
            found = app.screen.query(TicketTable)
            table = found.first() if found else None
        await pilot.pause()
        figures["first_paint_s"] = time.perf_counter() - STARTED
        figures["first_paint_after_imports_s"] = time.perf_counter() - imported
        if port is not None:
            await pilot.press("R")
            deadline = time.perf_counter() + 30
            while router.in_flight < 128 and time.perf_counter() < deadline:
                await pilot.pause(0.01)
            figures["in_flight_at_start"] = router.in_flight
            samples = []
            in_flight = []
            for i in range(presses):
                key = "down" if i % 20 < 10 else "up"
                before = table.cursor_row
                started = time.perf_counter()
                await pilot.press(key)
                while table.cursor_row == before:
                    await pilot.pause(0.001)
                await pilot.pause()
                samples.append((time.perf_counter() - started) * 1000)
                in_flight.append(router.in_flight)
            figures["key_to_screen_ms"] = {
                "p50": statistics.median(samples),
                "p95": sorted(samples)[int(len(samples) * 0.95) - 1],
                "max": max(samples),
            }
            figures["in_flight_during_presses"] = {"min": min(in_flight), "max": max(in_flight)}
    store.close()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def child(args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(measure(Path(args.child_db), args.port, args.presses))))


def small_db(path: Path) -> None:
    from tui.core.demo import generate_inbox
    from tui.core.store import Store

    inbox = generate_inbox(100, seed=3)
    with Store(path) as store:
        store.import_tickets(
            [d.ticket for d in inbox], {d.ticket.id: d.true_label for d in inbox[:30]}
        )


def add_unrouted(db: Path, n: int) -> None:
    from tui.core.demo import generate_inbox
    from tui.core.models import Ticket
    from tui.core.store import Store

    with Store(db) as store:
        fresh = [
            Ticket(id=f"NEW-{i:05d}-{time.time_ns()}", text=d.ticket.text, subject=d.ticket.subject)
            for i, d in enumerate(generate_inbox(n, seed=8))
        ]
        store.import_tickets(fresh)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-db")
    parser.add_argument("--port", type=int)
    parser.add_argument("--report", action="store_true", help="rebuild the markdown from the JSON")
    args = parser.parse_args()
    if args.report:
        text = report(json.loads((RESULTS / "tui_scale.json").read_text()))
        (RESULTS / "tui_scale.md").write_text(text)
        print(text)
        return
    if args.child_db:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="td-tui-"))
    big = args.db
    if big is None or not big.exists():
        big = tmp / "big.db"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.store_scale",
                "--n",
                str(args.n),
                "--keep",
                str(big),
                "--out",
                str(tmp / "store.json"),
            ],
            check=True,
        )
    small = tmp / "small.db"
    small_db(small)
    work = tmp / "work.db"

    def run_child(db: Path, port: int | None) -> dict[str, Any]:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.tui_scale",
            "--child-db",
            str(db),
            "--presses",
            str(args.presses),
        ]
        if port is not None:
            cmd += ["--port", str(port)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    opens: dict[str, list[dict[str, Any]]] = {"100 tickets": [], "1M tickets": []}
    for _ in range(args.repeats):
        opens["100 tickets"].append(run_child(small, None))
        opens["1M tickets"].append(run_child(big, None))
    from benchmarks.routing_overhead import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fast_openai_server", str(port), "500"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    try:
        shutil.copy(big, work)
        add_unrouted(work, 3000)
        loaded = run_child(work, port)
    finally:
        server.terminate()
        for suffix in ("", "-wal", "-shm"):
            Path(str(work) + suffix).unlink(missing_ok=True)
    from tui.core.store import Store

    with Store(big) as store:
        tickets = store.ticket_count()
    data = {"opens": opens, "loaded": loaded, "tickets": tickets, "presses": args.presses}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tui_scale.json").write_text(json.dumps(data, indent=1))
    text = report(data)
    (RESULTS / "tui_scale.md").write_text(text)
    print(text)


def report(data: dict[str, Any]) -> str:
    """Markdown of the figures, also rebuilt from tui_scale.json (`--report`)."""
    tickets = data.get("tickets", 1_000_000)
    lines = [
        "| database | first painted inbox from process start (median, min-max) |"
        " of which after imports | peak RSS MB | target |",
        "|---|---|---|---|---|",
    ]
    for name, runs in data["opens"].items():
        times = [r["first_paint_s"] for r in runs]
        after = [r.get("first_paint_after_imports_s", float("nan")) for r in runs]
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        label = f"{tickets:,} tickets" if name == "1M tickets" else name
        lines.append(
            f"| {label} | {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}) |"
            f" {statistics.median(after):.2f} s | {rss:.0f} | ≤ 1 s, ≤ 250 MB |"
        )
    loaded = data["loaded"]
    k = loaded["key_to_screen_ms"]
    lines += [
        "",
        f"While {loaded['in_flight_at_start']} tickets were in flight (between"
        f" {loaded['in_flight_during_presses']['min']} and {loaded['in_flight_during_presses']['max']}"
        f" during the presses) on a backend answering in 500 ms, {data.get('presses', 60)} cursor"
        f" moves took p50 {k['p50']:.1f} ms, p95 {k['p95']:.1f} ms, max {k['max']:.1f} ms from key"
        " press to the repainted screen (Pilot, 120×40). Peak RSS of that session"
        f" {loaded['peak_rss_mb']:.0f} MB.",
        "",
        "From process start the time includes starting Python and importing Textual and the app,"
        " the same for any database; after imports it is opening the store, the first page query"
        " and the first paint.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
