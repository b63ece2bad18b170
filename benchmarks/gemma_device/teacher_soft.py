"""The fine-tuned Gemma as a teacher: its label distribution over the MiniLM student's texts.

Writes `soft.npy` in the layout `benchmarks.distill_device students --soft` reads (rows: the
training split's texts, then the perturbed copies of `--transfer`, in order; columns: the
labels in sorted order), each row the constrained decoder's distribution
(`backends.finetuned_batch.score_many`, the product's scorer) softened at temperature T
(p^(1/T), renormalised: the same as a softmax of the log-probabilities at T). Also prints the
teacher's own accuracy and macro-F1 on the held-out 20 % with the same scorer.

The split comes as files (`train80.jsonl`, `test20.jsonl`, written here from
`benchmarks.banking77.split` in its order), not from scikit-learn: on the H200 machine a process
that holds llama.cpp's CUDA build and imports scipy dies (NOTES.md, run 8).

    python3 benchmarks/gemma_device/teacher_soft.py --gguf MODEL.gguf --train train80.jsonl \\
        --test test20.jsonl --transfer aug.jsonl --out soft.npy [--temperature 2]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import llama_cpp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from backends import finetuned_batch, llamacpp_finetuned  # noqa: E402
from tui.core.learning.llm.train import macro_f1  # noqa: E402
from tui.core.models import Taxonomy  # noqa: E402

CHUNK = 256
N_CTX = 8192


def distributions(llm: object, texts: list[str], tax: Taxonomy, labels: list[str]) -> np.ndarray:
    """Rows of label probabilities (sorted label order) for the texts, CHUNK at a time."""
    out = np.zeros((len(texts), len(labels)), dtype=np.float64)
    column = {label: i for i, label in enumerate(labels)}
    for start in range(0, len(texts), CHUNK):
        scored = finetuned_batch.score_many(
            llm, llama_cpp, texts[start : start + CHUNK], tax, N_CTX
        )
        for row, item in enumerate(scored, start):
            for label, p in item.probabilities.items():
                out[row, column[label]] = p
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--train", type=Path, required=True, help="the 80 %, in the split's order")
    parser.add_argument("--test", type=Path, required=True, help="the 20 % held out")
    parser.add_argument("--transfer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--gpu-layers", type=int, default=-1)
    args = parser.parse_args()
    train, test = (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for path in (args.train, args.test)
    )
    extra = [json.loads(line) for line in args.transfer.read_text().splitlines() if line]
    labels = sorted({r["label"] for r in train})
    tax = Taxonomy.from_names(labels)
    llm = llama_cpp.Llama(args.gguf, n_ctx=N_CTX, n_gpu_layers=args.gpu_layers, verbose=False)
    llamacpp_finetuned.open_for_scoring(llm, llama_cpp, 256)
    started = time.perf_counter()
    held = distributions(llm, [r["text"] for r in test], tax, labels)
    said = [labels[i] for i in held.argmax(1)]
    gold = [r["label"] for r in test]
    report = {
        "teacher_accuracy": float(np.mean([s == g for s, g in zip(said, gold, strict=True)])),
        "teacher_macro_f1": macro_f1(said, gold),
        "held_out": len(test),
        "held_out_s": time.perf_counter() - started,
    }
    print(json.dumps(report), flush=True)
    started = time.perf_counter()
    texts = [r["text"] for r in train] + [r["text"] for r in extra]
    probs = distributions(llm, texts, tax, labels)
    soft = np.power(np.clip(probs, 1e-12, 1.0), 1.0 / args.temperature)
    soft /= soft.sum(axis=1, keepdims=True)
    np.save(args.out, soft.astype(np.float32))
    fit = [labels[i] for i in probs.argmax(1)]
    wanted = [r["label"] for r in train] + [r["label"] for r in extra]
    report = {
        "soft_rows": len(texts),
        "soft_s": time.perf_counter() - started,
        "teacher_agrees_with_training_labels": float(
            np.mean([f == w for f, w in zip(fit, wanted, strict=True)])
        ),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
