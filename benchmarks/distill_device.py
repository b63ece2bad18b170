"""Distil fine-tuned mpnet-base teachers into the MiniLM the `finetuned` kind serves.

    python3 -m benchmarks.distill_device transfer --data train.jsonl --out aug.jsonl
    python3 -m benchmarks.teacher_device ... --transfer aug.jsonl      # writes soft.npy
    python3 -m benchmarks.distill_device students --data train.jsonl --transfer aug.jsonl \\
        --soft soft.npy --base MINILM_DIR --out OUT

mpnet-base is about a point more accurate than MiniLM on the Banking77 split but eight times
slower on a CPU (benchmarks/results/ceiling.md). Distillation tries to keep the point at
MiniLM's cost: the student trains on the 80 % plus two perturbed copies of each ticket (words
dropped, neighbours swapped), with targets that mix the hard label and the teachers' mean
distribution at temperature 2. The copies are made here, deterministically, so the teacher
and the student see the same texts.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.banking77 import load_rows, split
from tui.core.learning.llm.teacher import perturb

COPIES = 2


def write_transfer(data: Path, out: Path, seed: int = 0) -> int:
    """The perturbed copies of the training split, with the label of their original."""
    train, _ = split(load_rows(data))
    rng = random.Random(seed)
    lines = [
        json.dumps({"text": perturb(r["text"], rng), "label": r["label"]})
        for _ in range(COPIES)
        for r in train
    ]
    out.write_text("\n".join(lines) + "\n")
    return len(lines)


def _student(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from benchmarks.weight_parts import write_run
    from tui.core.learning.minilm_finetune import FinetuneConfig, finetune, predict_logits

    train, test = split(load_rows(Path(spec["data"])))
    extra = [json.loads(line) for line in Path(spec["transfer"]).read_text().splitlines() if line]
    texts = [r["text"] for r in train] + [r["text"] for r in extra]
    labels = [r["label"] for r in train] + [r["label"] for r in extra]
    soft = np.load(spec["soft"])
    base = Path(spec["base"])
    cfg = FinetuneConfig(
        seed=spec["seed"], epochs=spec["epochs"], distill_weight=spec["distill_weight"]
    )
    torch.set_num_threads(1)
    result = finetune(texts, labels, base, config=cfg, soft_targets=soft)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    logits = predict_logits(result, base, [r["text"] for r in test], device=device)
    accuracy = float(
        (np.array(result.classes)[logits.argmax(1)] == [r["label"] for r in test]).mean()
    )
    if spec.get("keep"):
        write_run(result, Path(spec["out"]))
    return {
        "seed": spec["seed"],
        "accuracy": accuracy,
        "seconds": result.seconds,
        "logits": logits.astype(np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["transfer", "students"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--transfer", type=Path)
    parser.add_argument("--soft", type=Path)
    parser.add_argument("--base", type=Path)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--distill-weight", type=float, default=0.7)
    args = parser.parse_args()
    if args.step == "transfer":
        print(f"{write_transfer(args.data, args.out)} perturbed copies -> {args.out}")
        return
    if not (args.transfer and args.soft and args.base):
        parser.error("students needs --transfer, --soft and --base")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    specs = [
        {
            "seed": s,
            "data": str(args.data),
            "transfer": str(args.transfer),
            "soft": str(args.soft),
            "base": str(args.base),
            "out": str(args.out),
            "epochs": args.epochs,
            "distill_weight": args.distill_weight,
            "keep": s == 0,
        }
        for s in range(args.seeds)
    ]
    results: dict[str, Any] = {
        "epochs": args.epochs,
        "distill_weight": args.distill_weight,
        "copies": COPIES,
        "students": [],
    }
    logits = {}
    with ProcessPoolExecutor(args.seeds, mp_context=mp.get_context("spawn")) as pool:
        for done in pool.map(_student, specs):
            logits[f"student{done['seed']}"] = done.pop("logits")
            results["students"].append(done)
            print(f"[{time.perf_counter() - started:6.1f}s] {done}", flush=True)
    np.savez_compressed(args.out / "student_logits.npz", **logits)
    (args.out / "distill.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
