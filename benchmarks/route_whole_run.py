"""A whole `triagedesk route --all` as a process, beside a bare aiohttp loop sending the same
requests as a process: start-up, run bookkeeping and every decision's write included.

The routing benchmark (`routing_overhead`) times the Router alone; a user waits for the whole
command. Both peers here are timed from spawn to exit against the same loopback server
(`fast_openai_server`, in its own process), taking turns within each repeat; the database is
copied fresh from one imported template before each triagedesk run, outside the timing.
`--baseline DIR` adds the same command from another source tree (an older commit unpacked with
`git archive`), for a before/after in one run.

    uv run --group bench python -m benchmarks.route_whole_run --n 8000 --concurrency 8 32 128
"""

from __future__ import annotations

import json
import os
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
max_concurrency = {c}
max_retries = 0
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.6
"""


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = before_after_parser(8000, 2, "benchmarks/results/route_whole_run.json")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 128])
    args = parser.parse_args()
    from tui.core.demo import generate_inbox
    from tui.core.models import Ticket
    from tui.core.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="td-whole-"))
    data = tmp / "tickets.jsonl"
    inbox = generate_inbox(args.n, seed=1)
    data.write_text("\n".join(json.dumps({"text": d.ticket.text}) for d in inbox))
    from tui.core.demo import demo_taxonomy

    labels = "".join(
        f"{lab.name} = {json.dumps(lab.description)}\n" for lab in demo_taxonomy().labels
    )
    template = tmp / "template.db"
    store = Store(template)
    store.import_tickets([Ticket(id=f"B{i:06d}", text=d.ticket.text) for i, d in enumerate(inbox)])
    store.close()

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
    rows: list[dict[str, object]] = []
    try:
        for c in args.concurrency:
            config = tmp / f"c{c}.toml"
            config.write_text(CONFIG.format(base=base, c=c) + "\n[labels]\n" + labels)
            for repeat in range(args.repeats):
                bare = [sys.executable, "-m", "benchmarks.routing_overhead", "--child"]
                bare += ["bare-httpx-aiohttp", "--port", str(port), "--data", str(data)]
                bare += ["--n", str(args.n), "--concurrency", str(c)]
                times = {"bare-aiohttp": timed(bare, env, here)}
                for name, (tree, env) in trees.items():
                    db = fresh(tmp / f"{name}.db")
                    shutil.copy(template, db)
                    command = [sys.executable, "-m", "tui", "--db", str(db), "--config"]
                    command += [str(config), "route", "--all", "--concurrency", str(c)]
                    times[name] = timed(command, env, tree)
                    check = Store(db)
                    assert check.decision_count() == args.n, name
                    check.close()
                row = {"concurrency": c, "repeat": repeat, **times}
                rows.append(row)
                print(
                    f"c={c} " + " ".join(f"{k} {v:.2f}s" for k, v in times.items() if k != "c"),
                    flush=True,
                )
    finally:
        server.terminate()
    print(
        f"\n{args.n:,} tickets, whole processes; share of the bare loop's speed (its time / ours)\n"
    )
    names = [k for k in rows[0] if k not in ("concurrency", "repeat")]
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
        summary[str(c)] = {"seconds": medians, "share": shares}
        cells = [f"{medians[k]:.2f}" for k in names]
        cells += [
            f"{statistics.median(v):.0%} ({min(v):.0%}-{max(v):.0%})" for v in shares.values()
        ]
        print(f"| {c} | " + " | ".join(cells) + " |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
