"""Free-text greedy requests to a running `llama-server`, at several concurrencies.

The figures of RESULTS.md section 10 came from this loop (run inline on the H200 after
`serve_bench.py`'s grammar warm-up hung): one request per held-out ticket, the trained prompt,
`n_predict` 12, greedy, no grammar; the answer is right when its stripped text is the label.

    llama-server -m ft-lora/model-q8_0.gguf --port 8092 -ngl 999 -np 64 -c 16384 &
    python3 benchmarks/gemma_device/serve_free.py --tickets test20.jsonl --port 8092 \\
        --runs 1:200 8:500 32:1000 64:2001 [--samplers top_k]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tui.core.learning.llm.prompt import prompt  # noqa: E402
from tui.core.learning.llm.train import macro_f1  # noqa: E402


async def measure(
    url: str, rows: list[dict[str, str]], concurrency: int, n: int, extra: dict[str, Any]
) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    queue = list(range(min(n, len(rows))))
    latencies: list[float] = []
    said: dict[int, str] = {}
    right = errors = 0
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def worker() -> None:
            nonlocal right, errors
            while queue:
                index = queue.pop()
                body = {"prompt": prompt(rows[index]["text"]), "n_predict": 12}
                body |= {"temperature": 0, "top_k": 1, "cache_prompt": True, **extra}
                started = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        reply = await response.json(content_type=None)
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                said[index] = str(reply.get("content", "")).strip()
                right += said[index] == rows[index]["label"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    gold = [rows[i]["label"] for i in sorted(said)]
    return {
        "macro_f1": macro_f1([said[i] for i in sorted(said)], gold),
        "extra": extra,
        "c": concurrency,
        "n": n,
        "err": errors,
        "acc": right / n,
        "tps": n / seconds,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
    }


async def main_async(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in args.tickets.read_text().splitlines() if line.strip()]
    extra: dict[str, Any] = {"samplers": args.samplers} if args.samplers else {}
    extra |= json.loads(args.extra)
    url = f"http://127.0.0.1:{args.port}/completion"
    for run in args.runs:
        concurrency, n = (int(part) for part in run.split(":"))
        print(json.dumps(await measure(url, rows, concurrency, n, extra)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--runs", nargs="+", default=["1:200", "8:500", "32:1000", "64:2001"])
    parser.add_argument("--samplers", nargs="*", default=None)
    parser.add_argument("--extra", default="{}", help="JSON merged into each request body")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
