"""Train and evaluate every specialist kind on the fixed Banking77 split; write a table.

    uv run python -m benchmarks.specialists

Accuracy and macro-F1 on the stratified 20 % (seed 0) of banking77/train.jsonl, training time,
tickets/s when routing the whole 20 % as one batch, and the median latency of one ticket at a
time. The `finetuned` and `ensemble` kinds serve a MiniLM fine-tuned on the GPU machine
(benchmarks/finetune_device.py): point --finetuned at the folder its run returned
(finetuned.safetensors + finetuned.json); its GPU figures are read from
benchmarks/results/finetune_device.json. Without that folder those kinds are skipped.

`--untuned-minilm` times those two kinds without GPU weights: it writes such a folder from the
base all-MiniLM-L6-v2 (`TRIAGEDESK_MINILM_DIR`) and a logistic head fitted on its frozen
embeddings of the training split. The graph, its size and the tokenizer are the distilled
model's, so its speed is theirs; its accuracy is not, and the rows say so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.banking77 import DEFAULT, load_rows, split

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "uv run python -m benchmarks.specialists"


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(load[0], 2),
    }


def evaluate(kind: str, train: list[dict[str, str]], test: list[dict[str, str]]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    from tui.core.learning.model import SpecialistModel

    model = SpecialistModel.train(
        [r["text"] for r in train], [r["label"] for r in train], kind=kind
    )
    texts = [r["text"] for r in test]
    truth = [r["label"] for r in test]
    model.predict(texts[:32])  # load sessions and caches outside the timings
    wall, cpu = time.perf_counter(), time.process_time()
    predicted = [label for label, _ in model.predict(texts)]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    singles: list[float] = []
    through_sklearn: list[float] = []
    for text in texts[:300]:  # alternating, so both see the same machine
        started = time.perf_counter()
        model.predict([text])
        singles.append((time.perf_counter() - started) * 1000)
        if kind == "tfidf":  # what one ticket cost before TfidfScorer
            started = time.perf_counter()
            model.pipeline.predict_proba([text])
            through_sklearn.append((time.perf_counter() - started) * 1000)
    one_by_one = [model.predict([text])[0][0] for text in texts]
    row: dict[str, Any] = {
        "kind": kind,
        "accuracy": round(accuracy_score(truth, predicted), 4),
        "macro_f1": round(f1_score(truth, predicted, average="macro"), 4),
        "train_seconds": model.info.train_seconds,
        "tickets_per_s": round(len(texts) / wall, 1),
        "cpu_ms_per_ticket": round(cpu * 1000 / len(texts), 3),
        "p50_single_ms": round(statistics.median(singles), 2),
        "p95_single_ms": round(sorted(singles)[int(0.95 * (len(singles) - 1))], 2),
        "accuracy_single": round(accuracy_score(truth, one_by_one), 4),
        "single_differs_from_batch": sum(
            a != b for a, b in zip(one_by_one, predicted, strict=True)
        ),
    }
    if through_sklearn:
        row["p50_single_sklearn_ms"] = round(statistics.median(through_sklearn), 2)
    escalated = getattr(model.pipeline, "last_escalated", None)
    if escalated is not None:
        model.predict(texts)
        row["escalated_share"] = round(float(model.pipeline.last_escalated), 3)
    return row


def untuned_weights(train: list[dict[str, str]], out: Path) -> Path:
    """A fine-tune's weights folder from the base MiniLM and a head on its frozen embeddings:
    what `--untuned-minilm` serves, to time the `finetuned` and `ensemble` kinds for real."""
    import numpy as np
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression

    from tui.core.learning.fewshot_kind import MAX_LENGTH, frozen_encoder
    from tui.core.learning.finetuned_kind import minilm_dir
    from tui.core.learning.minilm_finetune import load_base
    from tui.core.learning.onnx_encoder import OnnxEncoder

    base = minilm_dir()
    embedded = OnnxEncoder(frozen_encoder(base, lambda _line: None)).embed(
        [r["text"] for r in train]
    )
    head = LogisticRegression(C=10, max_iter=2000).fit(embedded, [r["label"] for r in train])
    weights, bert = load_base(base)
    weights["classifier.weight"] = np.ascontiguousarray(head.coef_, dtype=np.float32)
    weights["classifier.bias"] = np.ascontiguousarray(head.intercept_, dtype=np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "finetuned.safetensors"))
    meta = {"classes": [str(c) for c in head.classes_], "bert": bert}
    meta["finetune"] = {"max_length": MAX_LENGTH}
    (out / "finetuned.json").write_text(json.dumps(meta))
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"`{report['command']}`",
        "",
        f"Banking77 `train.jsonl`, stratified 80/20 split (seed 0): {report['n_train']} training, "
        f"{report['n_test']} test tickets. Machine: {report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores, 1-minute load average "
        f"{report['machine']['load_average_1m']} when it ran (other work shared the cores: "
        "CPU ms per ticket is the less noisy speed figure).",
        "",
        "| kind | accuracy | macro-F1 | train s | tickets/s (batch) | CPU ms/ticket | p50 single ms"
        " | p50 single through scikit-learn | one at a time ≠ batch | escalated |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['kind']} | {row['accuracy']:.2%} | {row['macro_f1']:.4f} | "
            f"{row['train_seconds']:.1f} | {row['tickets_per_s']:,.0f} | "
            f"{row['cpu_ms_per_ticket']:.2f} | {row['p50_single_ms']:.2f} | "
            f"{row.get('p50_single_sklearn_ms', '')} | {row.get('single_differs_from_batch', '')} | "
            f"{row.get('escalated_share', '')} |"
        )
    gpu = report.get("gpu_run")
    if gpu and report.get("distill_run"):
        full = gpu["full"]
        lines += [
            "",
            f"Plain fine-tuning of MiniLM (no teacher) on {gpu['machine'].get('gpu')}: "
            f"{full['train_seconds']:.0f} s for {gpu['config']['epochs']} epochs, torch "
            f"{full['torch_accuracy']:.2%} on the same 20 % (`finetune_device.json`; 5 seeds "
            "92.35–92.85 %, `ceiling.md`). `finetuned` and `ensemble` reuse the GPU-trained "
            "encoder, so their train s is the CPU part only.",
        ]
    elif gpu:
        full = gpu["full"]
        lines += [
            "",
            f"Fine-tuning ran on {gpu['machine'].get('gpu')} (torch {gpu['machine'].get('torch')}): "
            f"{full['train_seconds']:.0f} s for {gpu['config']['epochs']} epochs; accuracy on the "
            f"same 20 %: torch {full['torch_accuracy']:.2%}, ONNX fp32 "
            f"{full['onnx_fp32']['accuracy']:.2%}, ONNX int8 {full['onnx_int8']['accuracy']:.2%} "
            f"({full['onnx_int8']['size_bytes'] / 1e6:.0f} MB; that run quantised per tensor, "
            "the rows above per output channel). `finetuned` and `ensemble` "
            "above reuse that encoder, so their train s is the CPU part only.",
        ]
    distilled = report.get("distill_run")
    if distilled:
        teachers = ", ".join(f"{r['accuracy']:.2%}" for r in distilled["teacher"]["runs"])
        students = ", ".join(f"{r['accuracy']:.2%}" for r in distilled["students"]["students"])
        lines += [
            "",
            "The MiniLM that `finetuned` and `ensemble` serve here is a student distilled on the "
            f"H200 from {len(distilled['teacher']['runs'])} fine-tuned mpnet-base teachers "
            f"(each {teachers} on this 20 %): trained on the 80 % plus "
            f"{distilled['students']['copies']} perturbed copies of each ticket, targets "
            f"{distilled['students']['distill_weight']:.0%} the teachers' mean distribution at "
            f"temperature 2 and the rest the hard label, {distilled['students']['epochs']} "
            f"epochs; torch accuracy of the two student seeds {students} "
            "(`benchmarks/results/distill_device.json`, `benchmarks/distill_device.py`).",
        ]
    for note in report.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--finetuned", type=Path, default=Path(".minilm-carry/distilled"))
    parser.add_argument("--kinds", default="tfidf,embeddings,finetuned,ensemble")
    parser.add_argument(
        "--untuned-minilm",
        action="store_true",
        help="serve the base MiniLM with a frozen-embedding head (speed only; see above)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "specialists")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"{args.data}: not found", file=sys.stderr)
        return 2
    train, test = split(load_rows(args.data))
    report: dict[str, Any] = {
        "command": COMMAND + (" " + " ".join(argv) if argv else ""),
        "n_train": len(train),
        "n_test": len(test),
        "machine": machine(),
        "rows": [],
        "notes": [],
    }
    gpu_json = RESULTS / "finetune_device.json"
    if gpu_json.exists():
        report["gpu_run"] = json.loads(gpu_json.read_text())
    if (args.finetuned / "distill.json").exists():
        report["distill_run"] = json.loads((RESULTS / "distill_device.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            if kind in ("finetuned", "ensemble"):
                from benchmarks.weight_parts import joined
                from tui.core.learning.finetuned_kind import encoder_from_gpu_run
                from tui.core.learning.onnx_encoder import is_weights_dir

                if args.untuned_minilm and not (Path(tmp) / "weights").exists():
                    untuned_weights(train, Path(tmp) / "weights")
                    report["notes"].append(
                        f"{kind}: the base MiniLM with a head on frozen embeddings "
                        "(--untuned-minilm): its speed is the distilled model's, its "
                        "accuracy is not"
                    )
                weights = (
                    Path(tmp) / "weights"
                    if args.untuned_minilm
                    else joined(args.finetuned, Path(tmp) / "weights")
                )
                if not is_weights_dir(weights):
                    report["notes"].append(
                        f"{kind}: skipped, no fine-tuned weights in {args.finetuned}"
                    )
                    continue
                encoder = Path(tmp) / "encoder"
                if not encoder.exists():
                    encoder_from_gpu_run(weights, encoder)
                os.environ["TRIAGEDESK_FINETUNED_ENCODER"] = str(encoder)
            row = evaluate(kind, train, test)
            print(json.dumps(row), flush=True)
            report["rows"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
