"""Serve a fine-tuned GGUF with llama.cpp's `llama-server` and measure it on held-out tickets.

Run on the GPU machine (see NOTES.md) or on any machine with a `llama-server` binary:

    python3 benchmarks/gemma_device/serve_bench.py --server PATH/llama-server \\
        --gguf ft-lora/model-q8_0.gguf --tickets test20.jsonl --out serve.json

Each request is what a client asks a llama.cpp server for a fine-tuned model: the trained
prompt (`tui.core.learning.llm.prompt`, no taxonomy list), greedy decoding, `n_predict` the
longest label's tokens plus one, and, in the `grammar` variant, a GBNF grammar that is the
alternation of the taxonomy's answers (so nothing outside it can come back) with `n_probs` for
the chosen tokens' probabilities. The `free` variant sends no grammar and no probabilities: the
floor of what the server costs. Every answer is checked against the taxonomy and counted.

Reported per variant and concurrency: answers valid/right, accuracy and macro-F1 over the
tickets sent, tickets/s from the first request to the last answer, p50/p95 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tui.core.learning.llm.prompt import answer, prompt  # noqa: E402


def grammar(labels: list[str]) -> str:
    """GBNF: the answer is exactly one of the labels' trained answers."""
    return "root ::= " + " | ".join(json.dumps(answer(name)) for name in sorted(labels))


def macro_f1(gold: list[str], said: list[str | None]) -> float:
    labels = sorted(set(gold))
    scores = []
    for label in labels:
        tp = sum(1 for g, s in zip(gold, said, strict=True) if g == label and s == label)
        fp = sum(1 for g, s in zip(gold, said, strict=True) if g != label and s == label)
        fn = sum(1 for g, s in zip(gold, said, strict=True) if g == label and s != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def confidence(body: dict[str, Any]) -> float | None:
    """The chosen tokens' joint probability, from either shape of `completion_probabilities`."""
    total = 0.0
    for item in body.get("completion_probabilities") or []:
        if not isinstance(item, dict):
            return None
        if isinstance(item.get("logprob"), int | float):
            total += float(item["logprob"])
        elif isinstance(item.get("prob"), int | float) and item["prob"] > 0:
            total += math.log(float(item["prob"]))
        else:
            probs = item.get("probs") or item.get("top_probs") or []
            chosen = item.get("content") or item.get("token")
            match = [p for p in probs if isinstance(p, dict) and p.get("tok_str") == chosen]
            if not match or not isinstance(match[0].get("prob"), int | float):
                return None
            total += math.log(max(1e-12, float(match[0]["prob"])))
    return math.exp(total) if body.get("completion_probabilities") else None


async def one(
    session: aiohttp.ClientSession, url: str, text: str, body: dict[str, Any]
) -> tuple[str, float, float | None]:
    started = time.perf_counter()
    async with session.post(url, json={**body, "prompt": prompt(text)}) as response:
        reply = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {str(reply)[:200]}")
    elapsed = (time.perf_counter() - started) * 1000
    return str(reply.get("content", "")).strip(), elapsed, confidence(reply)


async def run(
    url: str, tickets: list[dict[str, str]], body: dict[str, Any], concurrency: int
) -> dict[str, Any]:
    labels = {t["label"] for t in tickets}
    said: list[str | None] = [None] * len(tickets)
    latencies: list[float] = []
    confidences: list[float] = []
    queue = list(range(len(tickets)))
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    # A bound per request: the grammar variant's warm-up hung past aiohttp's 300 s default on
    # the H200 (2026-12-02), and one stuck request must be an error, not a lost run.
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
            while queue:
                index = queue.pop()
                try:
                    text, ms, conf = await one(session, url, tickets[index]["text"], body)
                except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError):
                    errors += 1
                    continue
                latencies.append(ms)
                said[index] = text if text in labels else None
                if conf is not None:
                    confidences.append(conf)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    gold = [t["label"] for t in tickets]
    right = sum(1 for g, s in zip(gold, said, strict=True) if g == s)
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "n": len(tickets),
        "errors": errors,
        "valid": sum(1 for s in said if s is not None),
        "right": right,
        "accuracy": right / len(tickets),
        "macro_f1": macro_f1(gold, said),
        "tickets_per_s": len(tickets) / seconds,
        "p50_ms": statistics.median(ordered) if ordered else None,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] if ordered else None,
        "mean_confidence": statistics.fmean(confidences) if confidences else None,
    }


def start_server(server: str, gguf: Path, port: int, slots: int) -> subprocess.Popen[bytes]:
    command = [server, "-m", str(gguf), "--port", str(port), "--host", "127.0.0.1"]
    command += ["-ngl", "999", "-np", str(slots), "-c", str(256 * slots)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"llama-server exited {process.returncode}")
            try:
                async with session.get(base + "/health") as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("llama-server did not become ready")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tickets = [json.loads(line) for line in args.tickets.read_text().splitlines() if line.strip()]
    labels = sorted({t["label"] for t in tickets})
    slots = max(args.concurrency)
    process = start_server(args.server, args.gguf, args.port, slots)
    base = f"http://127.0.0.1:{args.port}"
    results: dict[str, Any] = {"gguf": args.gguf.name, "slots": slots, "runs": []}
    try:
        results["ready_s"] = await wait_ready(base, process, 120)
        longest = 12  # tokens: checked below against the server's own tokenizer
        async with aiohttp.ClientSession() as session:
            counts = []
            for name in labels:
                async with session.post(base + "/tokenize", json={"content": answer(name)}) as r:
                    counts.append(len((await r.json())["tokens"]))
            longest = max(counts)
        results["longest_label_tokens"] = longest
        common = {"temperature": 0, "top_k": 1, "n_predict": longest + 1, "cache_prompt": True}
        variants = {
            "grammar": {**common, "grammar": grammar(labels), "n_probs": 1},
            "free": {**common, "stop": ["\n"]},
        }
        variants = {name: variants[name] for name in args.variants}
        url = base + "/completion"
        await run(url, tickets[:32], next(iter(variants.values())), 8)  # warm-up
        for variant, body in variants.items():
            for concurrency in args.concurrency:
                if variant == "free" and len(variants) > 1 and concurrency not in (1, slots):
                    continue
                # Every held-out ticket at the highest concurrency (the accuracy row), a
                # sample at c=1 and in between (latency and throughput only).
                sample = tickets if concurrency == slots else tickets[: args.single]
                if 1 < concurrency < slots:
                    sample = tickets[: args.middle]
                figures = await run(url, sample, body, concurrency)
                figures["variant"] = variant
                results["runs"].append(figures)
                print(json.dumps(figures), flush=True)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--tickets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--single", type=int, default=400, help="tickets sent at c=1")
    parser.add_argument("--middle", type=int, default=1000, help="tickets sent at c=8, 32")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=["free", "grammar"],
        default=["free"],
        help="grammar: a GBNF of the labels (hung on the 262k vocabulary on the H200)",
    )
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
