"""Run every benchmark and write benchmarks/RESULTS.md.

Each benchmark runs in its own process and leaves JSON (and where it has one, Markdown) in
benchmarks/results/; this script assembles them with the machine, the date and the exact
commands. Benchmarks are not tests: nothing here asserts a timing.

    uv run --group bench python -m benchmarks.run_all            # everything, full sizes
    uv run --group bench python -m benchmarks.run_all --quick    # smaller sizes, same shape
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}; Python {platform.python_version()};"
        f" load average {load:.1f} when the run started"
    )


def run(cmd: list[str], log: list[str]) -> bool:
    printable = " ".join(cmd[2:] if cmd[:2] == [sys.executable, "-m"] else cmd)
    log.append(f"python -m {printable}" if cmd[:2] == [sys.executable, "-m"] else printable)
    print(f"$ {log[-1]}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd)
    print(f"  ({time.perf_counter() - started:.0f} s, exit {done.returncode})", flush=True)
    return done.returncode == 0


def store_md(data: dict[str, Any]) -> str:
    q = data["queries_ms"]
    lines = [
        f"{data['n']:,} tickets ({data['file_mb']:.0f} MB of JSONL), {data['decisions']:,} decisions,"
        f" database {data['db_mb']:.0f} MB on disk.",
        "",
        "| step | time | target |",
        "|---|---|---|",
        f"| import (parse + insert, as `triagedesk import`) | {data['import_s']:.1f} s"
        f" (parse {data['parse_s']:.1f} s, insert {data['insert_s']:.1f} s) | ≤ 30 s |",
        f"| insert {data['n']:,} decisions (batches of 2,000, with aggregates) | {data['decisions_s']:.1f} s | |",
        f"| a second backend's opinion on 10 % | {data['second_opinion_s']:.1f} s | |",
        "",
        "| query on the full database | median ms | target |",
        "|---|---|---|",
    ]
    for name, ms in q.items():
        target = "≤ 200 ms" if name == "backend stats" else ("≤ 50 ms" if "page" in name else "")
        lines.append(f"| {name} | {ms:.2f} | {target} |")
    return "\n".join(lines)


def section(title: str, command: str, body: str) -> str:
    return f"## {title}\n\n```\n{command}\n```\n\n{body}\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes for a fast look")
    parser.add_argument("--skip", nargs="*", default=[], help="benchmarks to leave out")
    parser.add_argument("--route-n", type=int, help="tickets per routing run (default 20,000)")
    parser.add_argument(
        "--repeats", type=int, help="repeats of each routing comparison (default 3)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    py = [sys.executable, "-m"]
    n_route, n_store, repeats = (3000, 100_000, 1) if args.quick else (20_000, 1_000_000, 3)
    n_route = args.route_n or n_route
    repeats = args.repeats or repeats
    commands: dict[str, list[str]] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = machine()
    db = RESULTS / "scale.db"
    plan = {
        "routing": py
        + [
            "benchmarks.routing_overhead",
            "--n",
            str(n_route),
            "--repeats",
            str(repeats),
            "--litellm-n",
            str(max(500, n_route // 10)),
        ],
        "store": py + ["benchmarks.store_scale", "--n", str(n_store), "--keep", str(db)],
        "tui": py + ["benchmarks.tui_scale", "--db", str(db)],
        "specialists": py + ["benchmarks.specialists"],
        "business": py + ["benchmarks.business_case"],
    }
    for name, cmd in plan.items():
        if name in args.skip:
            continue
        log: list[str] = []
        ok = run(cmd, log)
        commands[name] = [*log, "" if ok else "(failed; see its output)"]
    parts = [
        "# Benchmark results",
        "",
        f"Run {started} on {header}. Every comparison ran side by side in one process tree;"
        " ratios are medians over repeats (min-max in brackets). Entry point:",
        "",
        "```",
        "uv run --group bench python -m benchmarks.run_all" + (" --quick" if args.quick else ""),
        "```",
        "",
    ]
    routing = RESULTS / "routing_overhead.json"
    if routing.exists():
        from benchmarks.routing_overhead import report

        parts.append(
            section(
                "1. Routing client throughput and overhead",
                " ".join(commands.get("routing", ["(earlier run)"])[:1]),
                report(json.loads(routing.read_text())),
            )
        )
    store = RESULTS / "store_scale.json"
    if store.exists():
        parts.append(
            section(
                "2. Store at scale",
                " ".join(commands.get("store", ["(earlier run)"])[:1]),
                store_md(json.loads(store.read_text())),
            )
        )
    for title, name, key in (
        ("3. TUI at scale", "tui_scale.md", "tui"),
        ("4. Specialists", "specialists.md", "specialists"),
        ("5. The business case", "business_case.md", "business"),
        ("6. Local GPU model (H200)", "gpu_llamacpp.md", "gpu"),
    ):
        path = RESULTS / name
        if path.exists():
            parts.append(
                section(
                    title,
                    " ".join(commands.get(key, ["(earlier run; see the file)"])[:1]),
                    path.read_text(),
                )
            )
    notes = HERE / "CHANGES.md"
    if notes.exists():
        parts.append(notes.read_text())
    (HERE / "RESULTS.md").write_text("\n".join(parts))
    db.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
