"""Constrained label scoring (`backends.finetuned_batch.score_many`) on the GPU, called directly
in one thread: one ticket at a time (c=1 latency) and batches of 8 and 64 (throughput), plus the
exact full-vocabulary scoring (`llamacpp_finetuned.score`) one ticket at a time for comparison.
One ticket at a time is measured both ways: in one pass (`at_once`, what a GPU gets by default
for a few tickets) and level by level.

llama_cpp is imported before numpy: on the H200 machine a CUDA model loaded after numpy was
imported died with SIGSEGV (NOTES.md, run 6).

    python3 benchmarks/gemma_device/scoring_bench.py MODEL.gguf all|batch TICKETS.jsonl
"""

import llama_cpp  # noqa: I001  (first: see above)
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backends import finetuned_batch, llamacpp_finetuned  # noqa: E402
from tui.core.learning.llm.train import macro_f1  # noqa: E402
from tui.core.models import Taxonomy  # noqa: E402


def main() -> None:
    path, mode, tickets = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = Path(tickets).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    tax = Taxonomy.from_names(sorted({r["label"] for r in rows}))
    llm = llama_cpp.Llama(path, n_ctx=8192, n_gpu_layers=-1, verbose=False)
    llamacpp_finetuned.open_for_scoring(llm, llama_cpp, 256)
    texts = [r["text"] for r in rows]
    gold = [r["label"] for r in rows]
    finetuned_batch.score_many(llm, llama_cpp, texts[:64], tax, 8192)  # warm-up
    out: dict[str, object] = {"model": path, "mode": mode}
    if mode == "all":  # one ticket at a time: the one-pass and the level-wise path, alternating
        lat: dict[bool, list[float]] = {True: [], False: []}
        pred: dict[bool, list[str]] = {True: [], False: []}
        for text in texts[:200]:
            for once in (True, False):
                t = time.perf_counter()
                said = finetuned_batch.score_many(llm, llama_cpp, [text], tax, 8192, at_once=once)
                lat[once].append((time.perf_counter() - t) * 1000)
                pred[once].append(said[0].label)
        for once, tag in ((True, "c1"), (False, "c1_levels")):
            lat[once].sort()
            right = sum(p == g for p, g in zip(pred[once], gold, strict=False))
            out[tag] = {
                "n": 200,
                "acc": right / 200,
                "p50": statistics.median(lat[once]),
                "p95": lat[once][189],
            }
    for b in (8, 64):
        pred = []
        t = time.perf_counter()
        for i in range(0, len(texts), b):
            pred += [
                s.label
                for s in finetuned_batch.score_many(llm, llama_cpp, texts[i : i + b], tax, 8192)
            ]
        sec = time.perf_counter() - t
        right = sum(p == g for p, g in zip(pred, gold, strict=True))
        out[f"batch{b}"] = {
            "n": len(texts),
            "acc": right / len(texts),
            "macro_f1": macro_f1(pred, gold),
            "tps": len(texts) / sec,
            "ms_per_batch": sec * 1000 / -(-len(texts) // b),
        }
    if mode == "all":
        lat, pred = [], []
        for text in texts[:60]:
            t = time.perf_counter()
            pred.append(llamacpp_finetuned.score(llm, llama_cpp, text, tax, 8192).label)
            lat.append((time.perf_counter() - t) * 1000)
        right = sum(p == g for p, g in zip(pred, gold, strict=False))
        out["full_c1"] = {"n": 60, "acc": right / 60, "p50": statistics.median(lat)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
