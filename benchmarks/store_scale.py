"""The store at a million tickets: import, decision writes, inbox pages, filters, statistics.

Tickets are written to a JSONL file first and imported through the same path as
`triagedesk import` (parse_file + Store.import_tickets), so the figure is what a user waits for.
Query timings are medians of repeated runs on the warm database.

    uv run python -m benchmarks.store_scale --n 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui.core.demo import generate_inbox
from tui.core.models import Decision
from tui.core.store import INBOX_FILTERS, Store

BACKENDS = (
    ("specialist", "specialist", 0.8),
    ("gpt-4o-mini", "openai", 0.15),
    ("llama3", "ollama", 0.05),
)
"""(name, type, share of tickets) — each ticket gets one decision; a share also gets a second
from another backend so disagreement and per-backend stats have real work to do."""


def write_tickets(path: Path, n: int) -> None:
    """n tickets cycling through 5,000 generated ones with unique ids and small variations."""
    base = generate_inbox(5000, seed=2)
    with path.open("w") as out:
        for i in range(n):
            demo = base[i % len(base)]
            row = {
                "id": f"S{i:07d}",
                "subject": demo.ticket.subject,
                "body": demo.ticket.text,
                "customer": demo.ticket.customer,
                "channel": demo.ticket.channel,
            }
            if i % 3 == 0:
                row["label"] = demo.true_label
            out.write(json.dumps(row) + "\n")


def timed(fn: Callable[[], Any], repeats: int = 7) -> tuple[float, Any]:
    """Median milliseconds of `repeats` calls (after one warm-up) and the last result."""
    result = fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), result


def decisions_for(ids: list[str], labels: list[str], rng: random.Random) -> list[Decision]:
    """One decision per ticket, mostly from the specialist, 1 % of them errors."""
    out = []
    for tid in ids:
        name, kind, _ = BACKENDS[0] if rng.random() < 0.8 else rng.choice(BACKENDS[1:])
        failed = rng.random() < 0.01
        out.append(
            Decision(
                ticket_id=tid,
                run_id=f"bench-{name}",
                backend=name,
                backend_type=kind,
                label=None if failed else rng.choice(labels),
                confidence=None if failed else rng.random(),
                confidence_source=None if failed else "probability",
                total_ms=rng.lognormvariate(3, 1),
                cost_usd=rng.random() / 10_000,
                input_tokens=400,
                output_tokens=14,
                error_class="Timeout" if failed else None,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument(
        "--keep", type=Path, help="keep the database at this path (for the TUI benchmark)"
    )
    parser.add_argument("--out", default="benchmarks/results/store_scale.json")
    args = parser.parse_args()
    from tui.core.ingest import parse_file

    tmp = Path(tempfile.mkdtemp(prefix="td-store-"))
    data = tmp / "tickets.jsonl"
    db = args.keep or tmp / "scale.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    figures: dict[str, Any] = {"n": args.n}
    write_tickets(data, args.n)
    figures["file_mb"] = data.stat().st_size / 1e6

    started = time.perf_counter()
    parsed = parse_file(data)
    figures["parse_s"] = time.perf_counter() - started
    store = Store(db)
    insert_started = time.perf_counter()
    store.import_tickets(parsed.tickets, parsed.labels, source=str(data))
    figures["insert_s"] = time.perf_counter() - insert_started
    figures["import_s"] = time.perf_counter() - started
    labels = sorted(set(parsed.labels.values()))
    ids = [t.id for t in parsed.tickets]
    del parsed

    rng = random.Random(4)
    started = time.perf_counter()
    for start in range(0, len(ids), 2000):
        store.record_decisions(decisions_for(ids[start : start + 2000], labels, rng))
    figures["decisions_s"] = time.perf_counter() - started
    second = ids[::10]
    started = time.perf_counter()
    for start in range(0, len(second), 2000):
        chunk = decisions_for(second[start : start + 2000], labels, rng)
        store.record_decisions(
            [d.model_copy(update={"backend": "gpt-4o-mini", "run_id": "bench-2"}) for d in chunk]
        )
    figures["second_opinion_s"] = time.perf_counter() - started
    figures["decisions"] = store.decision_count()

    queries: dict[str, float] = {}
    for flt in INBOX_FILTERS:
        ms, page = timed(lambda flt=flt: store.inbox_page(flt, limit=100))
        queries[f"first page: {flt}"] = ms
        if page:
            cursor = store.cursor_of(page[-1])
            ms, _ = timed(
                lambda flt=flt, cursor=cursor: store.inbox_page(flt, after=cursor, limit=100)
            )
            queries[f"next page: {flt}"] = ms
    middle = store.inbox_page("all", limit=1)[0].seq - args.n // 2
    from tui.core.store import Cursor

    queries["page from the middle"], _ = timed(
        lambda: store.inbox_page("all", after=Cursor(seq=middle), limit=100)
    )
    for flt in INBOX_FILTERS:
        queries[f"count: {flt}"], _ = timed(lambda flt=flt: store.inbox_count(flt), repeats=3)
    queries["backend stats"], stats = timed(
        lambda: store.backend_stats(daily_volume=50_000), repeats=3
    )
    queries["ticket detail (ticket + decisions + labels)"], _ = timed(
        lambda: (
            store.get_ticket(ids[-7]),
            store.decisions_for(ids[-7]),
            store.label_history(ids[-7]),
        )
    )
    figures["queries_ms"] = queries
    figures["stats_backends"] = [s.backend for s in stats]
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    figures["db_mb"] = db.stat().st_size / 1e6
    store.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
