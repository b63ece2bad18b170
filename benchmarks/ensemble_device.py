"""Seed ensembles and distillation of MiniLM on the fixed Banking77 split, many runs at once.

Run on the lent GPU machine:

    python3 -m benchmarks.ensemble_device --data train.jsonl --base DIR/minilm --out OUT \\
        [--oof-seed0 oof_logits.npy]

One fine-tune of MiniLM keeps an H200 mostly idle (it is bound by kernel launches), so this
runs many in parallel processes. Phase 1 trains `--seeds` models on the whole 80 % (their
logits on the 20 % measure a seed ensemble) and 5-fold models for `--oof-seeds` (out-of-fold
logits on the 80 %, so stacking weights are chosen without the 20 %). Phase 2 distils: new
students train on the hard labels mixed with the averaged out-of-fold distribution of the
phase-1 seeds (a teacher that never saw the ticket it labels). Logits come back as .npy; the
weights of the models named in `--keep` come back as fp16 safetensors parts.
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

FOLDS = 5


def _job(spec: dict[str, Any]) -> dict[str, Any]:
    """One fine-tune in its own process: returns logits (and writes weights if asked)."""
    import torch

    from benchmarks.weight_parts import write_run
    from tui.core.learning.minilm_finetune import FinetuneConfig, finetune, predict_logits

    rows = load_rows(Path(spec["data"]))
    train, test = split(rows)
    texts = [r["text"] for r in train]
    labels = [r["label"] for r in train]
    fit_idx = np.asarray(spec.get("fit_idx", range(len(texts))))
    soft = np.load(spec["soft"])[fit_idx] if spec.get("soft") else None
    cfg = FinetuneConfig(
        seed=spec["seed"],
        distill_weight=spec.get("distill_weight", 0.5),
        epochs=spec.get("epochs", FinetuneConfig.epochs),
    )
    base = Path(spec["base"])
    torch.set_num_threads(1)
    result = finetune(
        [texts[i] for i in fit_idx],
        [labels[i] for i in fit_idx],
        base,
        config=cfg,
        soft_targets=soft,
    )
    out: dict[str, Any] = {"name": spec["name"], "seconds": result.seconds}
    test_texts = [r["text"] for r in test]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out["test"] = predict_logits(result, base, test_texts, device=device).astype(np.float32)
    if "held_idx" in spec:
        held = [texts[i] for i in spec["held_idx"]]
        out["held"] = predict_logits(result, base, held, device=device).astype(np.float32)
        out["held_idx"] = spec["held_idx"]
    if spec.get("keep"):
        write_run(result, Path(spec["out"]), spec["name"])
    del torch
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--oof-seeds", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--oof-seed0", type=Path, help="seed-0 out-of-fold logits from before")
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--keep", nargs="*", default=["full0", "student0"])
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    from sklearn.model_selection import StratifiedKFold

    train, test = split(load_rows(args.data))
    labels = np.array([r["label"] for r in train])
    classes = np.array(sorted(set(labels)))
    test_labels = np.array([r["label"] for r in test])
    common = {
        "data": str(args.data),
        "base": str(args.base),
        "out": str(args.out),
        "epochs": args.epochs,
    }
    folds = list(
        StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=0).split(labels, labels)
    )
    jobs = [
        {**common, "name": f"full{s}", "seed": s, "keep": f"full{s}" in args.keep}
        for s in range(args.seeds)
    ]
    for s in args.oof_seeds:
        for k, (fit_idx, held_idx) in enumerate(folds):
            jobs.append(
                {
                    **common,
                    "name": f"oof{s}_fold{k}",
                    "seed": s,
                    "fit_idx": fit_idx.tolist(),
                    "held_idx": held_idx.tolist(),
                }
            )
    results: dict[str, Any] = {"accuracy": {}, "seconds": {}}
    oof = {s: np.full((len(labels), len(classes)), np.nan, np.float32) for s in args.oof_seeds}

    def collect(done: dict[str, Any]) -> None:
        name = done["name"]
        np.save(args.out / f"{name}_test.npy", done["test"])
        acc = float((classes[done["test"].argmax(1)] == test_labels).mean())
        results["accuracy"][name] = acc
        results["seconds"][name] = round(done["seconds"], 1)
        if "held" in done:
            seed = int(name[3 : name.index("_")])
            oof[seed][done["held_idx"]] = done["held"]
        log(f"{name}: test accuracy {acc:.4f} in {done['seconds']:.0f}s")
        (args.out / "results.json").write_text(json.dumps(results, indent=2))

    context = mp.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        for done in pool.map(_job, jobs):
            collect(done)
        for s, logits in oof.items():
            np.save(args.out / f"oof{s}.npy", logits)
        teachers = [oof[s] for s in args.oof_seeds]
        if args.oof_seed0 and args.oof_seed0.exists():
            teachers.append(np.load(args.oof_seed0))
        soft = np.mean([softmax(t) for t in teachers], axis=0)
        results["teacher_oof_accuracy"] = float((classes[soft.argmax(1)] == labels).mean())
        log(
            f"teacher (mean of {len(teachers)} OOF) accuracy on the 80 %: "
            f"{results['teacher_oof_accuracy']:.4f}"
        )
        np.save(args.out / "soft.npy", soft.astype(np.float32))
        students = [
            {
                **common,
                "name": f"student{s}",
                "seed": 100 + s,
                "soft": str(args.out / "soft.npy"),
                "keep": f"student{s}" in args.keep,
            }
            for s in range(args.students)
        ]
        for done in pool.map(_job, students):
            collect(done)
    np.savez_compressed(
        args.out / "logits.npz",
        **{p.stem: np.load(p) for p in sorted(args.out.glob("*.npy"))},
    )
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    log("done")


if __name__ == "__main__":
    main()
