"""Gemma 3 270M's latency a ticket on this machine's CPU, in the shape the fine-tune serves.

The fine-tuned GGUF stays on the GPU machine (286 MiB cannot come back), so this times the
same architecture: the registry's base Q4_K_M requantised to Q8_0 (what the fine-tune writes)
with llama.cpp's own `llama_model_quantize`, then the trained prompt and 9 greedy answer
tokens (the fine-tuned model's answer length on Banking77) on 2 threads. Accuracy is not
measured here: the base model is not the fine-tuned one.

    python benchmarks/gemma_device/cpu_bench.py --base gemma-3-270m-q4_k_m.gguf \\
        --tickets test20.jsonl --n 40
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tui.core.learning.llm.prompt import prompt  # noqa: E402


def requantise(base: Path) -> Path:
    """A Q8_0 copy of the base beside it, made once."""
    target = base.with_name(base.stem + "-q8_0.gguf")
    if not target.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
        params.allow_requantize = True
        if llama_cpp.llama_model_quantize(str(base).encode(), str(target).encode(), params):
            raise SystemExit(f"llama.cpp could not requantise {base}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--tickets", type=Path, required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    lines = args.tickets.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][: args.n]
    llm = llama_cpp.Llama(
        model_path=str(requantise(args.base)),
        n_ctx=256,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    llm.create_completion(prompt(rows[0]["text"]), max_tokens=9, temperature=0.0)
    times = []
    for row in rows:
        started = time.perf_counter()
        llm.create_completion(prompt(row["text"]), max_tokens=9, temperature=0.0, stop=[])
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    figures = {
        "n": len(times),
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(0.95 * (len(times) - 1))],
        "load_average": os.getloadavg(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
