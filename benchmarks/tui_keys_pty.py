"""Key press to repainted screen, timed on the real `triagedesk` TUI in a pseudo-terminal,
while N tickets are in flight on a backend that answers in 500 ms (issue 17, item 1).

    uv run python -m benchmarks.tui_keys_pty --in-flight 0,128,1000
    git archive main | tar -x -C /tmp/keys-base
    uv run python -m benchmarks.tui_keys_pty --in-flight 128,1000 --baseline /tmp/keys-base

Why a pty and not Textual's Pilot (benchmarks/tui_scale.py): Pilot's `press` and `pause` go
through the app's own message queue and wait for it to go idle, and on this machine their
floor alone was ~170 ms, so the old figure measured Pilot as much as the app. Here the
benchmark is the terminal: it runs `python -m tui --db DB --config CFG` on the slave side of
a pty (120x40), writes the bytes of a cursor key to the master side and reads what the app
draws, timing from the write to the read that completes the repaint.

What counts as the repaint: the inbox's border subtitle says where the cursor is (`1,235 of
25,000`) and is redrawn by the same cursor move, so after a key the benchmark reads until
the output (escape sequences removed) holds the new position's text. That is exact (the
background redraws of rows and status bar never write it) and needs nothing of the app but
its screen. A press that shows nothing within `--timeout` counts at the timeout (and is
reported), and the position is read back from the screen before the next one.

How many were in flight is what the app's status bar says (`N in flight`, read off the screen
before each press; the median is reported), beside the decisions stored per second while the
keys were pressed (read from the database), so every tree is measured alike. `--baseline TREE` runs the same on another source tree (e.g. `git archive`
of the code before), alternating tree by tree for each in-flight count, in the same minutes
(the shared machine is too noisy for figures from different runs). `--variant` adds runs of
this tree with environment settings (`thread:TRIAGEDESK_ROUTING_WORKER=0`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
COLUMNS, ROWS = 120, 40
DELAY_MS = 500
DOWN, UP = b"\x1b[B", b"\x1b[A"
ANSI = re.compile(
    rb"\x1b(?:\[[0-9;?<>=!]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|[()][0-9A-Za-z]|[=>78DEHMNOZc])"
)
WHERE = re.compile(rb"(\d[\d,]*) of (\d[\d,]*)")
IN_FLIGHT = re.compile(rb"(\d[\d,]*) in flight")


@dataclass
class Terminal:
    """The master side of a pty with an app on the slave side, read without blocking."""

    fd: int
    proc: subprocess.Popen[bytes]
    screen: bytearray = field(default_factory=bytearray)
    """Everything read so far, escape sequences removed (for the position text)."""

    def read(self, timeout: float) -> tuple[bytes, float] | None:
        """One chunk and when it was read, or None when nothing came within `timeout`."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return None
        try:
            chunk = os.read(self.fd, 1 << 16)
        except OSError:
            return None
        now = time.perf_counter()
        self.screen += ANSI.sub(b"", chunk)
        return chunk, now

    def drain(self, quiet_s: float, limit_s: float) -> None:
        """Read until nothing came for `quiet_s` (or `limit_s` passed)."""
        end = time.perf_counter() + limit_s
        while time.perf_counter() < end and self.read(quiet_s) is not None:
            pass
        del self.screen[: max(0, len(self.screen) - 50_000)]

    def position(self) -> tuple[int, int] | None:
        """The last `N of M` on screen (1-based cursor position, rows in the list)."""
        found = WHERE.findall(bytes(self.screen[-20_000:]))
        if not found:
            return None
        pos, total = found[-1]
        return int(pos.replace(b",", b"")), int(total.replace(b",", b""))

    def in_flight(self) -> int | None:
        """The status bar's last `N in flight` (the app's own count), if it drew one."""
        found = IN_FLIGHT.findall(bytes(self.screen[-50_000:]))
        return int(found[-1].replace(b",", b"")) if found else None

    def write(self, data: bytes) -> float:
        now = time.perf_counter()
        os.write(self.fd, data)
        return now

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)  # the app and its worker process
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.fd)


def open_app(tree: Path, db: Path, config: Path, env: dict[str, str]) -> Terminal:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    full_env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "TERM": "xterm-256color",
        "COLUMNS": str(COLUMNS),
        "LINES": str(ROWS),
        **env,
    }
    full_env.pop("TEXTUAL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tree,
        env=full_env,
        start_new_session=True,
    )
    os.close(slave)
    return Terminal(master, proc)


def decisions(db: Path) -> int:
    """Decisions stored so far (read-only, beside the app's writes: WAL)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute("SELECT count(*) FROM decisions").fetchone()[0])
    finally:
        con.close()


def measure(
    tree: Path,
    db: Path,
    config: Path,
    env: dict[str, str],
    in_flight: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One session: open, wait for the first paint, start routing, press the keys."""
    term = open_app(tree, db, config, env)
    figures: dict[str, Any] = {"in_flight_asked": in_flight}
    try:
        started = time.perf_counter()
        while term.position() is None:
            if term.read(1.0) is None and term.proc.poll() is not None:
                raise RuntimeError(f"the app exited: {bytes(term.screen[-2000:])!r}")
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"no inbox in 120 s: {bytes(term.screen[-2000:])!r}")
        figures["first_paint_s"] = time.perf_counter() - started
        term.drain(0.5, 10)
        before = decisions(db)
        if in_flight:
            term.write(b"R")
            # wait for the first answers, then for the pipe to fill (the first wave)
            deadline = time.perf_counter() + 60
            while decisions(db) - before < in_flight and time.perf_counter() < deadline:
                term.drain(0.05, 0.25)
            term.drain(0.05, 1.0)
        samples: list[float] = []
        shown_in_flight: list[int] = []
        timeouts = 0
        stored_at_start, t_start = decisions(db), time.perf_counter()
        for i in range(args.presses):
            where = term.position()
            assert where is not None
            pos, total = where
            key = UP if (i % 20 >= 10 and pos > 1) else DOWN
            want = pos - 1 if key == UP else pos + 1
            if want > total:
                key, want = UP, pos - 1
            expect = f"{want:,} of {total:,}".encode()
            term.drain(0.02, 0.3)  # what was drawn before the key is not its repaint
            if in_flight and (count := term.in_flight()) is not None:
                shown_in_flight.append(count)
            sent = term.write(key)
            tail = len(term.screen)
            shown = None
            while shown is None:
                left = sent + args.timeout - time.perf_counter()
                if left <= 0:
                    break
                got = term.read(left)
                if got is None:
                    break
                # search from a little before the tail: the text may span two reads
                if expect in term.screen[max(0, tail - len(expect)) :]:
                    shown = got[1]
            if shown is None:
                timeouts += 1
                samples.append(args.timeout * 1000)
                term.drain(0.2, 2.0)
            else:
                samples.append((shown - sent) * 1000)
            time.sleep(args.gap)
        elapsed = time.perf_counter() - t_start
        stored = decisions(db) - stored_at_start
        ordered = sorted(samples)
        figures.update(
            presses=len(samples),
            timeouts=timeouts,
            p50_ms=statistics.median(samples),
            p95_ms=ordered[max(0, round(len(ordered) * 0.95) - 1)],
            max_ms=ordered[-1],
            decisions_per_s=stored / elapsed,
            in_flight_shown=statistics.median(shown_in_flight) if shown_in_flight else 0,
        )
    finally:
        term.close()
    return figures


def write_config(path: Path, port: int, in_flight: int) -> None:
    path.write_text(
        "[routing]\n"
        'backend = "slow"\n'
        'reference_backend = ""\n'
        "[backends.slow]\n"
        'type = "openai"\n'
        f'base_url = "http://127.0.0.1:{port}/v1"\n'
        'model = "bench-model"\n'
        "stream = false\n"
        f"max_concurrency = {max(1, in_flight)}\n"
        "timeout_s = 60\n"
        "input_usd_per_mtok = 0.15\n"
        "output_usd_per_mtok = 0.6\n"
    )


def build_db(path: Path, n: int) -> None:
    """`--n` tickets with their decisions (benchmarks.store_scale), kept at `path`."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.store_scale",
            "--n",
            str(n),
            "--keep",
            str(path),
            "--out",
            str(path.with_suffix(".json")),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="a store_scale database (default: build --n)")
    parser.add_argument("--n", type=int, default=25_000)
    parser.add_argument("--in-flight", default="128,1000", help="comma-separated; 0: idle floor")
    parser.add_argument("--presses", type=int, default=60)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between presses")
    parser.add_argument("--timeout", type=float, default=10.0, help="a press's longest wait")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="source tree of the code before")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:VAR=VALUE[,VAR=VALUE]: this tree again with that environment",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "tui_keys_pty.json")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    runs: dict[str, tuple[Path, dict[str, str]]] = {"new": (here, {})}
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        env = dict(a.split("=", 1) for a in assignments.split(",") if a)
        runs[name] = (here, env)
    if args.baseline is not None:
        runs["before"] = (args.baseline.resolve(), {})
    tmp = Path(tempfile.mkdtemp(prefix="td-keys-"))
    base = args.db
    if base is None:
        base = tmp / "base.db"
        build_db(base, args.n)
    from benchmarks.routing_overhead import free_port
    from benchmarks.tui_scale import add_unrouted

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fast_openai_server", str(port), str(DELAY_MS)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    counts = [int(c) for c in args.in_flight.split(",")]
    loaded: dict[int, Path] = {}
    for count in counts:  # enough unrouted tickets to keep `count` in flight through it all
        loaded[count] = tmp / f"loaded-{count}.db"
        shutil.copy(base, loaded[count])
        if count:
            add_unrouted(loaded[count], max(3000, 30 * count))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {name: {} for name in runs}
    load: list[float] = []
    try:
        for _ in range(args.repeats):
            for count in counts:
                for name, (tree, env) in runs.items():
                    work = tmp / "work.db"
                    shutil.copy(loaded[count], work)
                    config = tmp / "config.toml"
                    write_config(config, port, count)
                    load.append(os.getloadavg()[0])
                    figures = measure(tree, work, config, env, count, args)
                    figures["load_1m"] = load[-1]
                    results[name].setdefault(str(count), []).append(figures)
                    print(name, count, json.dumps(figures), flush=True)
                    for suffix in ("", "-wal", "-shm"):
                        Path(str(work) + suffix).unlink(missing_ok=True)
    finally:
        server.terminate()
    data = {
        "when_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "tickets": _tickets(base),
        "presses": args.presses,
        "runs": {name: str(tree) for name, (tree, _) in runs.items()},
        "load_1m": {"min": min(load), "max": max(load)},
        "results": results,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1))
    print(report(data))


def _tickets(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM tickets").fetchone()[0])
    finally:
        con.close()


def report(data: dict[str, Any]) -> str:
    """A markdown table: per in-flight count, each run's median p50/p95 over the repeats."""
    names = list(data["results"])
    lines = [
        f"{data['tickets']:,} tickets, {data['presses']} presses a session,"
        f" {data['when_utc']} UTC, 1-minute load {data['load_1m']['min']:.1f}"
        f"–{data['load_1m']['max']:.1f}",
        "",
        "| in flight asked | run | key→screen p50 | p95 | max | timeouts | in flight shown"
        " | decisions/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    counts = sorted({int(c) for runs in data["results"].values() for c in runs})
    for count in counts:
        for name in names:
            sessions = data["results"][name].get(str(count), [])
            if not sessions:
                continue

            def med(key: str, s: list[dict[str, Any]] = sessions) -> float:
                return statistics.median(x[key] for x in s)

            lines.append(
                f"| {count:,} | {name} | {med('p50_ms'):.1f} ms | {med('p95_ms'):.1f} ms |"
                f" {med('max_ms'):.0f} ms | {sum(x['timeouts'] for x in sessions)} |"
                f" {med('in_flight_shown'):.0f} | {med('decisions_per_s'):.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
