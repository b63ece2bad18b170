"""Routing client throughput and overhead: triagedesk vs the openai SDK vs LiteLLM.

Every client routes the same tickets, with the same prompt and `response_format`, against a
loopback OpenAI-compatible server that answers at once (benchmarks/fast_openai_server.py, in
its own process). A bare httpx loop measures the ceiling of that server and client stack; each
client runs in a fresh process (so CPU seconds and peak RSS are its own), the clients take
turns within each repeat, and figures are medians over repeats with min-max, reported as
ratios because this machine is noisy. triagedesk runs the full path: routing engine, the
`openai` backend, cost computation and a SQLite write of every decision.

    uv run --group bench python -m benchmarks.routing_overhead --n 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLIENTS = (
    "bare-httpx",
    "bare-httpx-aiohttp",
    "triagedesk",
    "triagedesk-httpx",
    "openai-sdk",
    "litellm",
)
"""triagedesk-httpx is triagedesk with `http_transport = "httpx"`: what the aiohttp transport buys."""
EXTRA_CHILDREN = ("bare-aiohttp",)
"""Peers only `route_whole_run` starts (aiohttp without httpx); not in this benchmark's table."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tickets(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _request_parts(texts: list[str]) -> tuple[list[list[dict[str, str]]], dict[str, Any]]:
    from tui.core.demo import demo_taxonomy
    from tui.core.prompt import answer_schema, build_prompt

    taxonomy = demo_taxonomy()
    messages = [build_prompt(t, taxonomy).messages() for t in texts]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "route", "strict": True, "schema": answer_schema(taxonomy)},
    }
    return messages, response_format


async def _pool(n: int, concurrency: int, call: Any) -> list[float]:
    """Run call(i) for i < n with `concurrency` workers; returns per-call latencies in ms."""
    latencies = [0.0] * n
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            await call(i)
            latencies[i] = (time.perf_counter() - started) * 1000

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def _bare_body(messages: Any, fmt: Any, stream: bool) -> dict[str, Any]:
    """The bare loops' request: what triagedesk's openai backend sends for one ticket."""
    body: dict[str, Any] = {
        "model": "bench-model",
        "messages": messages,
        "response_format": fmt,
        "temperature": 0,
        "max_tokens": 200,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _sse_content(line: str, text: list[str]) -> None:
    """One SSE line of a streamed reply: its delta's content, if any, added to `text`."""
    if line.startswith("data: ") and line != "data: [DONE]":
        choices = json.loads(line[6:])["choices"]
        if choices:
            text.append(choices[0]["delta"].get("content") or "")


async def run_bare(
    base: str, texts: list[str], c: int, stream: bool, *, aiohttp: bool = False
) -> list[float]:
    """The ceiling: the same requests in a plain loop, on httpx's transport or aiohttp's."""
    import httpx

    messages, fmt = _request_parts(texts)
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    transport = None
    if aiohttp:
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=30, transport=transport
    ) as client:

        async def call(i: int) -> None:
            body = _bare_body(messages[i], fmt, stream)
            if stream:
                text: list[str] = []
                async with client.stream("POST", "/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        _sse_content(line, text)
                json.loads("".join(text))
            else:
                r = await client.post("/chat/completions", json=body)
                json.loads(r.json()["choices"][0]["message"]["content"])

        return await _pool(len(texts), c, call)


async def run_plain_aiohttp(base: str, texts: list[str], c: int, stream: bool) -> list[float]:
    """The same requests on aiohttp alone (no httpx at all): the lowest ceiling this Python
    stack reaches, now that triagedesk posts straight on aiohttp too."""
    import aiohttp

    messages, fmt = _request_parts(texts)
    connector = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(
        base_url=base.rstrip("/") + "/", connector=connector, timeout=aiohttp.ClientTimeout(30)
    ) as session:

        async def call(i: int) -> None:
            body = _bare_body(messages[i], fmt, stream)
            if stream:
                text: list[str] = []
                async with session.post("chat/completions", json=body) as r:
                    async for raw in r.content:
                        _sse_content(raw.decode().rstrip("\r\n"), text)
                json.loads("".join(text))
            else:
                async with session.post("chat/completions", json=body) as r:
                    reply = await r.json()
                json.loads(reply["choices"][0]["message"]["content"])

        return await _pool(len(texts), c, call)


async def run_openai_sdk(base: str, texts: list[str], c: int, stream: bool) -> list[float]:
    import httpx
    from openai import AsyncOpenAI

    messages, fmt = _request_parts(texts)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=c, max_keepalive_connections=c))
    client = AsyncOpenAI(base_url=base, api_key="bench", max_retries=0, http_client=http)

    async def call(i: int) -> None:
        if stream:
            chunks = await client.chat.completions.create(
                model="bench-model",
                messages=messages[i],
                response_format=fmt,  # type: ignore[arg-type]
                temperature=0,
                max_tokens=200,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = []
            async for chunk in chunks:
                if chunk.choices:
                    text.append(chunk.choices[0].delta.content or "")
            json.loads("".join(text))
        else:
            reply = await client.chat.completions.create(
                model="bench-model",
                messages=messages[i],
                response_format=fmt,  # type: ignore[arg-type]
                temperature=0,
                max_tokens=200,
            )
            json.loads(reply.choices[0].message.content or "")

    try:
        return await _pool(len(texts), c, call)
    finally:
        await client.close()


async def run_litellm(base: str, texts: list[str], c: int, stream: bool) -> list[float]:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm

    litellm.telemetry = False
    messages, fmt = _request_parts(texts)

    async def call(i: int) -> None:
        kwargs = {
            "model": "openai/bench-model",
            "api_base": base,
            "api_key": "bench",
            "messages": messages[i],
            "response_format": fmt,
            "temperature": 0,
            "max_tokens": 200,
            "num_retries": 0,
        }
        if stream:
            chunks = await litellm.acompletion(
                stream=True, stream_options={"include_usage": True}, **kwargs
            )
            text = []
            async for chunk in chunks:
                if chunk.choices:
                    text.append(chunk.choices[0].delta.content or "")
            json.loads("".join(text))
        else:
            reply = await litellm.acompletion(**kwargs)
            json.loads(reply.choices[0].message.content)

    return await _pool(len(texts), c, call)


async def run_triagedesk(
    base: str, texts: list[str], c: int, stream: bool, workdir: Path, transport: str = "aiohttp"
) -> list[float]:
    """The full product path; per-ticket latency is each stored decision's client total."""
    from tui.core.config import _build
    from tui.core.demo import demo_taxonomy
    from tui.core.models import Ticket
    from tui.core.store import Store
    from tui.services.routing import Router, page_pending

    db = workdir / f"bench-{os.getpid()}.db"
    store = Store(db)
    store.import_tickets([Ticket(id=f"B{i:06d}", text=t) for i, t in enumerate(texts)])
    settings = _build(
        {
            "routing": {"backend": "bench", "reference_backend": "bench"},
            "backends": {
                "bench": {
                    "type": "openai",
                    "base_url": base,
                    "model": "bench-model",
                    "stream": stream,
                    "max_concurrency": c,
                    "max_retries": 0,
                    "http_transport": transport,
                    "input_usd_per_mtok": 0.15,
                    "output_usd_per_mtok": 0.6,
                },
            },
        },
        None,
    )
    router = Router(settings, demo_taxonomy(), store)
    run = store.open_run("bench", "unrouted")
    latencies: list[float] = []
    _mark_start()
    summary = await router.run(
        page_pending(store, run.id, unrouted_only=True),
        run_id=run.id,
        concurrency=c,
        on_decision=lambda d: latencies.append(d.total_ms or 0.0),
    )
    await router.aclose()
    assert summary.errors == 0, summary.error_classes
    assert store.decision_count() == len(texts)
    store.close()
    return latencies


_mark: dict[str, Any] = {}


def _mark_start() -> None:
    """Start the timed region: wall clock and CPU usage."""
    _mark["wall"] = time.perf_counter()
    _mark["rusage"] = resource.getrusage(resource.RUSAGE_SELF)


def child(args: argparse.Namespace) -> None:
    texts = [t["text"] for t in _tickets(Path(args.data))][: args.n]
    base = f"http://127.0.0.1:{args.port}/v1"
    runner = {
        "bare-httpx": run_bare,
        "bare-httpx-aiohttp": functools.partial(run_bare, aiohttp=True),
        "bare-aiohttp": run_plain_aiohttp,
        "openai-sdk": run_openai_sdk,
        "litellm": run_litellm,
    }

    async def go() -> list[float]:
        if args.child.startswith("triagedesk"):
            transport = "httpx" if args.child == "triagedesk-httpx" else "aiohttp"
            with tempfile.TemporaryDirectory() as tmp:
                return await run_triagedesk(
                    base, texts, args.concurrency, args.stream, Path(tmp), transport
                )
        return await runner[args.child](base, texts, args.concurrency, args.stream)

    # Imports and setup are outside the timed region; the triagedesk run marks its own start
    # after importing its tickets into the store.
    if args.child == "openai-sdk":
        import openai  # noqa: F401
    elif args.child == "litellm":
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm  # noqa: F401
    _mark_start()
    latencies = asyncio.run(go())
    elapsed = time.perf_counter() - _mark["wall"]
    after = resource.getrusage(resource.RUSAGE_SELF)
    before = _mark["rusage"]
    ordered = sorted(latencies)
    print(
        json.dumps(
            {
                "client": args.child,
                "n": len(latencies),
                "elapsed_s": elapsed,
                "per_s": len(latencies) / elapsed,
                "p50_ms": ordered[len(ordered) // 2],
                "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
                "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "peak_rss_mb": after.ru_maxrss / 1024,
            }
        )
    )


def _spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=[*CLIENTS, *EXTRA_CHILDREN])
    parser.add_argument("--port", type=int)
    parser.add_argument("--data")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument(
        "--litellm-n",
        type=int,
        default=2_000,
        help="LiteLLM is slow; it routes fewer tickets (rates stay comparable)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--modes", nargs="+", default=["plain", "stream"])
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS))
    parser.add_argument("--out", default="benchmarks/results/routing_overhead.json")
    args = parser.parse_args()
    if args.child:
        args.concurrency = args.concurrency[0]
        child(args)
        return

    from tui.core.demo import generate_inbox

    tmp = Path(tempfile.mkdtemp(prefix="td-bench-"))
    data = tmp / "tickets.jsonl"
    data.write_text(
        "\n".join(json.dumps({"text": d.ticket.text}) for d in generate_inbox(args.n, seed=1))
    )
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fast_openai_server", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    results: list[dict[str, Any]] = []
    try:
        for mode in args.modes:
            for c in args.concurrency:
                for rep in range(args.repeats):
                    for client in args.clients:
                        n = args.litellm_n if client == "litellm" else args.n
                        cmd = [
                            sys.executable,
                            "-m",
                            "benchmarks.routing_overhead",
                            "--child",
                            client,
                            "--port",
                            str(port),
                            "--data",
                            str(data),
                            "--n",
                            str(n),
                            "--concurrency",
                            str(c),
                        ] + (["--stream"] if mode == "stream" else [])
                        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
                        if out.returncode != 0:
                            print(out.stderr[-2000:], file=sys.stderr)
                            continue
                        row = json.loads(out.stdout.strip().splitlines()[-1])
                        row.update(mode=mode, concurrency=c, repeat=rep)
                        results.append(row)
                        print(
                            f"{mode:6} c={c:<4} {client:<11} {row['per_s']:8.0f}/s p50 {row['p50_ms']:7.2f} ms"
                            f" cpu {row['cpu_s']:6.1f} s rss {row['peak_rss_mb']:6.0f} MB",
                            flush=True,
                        )
    finally:
        server.terminate()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(report(results))


def report(results: list[dict[str, Any]]) -> str:
    """Markdown table: medians (min-max) over repeats, ratios against the other clients."""
    lines = [
        "| mode | c | client | tickets/s | % of ceiling | p50 ms (added) | p99 ms (added) |"
        " CPU s / 1k tickets | peak RSS MB | triagedesk × |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["mode"], r["concurrency"]) for r in results}, key=lambda k: (k[0], k[1]))
    for mode, c in keys:
        rows = {
            cl: [r for r in results if (r["mode"], r["concurrency"], r["client"]) == (mode, c, cl)]
            for cl in CLIENTS
        }
        # The ceiling is the faster of the two bare loops (httpx's transport or aiohttp's).
        bares = [rows[name] for name in ("bare-httpx", "bare-httpx-aiohttp") if rows[name]]
        bare = max(bares, key=lambda rs: statistics.median(r["per_s"] for r in rs), default=[])
        bare_rate = statistics.median(r["per_s"] for r in bare) if bare else None
        bare_p50 = statistics.median(r["p50_ms"] for r in bare) if bare else 0.0
        bare_p99 = statistics.median(r["p99_ms"] for r in bare) if bare else 0.0
        td = rows["triagedesk"]
        td_rate = statistics.median(r["per_s"] for r in td) if td else None
        for client, rs in rows.items():
            if not rs:
                continue
            rate, lo, hi = _spread([r["per_s"] for r in rs])
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            cpu = statistics.median(r["cpu_s"] / r["n"] * 1000 for r in rs)
            rss = statistics.median(r["peak_rss_mb"] for r in rs)
            ceiling = f"{rate / bare_rate:.0%}" if bare_rate else "-"
            ratio = (
                f"{td_rate / rate:.2f}"
                if td_rate and not client.startswith(("triagedesk", "bare"))
                else ""
            )
            lines.append(
                f"| {mode} | {c} | {client} | {rate:,.0f} ({lo:,.0f}-{hi:,.0f}) | {ceiling} |"
                f" {p50:.2f} ({p50 - bare_p50:+.2f}) | {p99:.2f} ({p99 - bare_p99:+.2f}) |"
                f" {cpu:.2f} | {rss:.0f} | {ratio} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
