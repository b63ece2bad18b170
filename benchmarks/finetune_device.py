"""Measure the fine-tune on the fixed Banking77 split on a GPU: accuracy, ONNX export, folds.

This is a benchmark, not how users fine-tune (that is `triagedesk train --kind finetuned
--device cuda`). Run on the lent GPU machine (or any machine with torch):

    python3 -m benchmarks.finetune_device --data DIR/train.jsonl --base DIR/minilm --out OUT

It trains on the 80 % split, checks the torch.onnx export (fp32 and int8) against torch on
the 20 %, then fine-tunes on 5 folds of the 80 % for out-of-fold logits, which is how the
ensemble's mixing weight and cascade threshold are chosen without touching the 20 %. Weights
come back as fp16 safetensors in 15 MiB parts (the tool returns files of at most 16 MiB;
`benchmarks.weight_parts.joined` makes the whole file the product reads).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.banking77 import load_rows, split
from benchmarks.weight_parts import write_run
from tui.core.learning.minilm_finetune import FinetuneConfig, finetune, predict_logits
from tui.core.learning.onnx_encoder import OnnxEncoder, export_encoder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="rows to use (quick local checks)")
    parser.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    parser.add_argument("--folds", type=int, default=5, help="0: no out-of-fold runs")
    parser.add_argument("--seed", type=int, default=FinetuneConfig.seed)
    parser.add_argument("--budget-s", type=float, default=380.0, help="start no fold after this")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    log_file = (args.out / "log.txt").open("a")

    def log(message: str) -> None:
        line = f"[{time.perf_counter() - started:7.1f}s] {message}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    rows = load_rows(args.data)
    train, test = split(rows)
    if args.limit:
        train, test = train[: args.limit], test[: max(50, args.limit // 4)]
    cfg = FinetuneConfig(epochs=args.epochs, seed=args.seed)
    results: dict[str, Any] = {"config": cfg.__dict__, "n_train": len(train), "n_test": len(test)}
    try:
        import torch

        results["machine"] = {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    except Exception as exc:  # the figures matter more than the machine line
        results["machine"] = {"error": str(exc)}

    def save() -> None:
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    texts = [r["text"] for r in train]
    labels = [r["label"] for r in train]
    test_texts = [r["text"] for r in test]
    test_labels = np.array([r["label"] for r in test])
    log(f"full: {len(train)} train, {len(test)} test")
    full = finetune(texts, labels, args.base, config=cfg, log=log)
    classes = np.array(full.classes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_logits = predict_logits(full, args.base, test_texts, device=device)
    results["full"] = {
        "train_seconds": round(full.seconds, 2),
        "history": full.log,
        "torch_accuracy": float((classes[torch_logits.argmax(1)] == test_labels).mean()),
    }
    log(f"torch accuracy {results['full']['torch_accuracy']:.4f} in {full.seconds:.1f}s")
    np.save(args.out / "test_logits.npy", torch_logits.astype(np.float32))
    results["full"]["weight_parts"] = write_run(full, args.out)
    shutil.copyfile(args.base / "tokenizer.json", args.out / "tokenizer.json")
    save()
    with tempfile.TemporaryDirectory() as tmp:
        for int8 in (False, True):
            tag = "int8" if int8 else "fp32"
            t0 = time.perf_counter()
            directory = export_encoder(
                full.weights,
                full.config["bert"],
                args.base / "tokenizer.json",
                Path(tmp) / tag,
                head=full.head,
                classes=full.classes,
                max_length=cfg.max_length,
                int8=int8,
            )
            encoder = OnnxEncoder(directory, threads=8)
            logits = encoder.run(test_texts)["logits"]
            results["full"][f"onnx_{tag}"] = {
                "accuracy": float((classes[logits.argmax(1)] == test_labels).mean()),
                "max_abs_diff_vs_torch": float(np.abs(logits - torch_logits).max()),
                "agreement_with_torch": float((logits.argmax(1) == torch_logits.argmax(1)).mean()),
                "export_and_eval_seconds": round(time.perf_counter() - t0, 2),
                "size_bytes": (directory / "model.onnx").stat().st_size,
            }
            log(f"onnx {tag}: {results['full'][f'onnx_{tag}']}")
            save()

    if args.folds < 2:
        results["total_seconds"] = round(time.perf_counter() - started, 1)
        save()
        log("done (no folds)")
        return
    from sklearn.model_selection import StratifiedKFold

    oof = np.full((len(train), len(classes)), np.nan, dtype=np.float32)
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    done = []
    for fold, (fit_idx, held_idx) in enumerate(folds.split(texts, labels)):
        if time.perf_counter() - started > args.budget_s:
            log(f"time budget reached: {fold} of {args.folds} folds done")
            break
        part = finetune(
            [texts[i] for i in fit_idx], [labels[i] for i in fit_idx], args.base, config=cfg
        )
        if part.classes != full.classes:
            log(f"fold {fold}: classes differ, skipped")
            continue
        oof[held_idx] = predict_logits(part, args.base, [texts[i] for i in held_idx], device=device)
        done.append(fold)
        accuracy = float((classes[oof[held_idx].argmax(1)] == np.array(labels)[held_idx]).mean())
        log(f"fold {fold}: accuracy {accuracy:.4f} in {part.seconds:.1f}s")
        results.setdefault("folds", []).append(
            {"fold": fold, "accuracy": accuracy, "seconds": part.seconds}
        )
        np.save(args.out / "oof_logits.npy", oof)
        save()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    save()
    log("done")


if __name__ == "__main__":
    main()
