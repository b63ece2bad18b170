"""The real llama-cpp-python server through the openai backend: adaptive limit against fixed ones.

llama-cpp-python's server interrupts the stream in progress whenever another request arrives
(`interrupt_requests`, on by default), so any fixed concurrency above one turns most answers
into empty streams. Each configuration routes the same tickets through the Router (every
decision stored, as `triagedesk route` does) on a random-weight GGUF, one server per run, and
reports valid answers and tickets a second. Issue 17's target: the default configuration
(adaptive, `max_concurrency = 8`) answers 24 of 24, within 10 % of the best fixed limit.

    uv run --group dev python -m benchmarks.adaptive_concurrency --n 24 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from tui.core.config import _build
from tui.core.models import Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "technical", "account"])
BACKEND: dict[str, object] = {"type": "openai", "model": "tiny"}
"""The openai backend at its defaults (streamed chat, adaptive concurrency, max 8)."""


def tickets(n: int, seed: int) -> list[Ticket]:
    return [
        Ticket(id=f"L{seed}-{i:03d}", text=f"Order {1000 + i}: I was charged twice, please help.")
        for i in range(n)
    ]


async def route_all(
    url: str, db: Path, n: int, seed: int, backend: dict[str, object], concurrency: int
) -> tuple[int, float, dict[str, int], int | None]:
    """Route n fresh tickets; (valid answers, seconds, errors by class, final limit)."""
    settings = _build(
        {
            "routing": {"backend": "lcp"},
            "backends": {"lcp": {**BACKEND, "base_url": url, **backend}},
        },
        None,
    )
    store = Store(db)
    batch = tickets(n, seed)
    store.import_tickets(batch)
    router = Router(settings, TAXONOMY, store)
    started = time.perf_counter()
    try:
        summary = await router.run(batch, run_id=f"run-{seed}", concurrency=concurrency)
    finally:
        await router.aclose()
    elapsed = time.perf_counter() - started
    errors: dict[str, int] = {}
    for row in store._read(
        "SELECT error_class, count(*) FROM decisions WHERE run_id = ? GROUP BY 1", (f"run-{seed}",)
    ):
        if row[0] is not None:
            errors[row[0]] = row[1]
    limit = router.concurrency_limit("lcp")
    valid = summary.routed - summary.errors
    return valid, elapsed, errors, None if limit is None else limit[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fixed", type=int, nargs="*", default=[1, 2, 4, 8])
    parser.add_argument("--prompt", choices=["chat", "finetuned"], default="chat")
    args = parser.parse_args()
    BACKEND["prompt"] = args.prompt
    from tests.servers.gguf_model import write_tiny_llama
    from tests.servers.llama_cpp_python import llama_server

    tmp = Path(tempfile.mkdtemp(prefix="td-adaptive-"))
    model = write_tiny_llama(tmp / "tiny.gguf", decided=True)
    configs: dict[str, dict[str, object]] = {"adaptive (default, max 8)": {}}
    for fixed in args.fixed:
        configs[f"fixed {fixed}"] = {"adaptive_concurrency": False, "max_concurrency": fixed}
    results: dict[str, list[tuple[int, float, dict[str, int], int | None]]] = {
        k: [] for k in configs
    }
    seed = 0
    with llama_server(model) as url:
        for _ in range(args.repeats):
            for name, backend in configs.items():
                seed += 1
                concurrency = int(str(backend.get("max_concurrency", 8)))
                db = tmp / f"{seed}.db"
                results[name].append(
                    asyncio.run(route_all(url, db, args.n, seed, backend, concurrency))
                )
                ok, seconds, errors, limit = results[name][-1]
                print(f"{name}: {ok}/{args.n} valid in {seconds:.1f} s {errors} limit {limit}")
    print(f"\n{args.n} tickets a run, {args.repeats} runs each, interleaved\n")
    print("| limit | valid answers | tickets/s | × best fixed | errors | limit at the end |")
    print("|---|---|---|---|---|---|")
    rates = {
        k: statistics.median(ok / s for ok, s, _, _ in runs if s > 0) for k, runs in results.items()
    }
    best = max(v for k, v in rates.items() if k.startswith("fixed"))
    for name, runs in results.items():
        valid = "/".join(str(ok) for ok, *_ in runs)
        errors: dict[str, int] = {}
        for _, _, errs, _ in runs:
            for key, count in errs.items():
                errors[key] = errors.get(key, 0) + count
        limits = "/".join(str(limit) for *_, limit in runs)
        print(
            f"| {name} | {valid} of {args.n} | {rates[name]:.2f} | {rates[name] / best:.2f}"
            f" | {errors or '-'} | {limits} |"
        )


if __name__ == "__main__":
    main()
