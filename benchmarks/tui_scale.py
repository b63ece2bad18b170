"""The TUI at scale, headless through Pilot: time to the first painted inbox and peak memory on
a million-ticket database (against one of 100 tickets, in the same run), and key-to-screen
latency while 128 (and, with `--in-flight 128,1000`, 1,000) tickets are in flight on a backend
that takes 500 ms to answer.

    uv run python -m benchmarks.tui_scale --db benchmarks/results/scale.db
    uv run python -m benchmarks.tui_scale --db scale.db --baseline /tmp/main-tree --in-flight 128,1000

Without --db a database is built with benchmarks.store_scale first (--n tickets). With
`--baseline DIR` (a source tree of the code to compare against, e.g. `git archive main`) every
measurement runs twice, alternating, once per tree, so the two are compared on the same
machine in the same minutes (the shared machine is too noisy for figures of different runs).

Each tree opens databases of its own: a newer tree migrates a database on its first open, and
an older one then refuses it (its schema is newer). The baseline's 1M database is
`--baseline-db`, else a copy of `--db` taken before the new tree opens it; the 100-ticket and
the loaded databases are made by each tree's code; each tree opens (migrates) its 1M database
once before the first measurement, and that first open's time is reported on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


async def measure(db: Path, port: int | None, presses: int, in_flight: int) -> dict[str, Any]:
    """Open the app on `db`; with a port, also route `in_flight` at once and time key presses.

    The start-up follows `triagedesk`'s own (`tui.cli.group.open_tui`): where the tree has
    `tui.services.opening`, the database opens on a thread while the app is imported. Only
    names that every compared tree has are imported otherwise (`--baseline`)."""
    from tui.core.config import _build

    backends: dict[str, Any] = {"specialist": {"type": "specialist"}}
    if port is not None:
        backends["slow"] = {
            "type": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "bench-model",
            "stream": False,
            "max_concurrency": in_flight,
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
    opening: Any = None
    try:
        from tui.services.opening import Opening
    except ImportError:  # a tree from before the threaded open
        pass
    else:
        opening = Opening(settings, db, make_folder=False)
    from screens.widgets.ticket_table import TicketTable
    from tui.app import make_app
    from tui.core.models import Taxonomy
    from tui.core.store import Store
    from tui.services.routing import NoTaxonomy, Router, resolve_taxonomy

    imported = time.perf_counter()
    if opening is not None:
        store, taxonomy = opening.result()
    else:
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
        figures["first_paint_wall"] = time.time()
        figures["first_paint_after_imports_s"] = time.perf_counter() - imported
        if port is not None:
            await pilot.press("R")
            deadline = time.perf_counter() + 30
            while router.in_flight < in_flight and time.perf_counter() < deadline:
                await pilot.pause(0.01)
            figures["in_flight_at_start"] = router.in_flight
            samples = []
            counts = []
            profile = None
            if os.environ.get("TUI_SCALE_PROFILE"):  # cProfile of the UI thread while pressing
                import cProfile

                profile = cProfile.Profile()
                profile.enable()
            for i in range(presses):
                before = table.cursor_row
                # ten down, ten up; never up from the top row (a reload may put it there)
                key = "up" if i % 20 >= 10 and before > 0 else "down"
                started = time.perf_counter()
                await pilot.press(key)
                while table.cursor_row == before and time.perf_counter() - started < 10:
                    await pilot.pause(0.001)
                await pilot.pause()
                samples.append((time.perf_counter() - started) * 1000)
                counts.append(router.in_flight)
            if profile is not None:
                profile.disable()
                profile.dump_stats(os.environ["TUI_SCALE_PROFILE"])
            figures["key_to_screen_ms"] = {
                "p50": statistics.median(samples),
                "p95": sorted(samples)[int(len(samples) * 0.95) - 1],
                "max": max(samples),
            }
            figures["in_flight_during_presses"] = {"min": min(counts), "max": max(counts)}
    store.close()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def child(args: argparse.Namespace) -> None:
    figures = asyncio.run(measure(Path(args.child_db), args.port, args.presses, args.in_flight))
    print(json.dumps(figures))


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


def prepare(db: Path) -> float:
    """Open `db` once (migrating it to this tree's schema) and close it: seconds taken."""
    from tui.core.store import Store

    started = time.perf_counter()
    Store(db, create=False).close()
    return time.perf_counter() - started


def on_tree(tree: Path, *args: str) -> str:
    """This file run on `tree`'s code with `args` (one of the `--make-small`-like modes)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tree, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} on {tree}: {out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--in-flight", default="128", help="comma-separated, e.g. 128,1000")
    parser.add_argument("--only", choices=("opens", "loaded"), help="skip the other half")
    parser.add_argument("--baseline", type=Path, help="source tree of the code to compare to")
    parser.add_argument(
        "--baseline-db", type=Path, help="the baseline's 1M database (default: a copy of --db)"
    )
    parser.add_argument("--child-db")
    parser.add_argument("--port", type=int)
    parser.add_argument("--child-in-flight", type=int, default=128)
    parser.add_argument("--make-small", type=Path, help="(on a tree) build the 100-ticket db")
    parser.add_argument("--add-unrouted", type=Path, help="(on a tree) add unrouted tickets")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--prepare", type=Path, help="(on a tree) open the db once, timed")
    parser.add_argument("--report", action="store_true", help="rebuild the markdown from the JSON")
    args = parser.parse_args()
    if args.report:
        text = report(json.loads((RESULTS / "tui_scale.json").read_text()))
        (RESULTS / "tui_scale.md").write_text(text)
        print(text)
        return
    if args.child_db:
        args.in_flight = args.child_in_flight
        child(args)
        return
    if args.make_small:
        small_db(args.make_small)
        return
    if args.add_unrouted:
        add_unrouted(args.add_unrouted, args.count)
        return
    if args.prepare:
        print(json.dumps({"first_open_s": prepare(args.prepare)}))
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
    work = tmp / "work.db"
    here = Path(__file__).resolve().parents[1]
    trees = {"new": here} if args.baseline is None else {"new": here, "before": args.baseline}
    bigs = {"new": big}
    if args.baseline is not None:
        bigs["before"] = args.baseline_db or tmp / "before-big.db"
        if args.baseline_db is None:  # before the new tree's first open migrates `big`
            shutil.copy(big, bigs["before"])
    smalls = {name: tmp / f"small-{name}.db" for name in trees}
    first_open: dict[str, float] = {}
    for name, tree in trees.items():
        on_tree(tree, "--make-small", str(smalls[name]))
        first_open[name] = json.loads(on_tree(tree, "--prepare", str(bigs[name])))["first_open_s"]

    def run_child(tree: Path, db: Path, port: int | None, in_flight: int = 128) -> dict[str, Any]:
        """One measurement in a fresh process on `tree`'s code (this file's child either way)."""
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child-db",
            str(db),
            "--presses",
            str(args.presses),
            "--child-in-flight",
            str(in_flight),
        ]
        if port is not None:
            cmd += ["--port", str(port)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        launched = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tree, env=env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        figures = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        figures["first_paint_exec_s"] = figures.pop("first_paint_wall") - launched
        return figures

    data: dict[str, Any] = {
        "presses": args.presses,
        "trees": list(trees),
        "first_open_s": first_open,
    }
    if args.only != "loaded":
        opens: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"100 tickets": [], "1M tickets": []} for name in trees
        }
        for _ in range(args.repeats):
            for name, tree in trees.items():
                opens[name]["100 tickets"].append(run_child(tree, smalls[name], None))
                opens[name]["1M tickets"].append(run_child(tree, bigs[name], None))
        data["opens"] = opens["new"]
        data["opens_by_tree"] = opens
    if args.only != "opens":
        from benchmarks.routing_overhead import free_port

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fast_openai_server", str(port), "500"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        loaded: dict[str, dict[str, Any]] = {name: {} for name in trees}
        try:
            for count in (int(c) for c in args.in_flight.split(",")):
                for name, tree in trees.items():
                    shutil.copy(bigs[name], work)
                    # enough unrouted tickets to keep `count` in flight through every press
                    on_tree(
                        tree, "--add-unrouted", str(work), "--count", str(max(3000, 25 * count))
                    )
                    try:
                        loaded[name][str(count)] = run_child(tree, work, port, count)
                    finally:
                        for suffix in ("", "-wal", "-shm"):
                            Path(str(work) + suffix).unlink(missing_ok=True)
        finally:
            server.terminate()
        data["loaded"] = loaded["new"].get("128") or next(iter(loaded["new"].values()))
        data["loaded_by_tree"] = loaded
    from tui.core.store import Store

    with Store(big) as store:
        data["tickets"] = store.ticket_count()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tui_scale.json").write_text(json.dumps(data, indent=1))
    text = report(data)
    (RESULTS / "tui_scale.md").write_text(text)
    print(text)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r.get(key, float("nan")) for r in runs)


def report(data: dict[str, Any]) -> str:
    """Markdown of the figures, also rebuilt from tui_scale.json (`--report`)."""
    tickets = data.get("tickets", 1_000_000)
    lines: list[str] = []
    if "opens" in data:
        lines += [
            "| database | first painted inbox from process start (median, min-max) |"
            " of which after imports | peak RSS MB | target |",
            "|---|---|---|---|---|",
        ]
        for name, runs in data["opens"].items():
            times = [r.get("first_paint_exec_s", r["first_paint_s"]) for r in runs]
            rss = statistics.median(r["peak_rss_mb"] for r in runs)
            label = f"{tickets:,} tickets" if name == "1M tickets" else name
            lines.append(
                f"| {label} | {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f})"
                f" | {_median(runs, 'first_paint_after_imports_s'):.2f} s | {rss:.0f} |"
                " ≤ 0.8 s, ≤ 250 MB |"
            )
    if "loaded" in data:
        loaded = data["loaded"]
        k = loaded["key_to_screen_ms"]
        lines += [
            "",
            f"While {loaded['in_flight_at_start']} tickets were in flight (between"
            f" {loaded['in_flight_during_presses']['min']} and"
            f" {loaded['in_flight_during_presses']['max']} during the presses) on a backend"
            f" answering in 500 ms, {data.get('presses', 60)} cursor moves took p50"
            f" {k['p50']:.1f} ms, p95 {k['p95']:.1f} ms, max {k['max']:.1f} ms from key press to"
            " the repainted screen (Pilot, 120×40). Peak RSS of that session"
            f" {loaded['peak_rss_mb']:.0f} MB.",
        ]
    lines += [
        "",
        "From process start the time includes starting Python and importing Textual and the app,"
        " the same for any database; after imports it is opening the store, the first page query"
        " and the first paint.",
    ]
    if data.get("first_open_s"):
        opened = ", ".join(f"{k} {v:.2f} s" for k, v in data["first_open_s"].items())
        lines += ["", f"First open of the 1M database (a migration, where one was due): {opened}."]
    trees = data.get("trees", [])
    if len(trees) == 2:
        new, before = trees
        lines += ["", f"Side by side in the same run, alternating ({new} / {before}):", ""]
        lines += ["| measurement | " + new + " | " + before + " | ratio |", "|---|---|---|---|"]
        for name, runs in data.get("opens_by_tree", {}).get(new, {}).items():
            a = _median(runs, "first_paint_exec_s")
            b = _median(data["opens_by_tree"][before][name], "first_paint_exec_s")
            lines.append(
                f"| first paint from process start, {name} | {a:.2f} s | {b:.2f} s | {b / a:.1f}× |"
            )
        for count, figures in data.get("loaded_by_tree", {}).get(new, {}).items():
            old = data["loaded_by_tree"][before][count]
            for stat in ("p50", "p95"):
                a, b = figures["key_to_screen_ms"][stat], old["key_to_screen_ms"][stat]
                lines.append(
                    f"| key to screen {stat}, {count} asked in flight (reached {new}"
                    f" {figures['in_flight_at_start']}, {before} {old['in_flight_at_start']})"
                    f" | {a:.1f} ms | {b:.1f} ms | {b / a:.1f}× |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
