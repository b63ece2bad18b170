"""The fine-tuned GGUF in process, through the product's `llamacpp-local` backend
(`prompt = "finetuned"`), at several concurrencies: accuracy, macro-F1, latency, tickets/s.

`label_scoring = "constrained"` scores the tickets waiting at once in one batch
(`backends.finetuned_batch`); `full` scores every label token of one ticket at a time
(`backends.llamacpp_finetuned`). Latency is each ticket's `total_ms` (waiting for its batch
included); tickets/s is the run's wall time. The model loads before timing (one warm-up ticket).

    python3 benchmarks/gemma_device/local_bench.py --gguf ft/model-q8_0.gguf --tickets test20.jsonl \\
        --scoring constrained --runs 1:200 8:500 64:2001 [--gpu-layers -1] [--n-ctx 8192] [--threads N] \\
        [--report ft/report.json]

`--report`: the fine-tune's report; a `--objective classify` model is served with its
`label_tokens`, as the `backend.toml` it wrote serves it.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backends.llamacpp_local import LlamaCppLocalBackend  # noqa: E402
from tui.core.config import _build  # noqa: E402
from tui.core.learning.llm.train import macro_f1  # noqa: E402
from tui.core.models import Taxonomy, Ticket  # noqa: E402


async def run(
    backend: LlamaCppLocalBackend, rows: list[dict[str, str]], taxonomy: Taxonomy, c: int, n: int
) -> dict[str, Any]:
    queue = list(range(min(n, len(rows))))[::-1]
    said: dict[int, str] = {}
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while queue:
            index = queue.pop()
            try:
                result = await backend.route(
                    Ticket(id=str(index), text=rows[index]["text"]), taxonomy
                )
            except Exception as exc:  # recorded, the run goes on
                errors += 1
                print(f"error: {exc}", file=sys.stderr)
                continue
            said[index] = result.label
            latencies.append(result.total_ms)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(c)))
    seconds = time.perf_counter() - started
    done = sorted(said)
    gold = [rows[i]["label"] for i in done]
    predicted = [said[i] for i in done]
    latencies.sort()
    return {
        "c": c,
        "n": len(done),
        "err": errors,
        "acc": sum(p == g for p, g in zip(predicted, gold, strict=True)) / max(1, len(done)),
        "macro_f1": macro_f1(predicted, gold),
        "tps": len(done) / seconds,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
    }


async def main_async(args: argparse.Namespace) -> None:
    rows = [json.loads(line) for line in args.tickets.read_text().splitlines() if line.strip()]
    taxonomy = Taxonomy.from_names(sorted({r["label"] for r in rows}))
    report = json.loads(args.report.read_text()) if args.report else {}
    tokens = report.get("label_tokens")
    settings = _build(
        {
            "routing": {"backend": "ft", "reference_backend": None},
            "backends": {
                "ft": {
                    "type": "llamacpp-local",
                    "model_path": str(args.gguf),
                    "prompt": "finetuned",
                    "label_scoring": args.scoring,
                    "n_gpu_layers": args.gpu_layers,
                    "n_ctx": args.n_ctx,
                    "timeout_s": 600,
                    "max_concurrency": 64,
                    **({"n_threads": args.threads} if args.threads else {}),
                    **({"label_tokens": tokens} if tokens else {}),
                }
            },
        },
        None,
    )
    backend = LlamaCppLocalBackend(settings.backends["ft"])  # type: ignore[arg-type]
    try:
        await backend.route(Ticket(id="warm", text=rows[0]["text"]), taxonomy)
        for spec in args.runs:
            c, n = (int(part) for part in spec.split(":"))
            figures = await run(backend, rows, taxonomy, c, n)
            figures["scoring"] = args.scoring
            figures["objective"] = "classify" if tokens else "generate"
            print(json.dumps(figures), flush=True)
    finally:
        await backend.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--tickets", type=Path, required=True)
    parser.add_argument("--scoring", choices=["constrained", "full"], default="constrained")
    parser.add_argument("--runs", nargs="+", default=["1:200", "8:500", "64:2001"])
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp CPU threads (0: its own)")
    parser.add_argument("--report", type=Path, default=None, help="the fine-tune's report.json")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
