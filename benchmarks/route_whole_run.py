"""A whole `triagedesk route --all` as a process, beside a bare aiohttp loop sending the same
requests as a process: start-up, run bookkeeping and every decision's write included.

The routing benchmark (`routing_overhead`) times the Router alone; a user waits for the whole
command. Both peers here are timed from spawn to exit against the same loopback server
(`fast_openai_server`, in its own process), taking turns within each repeat; the database is
copied fresh from one imported template before each triagedesk run, outside the timing.
`--baseline DIR` adds the same command from another source tree (an older commit unpacked with
`git archive`), for a before/after in one run.

Like for like: both peers send the same requests, unstreamed by default (triagedesk with
`stream = false`), or both streamed with `--stream` (the bare loop reads the SSE lines and
decodes every chunk, as triagedesk's default `stream = true` does). Each tree's database
template is made by that tree's own code, so a tree with a newer schema does not hand an
older one a database it refuses. The bare loop is httpx on aiohttp's transport (the ceiling
of rounds one to four, `--ceiling httpx-aiohttp`); since triagedesk posts straight on aiohttp,
`--ceiling aiohttp` times aiohttp alone as well, without httpx, the stricter ceiling.

    uv run --group bench python -m benchmarks.route_whole_run --n 8000 --concurrency 8 32 128
    uv run --group bench python -m benchmarks.route_whole_run --n 8000 --stream
"""

from __future__ import annotations

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

from benchmarks.import_speed import before_after_parser, fresh
from benchmarks.routing_overhead import free_port

CONFIG = """\
[routing]
backend = "bench"
reference_backend = "bench"

[backends.bench]
type = "openai"
base_url = "{base}"
model = "bench-model"
stream = {stream}
max_concurrency = {c}
max_retries = 0
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
"""


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process, which must succeed.

    The CPU ratio holds better than the wall one on a shared machine: another job's load
    stretches a run's wall time, not the CPU it used (the server's CPU is in neither)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


TEMPLATE = """\
import json, sys
from tui.core.models import Ticket
from tui.core.store import Store
lines = open(sys.argv[1]).read().splitlines()
with Store(sys.argv[2]) as store:
    store.import_tickets([Ticket(id=f"B{i:06d}", text=json.loads(t)["text"]) for i, t in enumerate(lines)])
"""
"""The database template, made by the tree's own code (its schema): argv = JSONL, database."""


def main() -> None:
    parser = before_after_parser(8000, 2, "benchmarks/results/route_whole_run.json")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--stream", action="store_true", help="both peers streamed (default: both unstreamed)"
    )
    parser.add_argument(
        "--ceiling",
        choices=["httpx-aiohttp", "aiohttp"],
        default="httpx-aiohttp",
        help="the bare loop: httpx on aiohttp's transport (rounds one to four) or aiohttp alone",
    )
    args = parser.parse_args()
    from tui.core.demo import generate_inbox

    tmp = Path(tempfile.mkdtemp(prefix="td-whole-"))
    data = tmp / "tickets.jsonl"
    inbox = generate_inbox(args.n, seed=1)
    data.write_text("\n".join(json.dumps({"text": d.ticket.text}) for d in inbox))
    from tui.core.demo import demo_taxonomy

    labels = "".join(
        f"{lab.name} = {json.dumps(lab.description)}\n" for lab in demo_taxonomy().labels
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fast_openai_server", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    here = Path.cwd()
    # Installed packages run from compiled bytecode; a PYTHONDONTWRITEBYTECODE=1 environment
    # (this machine's) would recompile ~1,400 modules at each start and time that instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    trees = {"triagedesk": (here, env)}
    if args.baseline is not None:
        old = args.baseline.resolve()
        trees["triagedesk-before"] = (old, {**env, "PYTHONPATH": str(old)})
    templates = {name: tmp / f"template-{name}.db" for name in trees}
    for name, (tree, tree_env) in trees.items():
        made = [sys.executable, "-c", TEMPLATE, str(data), str(templates[name])]
        subprocess.run(made, env=tree_env, cwd=tree, check=True)
    rows: list[dict[str, object]] = []
    try:
        for c in args.concurrency:
            config = tmp / f"c{c}.toml"
            stream = "true" if args.stream else "false"
            config.write_text(
                CONFIG.format(base=base, c=c, stream=stream) + "\n[labels]\n" + labels
            )
            for repeat in range(args.repeats):
                bare = [sys.executable, "-m", "benchmarks.routing_overhead", "--child"]
                bare += [f"bare-{args.ceiling}", "--port", str(port), "--data", str(data)]
                bare += ["--n", str(args.n), "--concurrency", str(c)]
                bare += ["--stream"] if args.stream else []
                times: dict[str, float] = {}
                cpu: dict[str, float] = {}
                times["bare-aiohttp"], cpu["bare-aiohttp"] = timed(bare, env, here)
                for name, (tree, tree_env) in trees.items():
                    db = fresh(tmp / f"{name}.db")
                    shutil.copy(templates[name], db)
                    command = [sys.executable, "-m", "tui", "--db", str(db), "--config"]
                    command += [str(config), "route", "--all", "--concurrency", str(c)]
                    times[name], cpu[name] = timed(command, tree_env, tree)
                    assert _decisions(db) == args.n, name
                row = {"concurrency": c, "repeat": repeat, **times}
                row.update({f"{k} cpu": v for k, v in cpu.items()})
                rows.append(row)
                print(
                    f"c={c} "
                    + " ".join(f"{k} {v:.2f}s ({cpu[k]:.2f} CPU-s)" for k, v in times.items()),
                    flush=True,
                )
    finally:
        server.terminate()
    mode = "streamed" if args.stream else "unstreamed"
    print(
        f"\n{args.n:,} tickets, both peers {mode}, whole processes;"
        " share of the bare loop's speed (its time / ours)\n"
    )
    names = [k for k in rows[0] if k not in ("concurrency", "repeat") and not k.endswith(" cpu")]
    print(
        "| c | "
        + " | ".join(f"{k} s" for k in names)
        + " | "
        + " | ".join(f"{k} % of ceiling" for k in names[1:])
        + " |"
    )
    print("|---" * (1 + 2 * len(names) - 1) + "|")
    summary: dict[str, object] = {}
    for c in args.concurrency:
        mine = [r for r in rows if r["concurrency"] == c]
        medians = {k: statistics.median(float(str(r[k])) for r in mine) for k in names}
        shares = {
            k: [float(str(r["bare-aiohttp"])) / float(str(r[k])) for r in mine] for k in names[1:]
        }
        cpu_medians = {k: statistics.median(float(str(r[f"{k} cpu"])) for r in mine) for k in names}
        cpu_shares = {
            k: [float(str(r["bare-aiohttp cpu"])) / float(str(r[f"{k} cpu"])) for r in mine]
            for k in names[1:]
        }
        summary[str(c)] = {
            "seconds": medians,
            "share": shares,
            "cpu_seconds": cpu_medians,
            "cpu_share": cpu_shares,
        }
        cells = [f"{medians[k]:.2f}" for k in names]
        cells += [
            f"{statistics.median(v):.0%} ({min(v):.0%}-{max(v):.0%})" for v in shares.values()
        ]
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("\nCPU seconds (user + system) of each process; share of the bare loop's (its / ours)\n")
    header = [f"{k} CPU-s" for k in names] + [f"{k} CPU share" for k in names[1:]]
    print("| c | " + " | ".join(header) + " |")
    print("|---" * (1 + 2 * len(names) - 1) + "|")
    for c in args.concurrency:
        got = summary[str(c)]
        assert isinstance(got, dict)
        cells = [f"{got['cpu_seconds'][k]:.2f}" for k in names]
        cells += [
            f"{statistics.median(v):.0%} ({min(v):.0%}-{max(v):.0%})"
            for v in got["cpu_share"].values()
        ]
        print(f"| {c} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    result = {
        "stream": args.stream,
        "ceiling": args.ceiling,
        "n": args.n,
        "rows": rows,
        "summary": summary,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


def _decisions(db: Path) -> int:
    """Decisions in a database of any schema version (read without the store's migration)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


if __name__ == "__main__":
    main()
