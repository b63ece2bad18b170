"""The learning curve of every specialist kind on Banking77, from 5 to 50 labels per class.

    TRIAGEDESK_MINILM_DIR=... uv run python -m benchmarks.fewshot_curve --sizes 5,10,20,50 --seeds 13,14,15

Stratified few-shot samples of `banking77/train.jsonl`'s 80 % (nested: each size adds to the
smaller one's tickets, `curve.nested_sample`), each kind trained through the product's own
`SpecialistModel.train`, scored on the fixed held-back 20 % (`benchmarks/banking77.py`, the
same rows as section 4). Per run: accuracy, training seconds (wall, on whatever cores the
machine has; the load average is recorded), tickets/s routing the 20 % as one batch. The
`tfidf>fewshot` rows are the cascade: TF-IDF answers the tickets it is surest of and the
`--escalate` share it is least sure of goes to the fewshot model; its speed is computed from
the two models' measured CPU time a ticket. `fewshot-frozen` is the fewshot kind without
torch (TRIAGEDESK_FEWSHOT_CONTRASTIVE=off). `auto_kind.CURVE` holds the means.

`--unlabelled N` gives the fewshot kinds an unlabelled pool, as the inbox's unlabelled
tickets give it in the product (`semi_supervised`): N texts of the 80 % that are not in the
labelled sample, their labels never shown. The pool is drawn from the 80 % only, so no scored
ticket of the held-back 20 % is ever in it. `fewshot-frozen-cascade` is the product's own
cascade (TRIAGEDESK_FEWSHOT_CASCADE=on: TF-IDF on the labels and the pool's guessed labels,
threshold from its out-of-fold confidences), timed as served; the row `fewshot-frozen` of the
same training is its encoder answering every ticket.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.banking77 import DEFAULT, load_rows, split
from benchmarks.specialists import machine

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "uv run python -m benchmarks.fewshot_curve"


def score(
    kind: str, model: Any, test: list[str], truth: np.ndarray, load: float
) -> tuple[dict[str, Any], np.ndarray, list[str]]:
    """Accuracy and speed of a trained model on the whole test set, as one batch."""
    model.predict_proba(test[:32])  # sessions and caches load outside the timings
    wall, cpu = time.perf_counter(), time.process_time()
    proba = model.predict_proba(test)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    predicted = np.asarray(model.classes)[proba.argmax(axis=1)]
    row = {
        "kind": kind,
        "accuracy": round(float((predicted == truth).mean()), 4),
        "train_seconds": model.info.train_seconds,
        "tickets_per_s": round(len(test) / wall, 1),
        "cpu_ms_per_ticket": round(cpu * 1000 / len(test), 3),
        "load_average_1m": round(load, 2),
        "trained_on": getattr(model.pipeline, "trained_on", ""),
    }
    escalated = getattr(model.pipeline, "last_escalated", None)
    if kind.endswith("-cascade") and escalated is not None:
        row["escalated_share"] = round(float(escalated), 3)
        row["tickets_per_s_two_cores"] = round(2000 / max(row["cpu_ms_per_ticket"], 1e-6), 1)
    return row, proba, model.classes


def run_kind(
    kind: str,
    texts: list[str],
    labels: list[str],
    test: list[str],
    truth: np.ndarray,
    unlabelled: list[str] | None = None,
) -> list[tuple[dict[str, Any], np.ndarray, list[str]]]:
    """Train `kind` once and score it; a `-cascade` kind is scored twice, as served (TF-IDF
    first) and with its encoder answering every ticket (the row without `-cascade`)."""
    from tui.core.learning.model import SpecialistModel

    real = "fewshot" if kind.startswith("fewshot") else kind
    frozen = kind.startswith("fewshot-frozen")
    os.environ["TRIAGEDESK_FEWSHOT_CONTRASTIVE"] = "off" if frozen else "auto"
    # the cascade of plain `fewshot` runs is computed below from the tfidf run, apart
    os.environ["TRIAGEDESK_FEWSHOT_CASCADE"] = "on" if kind.endswith("-cascade") else "off"
    load = os.getloadavg()[0]
    pool = unlabelled if real == "fewshot" and unlabelled else []
    cpu = time.process_time()
    model = SpecialistModel.train(texts, labels, kind=real, unlabelled=pool)
    cpu = time.process_time() - cpu
    results = [score(kind, model, test, truth, load)]
    if kind.endswith("-cascade"):
        model.pipeline.tfidf = None  # the same head, answering alone
        results.append(score(kind.removesuffix("-cascade"), model, test, truth, load))
    for row, _, _ in results:
        row["unlabelled_pool"] = len(pool)
        row["train_cpu_seconds"] = round(cpu, 1)  # every thread of the process: load-free
        if pool:
            row["kind"] += "+pool"
    return results


def cascade(
    first: tuple[dict[str, Any], np.ndarray, list[str]],
    second: tuple[dict[str, Any], np.ndarray, list[str]],
    truth: np.ndarray,
    share: float,
) -> dict[str, Any]:
    """TF-IDF for the surest (1 - share) of tickets, the second model for the rest."""
    row1, p1, classes = first
    row2, p2, classes2 = second
    assert classes == classes2
    confidence = p1.max(axis=1)
    threshold = np.quantile(confidence, share)
    unsure = confidence < threshold
    chosen = np.where(unsure, p2.argmax(axis=1), p1.argmax(axis=1))
    cpu_ms = row1["cpu_ms_per_ticket"] + unsure.mean() * row2["cpu_ms_per_ticket"]
    return {
        "kind": f"{row1['kind']}>{row2['kind']}",
        "accuracy": round(float((np.asarray(classes)[chosen] == truth).mean()), 4),
        "train_seconds": round(row1["train_seconds"] + row2["train_seconds"], 3),
        "escalated_share": round(float(unsure.mean()), 3),
        "cpu_ms_per_ticket": round(cpu_ms, 3),
        "tickets_per_s_two_cores": round(2000 / cpu_ms, 1),
    }


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, min and max over seeds; a (kind, size, seed) run again counts once (the last)."""
    latest = {(r["kind"], r["per_class"], r["seed"]): r for r in runs}
    runs = list(latest.values())
    keys = sorted({(r["per_class"], r["kind"]) for r in runs}, key=lambda k: (k[0], k[1]))
    table = []
    for per_class, kind in keys:
        rows = [r for r in runs if r["per_class"] == per_class and r["kind"] == kind]
        acc = [r["accuracy"] for r in rows]
        entry = {
            "per_class": per_class,
            "kind": kind,
            "seeds": len(rows),
            "accuracy_mean": round(statistics.fmean(acc), 4),
            "accuracy_min": min(acc),
            "accuracy_max": max(acc),
            "train_seconds_mean": round(statistics.fmean(r["train_seconds"] for r in rows), 1),
        }
        speed = [r.get("tickets_per_s_two_cores") or r.get("tickets_per_s") for r in rows]
        entry["tickets_per_s_mean"] = round(statistics.fmean(s for s in speed if s), 0)
        if "escalated_share" in rows[0]:
            entry["escalated_share"] = rows[0]["escalated_share"]
        table.append(entry)
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"`{report['command']}`",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; load "
        "averages per run are in the JSON (other helpers shared the two cores: training "
        "seconds are pessimistic).",
        "",
        "| labels/class | kind | seeds | accuracy (mean) | min-max | train s | tickets/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in report["table"]:
        lines.append(
            f"| {e['per_class']} | {e['kind']} | {e['seeds']} | {e['accuracy_mean']:.2%} | "
            f"{e['accuracy_min']:.2%}-{e['accuracy_max']:.2%} | {e['train_seconds_mean']:.0f} | "
            f"{e['tickets_per_s_mean']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tui.core.learning.curve import nested_sample

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--sizes", default="5,10,20,50")
    parser.add_argument("--seeds", default="13")
    parser.add_argument("--kinds", default="tfidf,fewshot-frozen,fewshot")
    parser.add_argument("--escalate", type=float, default=0.5)
    parser.add_argument(
        "--unlabelled",
        type=int,
        default=0,
        help="texts of the 80%% outside the labelled sample given to fewshot as unlabelled",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "fewshot_curve")
    parser.add_argument("--append", action="store_true", help="add to the runs in --out")
    parser.add_argument("--table", action="store_true", help="only rewrite --out's table")
    args = parser.parse_args(argv)
    if args.table:
        report = json.loads(args.out.with_suffix(".json").read_text())
        report["table"] = summarise(report["runs"])
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        args.out.with_suffix(".md").write_text(markdown(report))
        print(markdown(report))
        return 0
    if not args.data.exists():
        print(f"{args.data}: not found", file=sys.stderr)
        return 2
    train, test_rows = split(load_rows(args.data))
    test = [r["text"] for r in test_rows]
    truth = np.asarray([r["label"] for r in test_rows])
    out_json = args.out.with_suffix(".json")
    runs: list[dict[str, Any]] = []
    if args.append and out_json.exists():
        runs = json.loads(out_json.read_text())["runs"]
    for seed in [int(s) for s in args.seeds.split(",")]:
        for size in [int(s) for s in args.sizes.split(",")]:
            chosen = nested_sample([r["label"] for r in train], size, seed)
            texts = [train[i]["text"] for i in chosen]
            labels = [train[i]["label"] for i in chosen]
            in_sample = set(chosen)
            scored = set(test)  # a text that is also a scored ticket never joins the pool
            outside = [
                r["text"]
                for i, r in enumerate(train)
                if i not in in_sample and r["text"] not in scored
            ]
            random.Random(seed).shuffle(outside)
            pool = outside[: args.unlabelled]
            done: dict[str, Any] = {}
            for kind in args.kinds.split(","):
                rows = []
                for result in run_kind(kind, texts, labels, test, truth, pool):
                    done[result[0]["kind"]] = result
                    rows.append(result[0])
                    name = result[0]["kind"]
                    if name.startswith("fewshot") and "cascade" not in name and "tfidf" in done:
                        rows.append(cascade(done["tfidf"], result, truth, args.escalate))
                for row in rows:
                    row.update(per_class=size, seed=seed, n_train=len(texts))
                    print(json.dumps(row), flush=True)
                    runs.append(row)
                report = {
                    "command": " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)]),
                    "machine": machine(),
                    "n_test": len(test),
                    "runs": runs,
                    "table": summarise(runs),
                }
                args.out.parent.mkdir(parents=True, exist_ok=True)
                out_json.write_text(json.dumps(report, indent=2))
                args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
