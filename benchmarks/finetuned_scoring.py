"""In-process `prompt = "finetuned"` scoring: one decode batch per label against one batch over
the labels' token trie (`backends.llamacpp_finetuned.score`), on the same model in one run.

Both paths start from the same evaluated prompt; the per-label one is the scoring the
backend used before the trie, kept here only to be measured against. Tickets alternate
between the two, so load on the machine falls on both alike; the script also checks that
both give the same probabilities.

    uv run --offline --no-sync python -m benchmarks.finetuned_scoring \
        --model /path/to/gemma-3-270m-q4_k_m.gguf --data bitext --labels 10 --tickets 8
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from backends import llamacpp_finetuned as ft
from backends.llamacpp_local import SCORING_SEQUENCES
from tui.core.models import Taxonomy

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SETS = {
    "banking77": DATASETS / "banking77" / "train.jsonl",
    "bitext": DATASETS / "bitext_cs_20k" / "bitext_cs_20k.jsonl",
}
TINY = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny_finetuned.gguf"


def per_label(llm: Any, llama_cpp: Any, text: str, taxonomy: Taxonomy, n_ctx: int) -> ft.Scored:
    """The former scoring: the prompt once, then one decode batch per label."""
    answers = ft.label_ids(llm, taxonomy)
    longest = max(len(ids) for ids in answers.values())
    ids = ft.prompt_ids(llm, text, n_ctx - longest)
    memory = llm._ctx.memory
    llama_cpp.llama_memory_seq_keep(memory, 0)
    llm.reset()
    llm.eval(ids)
    after_prompt = ft._log_softmax_at(llm, llama_cpp, -1)
    total: dict[str, float] = {}
    for name, tokens in answers.items():
        logprob = float(after_prompt[tokens[0]])
        if len(tokens) > 1:
            llama_cpp.llama_memory_seq_rm(memory, 0, len(ids), -1)
            llm._batch.set_batch(batch=tokens[:-1], n_past=len(ids), logits_all=True)
            llm._ctx.decode(llm._batch)
            for position, token in enumerate(tokens[1:]):
                logprob += float(ft._log_softmax_at(llm, llama_cpp, position)[token])
        total[name] = logprob
    llama_cpp.llama_memory_seq_rm(memory, 0, len(ids), -1)
    llm.n_tokens = len(ids)
    top = max(total.values())
    weights = {name: math.exp(value - top) for name, value in total.items()}
    norm = sum(weights.values())
    return ft.Scored({n: w / norm for n, w in weights.items()}, len(ids), 0)


def load(data: str, count: int, labels_wanted: int | None) -> tuple[list[str], Taxonomy]:
    """`count` tickets spread over the set's labels (its first `labels_wanted` in sorted
    order, or all), and the taxonomy of those labels."""
    rows = [json.loads(line) for line in SETS[data].read_text().splitlines() if line.strip()]
    labels = sorted({row["label"] for row in rows})[:labels_wanted]
    rows = [row for row in rows if row["label"] in labels]
    step = max(1, len(rows) // count)
    return [row["text"] for row in rows[::step][:count]], Taxonomy.from_names(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=TINY)
    parser.add_argument("--data", choices=sorted(SETS), default="banking77")
    parser.add_argument("--tickets", type=int, default=20)
    parser.add_argument("--n-ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--labels", type=int, default=None, help="the set's first N labels")
    args = parser.parse_args()
    import llama_cpp

    texts, taxonomy = load(args.data, args.tickets, args.labels)
    llm = llama_cpp.Llama(
        model_path=str(args.model),
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    ft.open_for_scoring(llm, llama_cpp, SCORING_SEQUENCES)
    answers = ft.label_ids(llm, taxonomy)
    times: dict[str, list[float]] = {"per-label": [], "trie": []}
    worst = 0.0
    agree = 0
    for text in [texts[0], *texts]:  # the first ticket warms both paths up, unmeasured
        started = time.perf_counter()
        old = per_label(llm, llama_cpp, text, taxonomy, args.n_ctx)
        middle = time.perf_counter()
        new = ft.score(llm, llama_cpp, text, taxonomy, args.n_ctx)
        done = time.perf_counter()
        times["per-label"].append((middle - started) * 1000)
        times["trie"].append((done - middle) * 1000)
        worst = max(worst, *(abs(old.probabilities[n] - new.probabilities[n]) for n in answers))
        agree += old.label == new.label
    llm.close()
    old_ms, new_ms = (statistics.median(t[1:]) for t in times.values())
    print(
        json.dumps(
            {
                "model": args.model.name,
                "data": args.data,
                "labels": len(taxonomy.names),
                "label_tokens": sum(len(t) for t in answers.values()),
                "trie_branches": len(ft.branches(answers)),
                "tickets": len(texts),
                "per_label_p50_ms": round(old_ms, 1),
                "trie_p50_ms": round(new_ms, 1),
                "speedup": round(old_ms / new_ms, 2),
                "max_probability_difference": worst,
                "same_label": f"{agree - 1}/{len(texts)}",  # the warm-up ticket counted once
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
