"""How far a larger encoder gets on the fixed Banking77 split: all-mpnet-base-v2, fine-tuned.

Run on the lent GPU machine (transformers is there):

    python3 -m benchmarks.teacher_device --data train.jsonl --model DIR --out OUT --seeds 4

MiniLM-L6 tops out near 93 % on this split however it is ensembled (RESULTS.md); this
measures whether a 110M-parameter encoder, five times MiniLM's size and far too slow to serve
1,000 tickets/s on two CPU cores, would lift that ceiling enough to be worth distilling from.
`DIR` holds config.json, tokenizer.json and model.safetensors (fp16 is fine). Seeds run in
parallel processes; test logits come back as one .npz.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.banking77 import load_rows, split
from tui.core.learning.finetuned_kind import softmax


def _train(spec: dict[str, Any]) -> dict[str, Any]:
    """One teacher, fine-tuned by the product's own `teacher.fit` (what `finetune --teacher`
    runs), then its logits on the held-out 20 % and, with a transfer file, on the training
    texts and their copies."""
    import torch

    from tui.core.learning.llm.teacher import TeacherOptions, fit

    device = "cuda" if torch.cuda.is_available() else "cpu"
    train, test = split(load_rows(Path(spec["data"])))
    if spec.get("limit"):
        train, test = train[: spec["limit"]], test[: spec["limit"]]
    classes = sorted({r["label"] for r in train})
    index = {c: i for i, c in enumerate(classes)}
    options = TeacherOptions(Path(spec["model"]), epochs=spec["epochs"], learning_rate=spec["lr"])
    started = time.perf_counter()
    texts = [r["text"] for r in train]
    predict = fit(
        texts, [index[r["label"]] for r in train], len(classes), options, spec["seed"], device
    )
    logits = predict([r["text"] for r in test])
    accuracy = float((np.array(classes)[logits.argmax(1)] == [r["label"] for r in test]).mean())
    done: dict[str, Any] = {
        "seed": spec["seed"],
        "logits": logits,
        "accuracy": accuracy,
        "seconds": time.perf_counter() - started,
    }
    if spec.get("transfer"):
        # What the student learns from: the teacher's view of the training texts and of
        # their perturbed copies (benchmarks/distill_device.py).
        lines = Path(spec["transfer"]).read_text().splitlines()
        extra = [json.loads(line)["text"] for line in lines if line.strip()]
        done["transfer_logits"] = predict(texts + extra)
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--transfer", type=Path, help="JSONL of extra texts to label as well")
    parser.add_argument("--temperature", type=float, default=2.0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    specs = [
        {
            "seed": s,
            "data": str(args.data),
            "model": str(args.model),
            "epochs": args.epochs,
            "lr": args.lr,
            "limit": args.limit,
            "transfer": str(args.transfer) if args.transfer else "",
        }
        for s in range(args.seeds)
    ]
    results: dict[str, Any] = {"epochs": args.epochs, "lr": args.lr, "runs": []}
    logits = {}
    transfer = []
    with ProcessPoolExecutor(args.seeds, mp_context=mp.get_context("spawn")) as pool:
        for done in pool.map(_train, specs):
            logits[f"seed{done['seed']}"] = done.pop("logits")
            if "transfer_logits" in done:
                transfer.append(done.pop("transfer_logits"))
            results["runs"].append(done)
            print(f"[{time.perf_counter() - started:6.1f}s] {done}", flush=True)
    if transfer:
        # Soft targets: the seeds' mean distribution at temperature T (Hinton et al.).
        soft = np.mean([softmax(t, args.temperature) for t in transfer], axis=0)
        np.save(args.out / "soft.npy", soft.astype(np.float32))
    np.savez_compressed(args.out / "teacher_logits.npz", **logits)
    (args.out / "teacher.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
