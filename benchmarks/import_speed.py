"""`triagedesk import` against `sqlite-utils insert` on the same JSONL file, as whole processes.

Issue 17 asks for an import at most 0.4x the time of
`sqlite-utils insert db tickets file.jsonl --nl --pk id` (a plain insert with no checks), with
every check of the import kept. Each repeat runs the peers back to back on fresh databases, so
the ratios hold on a loaded machine; `--baseline DIR` adds the same command run from another
source tree (an older commit unpacked with `git archive`), for a before/after in one run.

    uv run python -m benchmarks.import_speed --n 300000 --repeats 3 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.store_scale import write_tickets


def run_timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def fresh(path: Path) -> Path:
    """`path` with no database there (nor its WAL files)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


def before_after_parser(n: int, repeats: int, out: str) -> argparse.ArgumentParser:
    """The options of the benchmarks that compare this tree with `--baseline` as processes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--baseline", type=Path, help="source tree of the code to compare with")
    parser.add_argument("--out", default=out)
    return parser


def main() -> None:
    args = before_after_parser(300_000, 3, "benchmarks/results/import_speed.json").parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="td-import-"))
    data = tmp / "tickets.jsonl"
    write_tickets(data, args.n)
    bindir = Path(sys.executable).parent
    # Installed packages run from compiled bytecode, so no PYTHONDONTWRITEBYTECODE here.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    here = Path.cwd()
    peers: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "sqlite-utils": (
            [str(bindir / "sqlite-utils"), "insert", "{db}", "tickets", str(data), "--nl"]
            + ["--pk", "id"],
            env,
            here,
        ),
        "triagedesk": (
            [sys.executable, "-m", "tui", "--db", "{db}", "import", str(data)],
            env,
            here,
        ),
    }
    if args.baseline is not None:
        # `-m` puts the working directory first on sys.path: run the old tree from inside it.
        base = args.baseline.resolve()
        peers["triagedesk-before"] = (
            peers["triagedesk"][0],
            {**env, "PYTHONPATH": str(base)},
            base,
        )

    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in peers}
    for repeat in range(args.repeats):
        for name, (command, peer_env, cwd) in peers.items():
            db = fresh(tmp / f"{name}.db")
            argv = [str(db) if part == "{db}" else part for part in command]
            samples[name].append(run_timed(argv, peer_env, cwd))
        print(
            f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in samples.items())
        )

    reference = samples["sqlite-utils"]
    print(f"\n{args.n:,} tickets ({data.stat().st_size / 1e6:.0f} MB of JSONL)\n")
    print("| command | wall s | CPU s | wall × sqlite-utils | CPU × sqlite-utils |")
    print("|---|---|---|---|---|")
    figures: dict[str, object] = {"n": args.n, "repeats": args.repeats}
    for name, runs in samples.items():
        walls = [w / r[0] for (w, _), r in zip(runs, reference, strict=True)]
        cpus = [c / r[1] for (_, c), r in zip(runs, reference, strict=True)]
        row = {
            "wall_s": statistics.median(w for w, _ in runs),
            "cpu_s": statistics.median(c for _, c in runs),
            "wall_ratio": statistics.median(walls),
            "wall_ratio_range": [min(walls), max(walls)],
            "cpu_ratio": statistics.median(cpus),
        }
        figures[name] = row
        print(
            f"| {name} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['wall_ratio']:.2f}"
            f" ({min(walls):.2f}-{max(walls):.2f}) | {row['cpu_ratio']:.2f} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
