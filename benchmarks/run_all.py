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


def targets() -> str:
    """One table of every target the issues set, against what this run measured."""
    rows = ["| target | measured | met |", "|---|---|---|"]

    def add(target: str, measured: str, met: bool | None) -> None:
        rows.append(
            f"| {target} | {measured} | {'yes' if met else ('no' if met is False else '-')} |"
        )

    routing = RESULTS / "routing_overhead.json"
    if routing.exists():
        import statistics

        data = json.loads(routing.read_text())
        ratios: dict[str, list[float]] = {"openai-sdk": [], "litellm": []}
        for mode, c in {(r["mode"], r["concurrency"]) for r in data}:

            def rate(client: str, mode: str = mode, c: int = c) -> float | None:
                runs = [
                    r["per_s"]
                    for r in data
                    if (r["mode"], r["concurrency"], r["client"]) == (mode, c, client)
                ]
                return statistics.median(runs) if runs else None

            td = rate("triagedesk")
            for peer in ratios:
                other = rate(peer)
                if td and other:
                    ratios[peer].append(td / other)
        for peer, goal in (("openai-sdk", 1.5), ("litellm", 5.0)):
            if ratios[peer]:
                low, high = min(ratios[peer]), max(ratios[peer])
                add(
                    f"routing throughput ≥ {goal}× {peer}, persisting every decision",
                    f"{low:.1f}×-{high:.1f}× over all modes and concurrencies",
                    low >= goal,
                )
    store = RESULTS / "store_scale.json"
    if store.exists():
        data = json.loads(store.read_text())
        q = data["queries_ms"]
        pages = max(v for k, v in q.items() if "page" in k)
        add("import 1M tickets ≤ 30 s", f"{data['import_s']:.1f} s", data["import_s"] <= 30)
        add("inbox page and filters at 1M ≤ 50 ms", f"slowest {pages:.1f} ms", pages <= 50)
        add(
            "per-backend stats at 1M ≤ 200 ms",
            f"{q['backend stats']:.1f} ms",
            q["backend stats"] <= 200,
        )
    tui = RESULTS / "tui_scale.json"
    if tui.exists():
        import statistics

        data = json.loads(tui.read_text())
        runs = data["opens"]["1M tickets"]
        start = statistics.median(r["first_paint_s"] for r in runs)
        after = statistics.median(r.get("first_paint_after_imports_s", start) for r in runs)
        rss = max(r["peak_rss_mb"] for r in runs)
        add(
            "TUI first painted inbox at 1M ≤ 1 s",
            f"{start:.2f} s from process start, {after:.2f} s after imports",
            start <= 1.0,
        )
        add("TUI peak RSS at 1M ≤ 250 MB", f"{rss:.0f} MB", rss <= 250)
    spec = RESULTS / "specialists.json"
    if spec.exists():
        data = json.loads(spec.read_text())
        fast = [k for k in data.get("rows", []) if (k.get("tickets_per_s") or 0) >= 1000]
        best = max(fast, key=lambda k: k["accuracy"], default=None)
        if best:
            add(
                "specialist ≥ 94.5 % Banking77 at ≥ 1,000 tickets/s",
                f"{best['accuracy']:.2%} at {best['tickets_per_s']:,.0f}/s ({best.get('kind', '?')})"
                + (
                    "; what more compute buys: section 4b"
                    if (RESULTS / "ceiling.md").exists()
                    else ""
                ),
                best["accuracy"] >= 0.945,
            )
    return "## Targets\n\n" + "\n".join(rows) + "\n"


def section(title: str, command: str, body: str) -> str:
    """A results section; without a command of this run, the body's own first line says it."""
    if not command:
        return f"## {title}\n\n{body}\n"
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
    # Benchmarks skipped in this invocation keep the command and context of their last run.
    saved = RESULTS / "commands.json"
    previous = json.loads(saved.read_text()) if saved.exists() else {}
    ran_all = not args.skip
    context = {
        "started": started if ran_all else previous.get("started", started),
        "machine": header if ran_all else previous.get("machine", header),
        "argv": sys.argv[1:] if ran_all else previous.get("argv", sys.argv[1:]),
        "commands": {**previous.get("commands", {}), **commands},
    }
    saved.write_text(json.dumps(context, indent=1))
    commands = context["commands"]
    parts = [
        "# Benchmark results",
        "",
        f"Run {context['started']} on {context['machine']}. Every comparison ran side by side in"
        " one process tree; ratios are medians over repeats (min-max in brackets). Entry point:",
        "",
        "```",
        "uv run --group bench python -m benchmarks.run_all " + " ".join(context["argv"]),
        "```",
        "",
    ]
    parts.append(targets())
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
        ("4b. How far more compute goes on the same split", "ceiling.md", "ceiling"),
        ("5. The business case", "business_case.md", "business"),
        ("6. Local GPU model (H200)", "gpu_llamacpp.md", "gpu"),
    ):
        path = RESULTS / name
        if path.exists():
            parts.append(
                section(
                    title,
                    " ".join(commands.get(key, [""])[:1]),
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
