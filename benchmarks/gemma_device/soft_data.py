"""Teachers' soft labels into a `finetune --data` file: each row's `label_probs`.

`benchmarks.teacher_device --transfer aug.jsonl` writes `soft.npy`: one row per training text
(the 80 % in split order, then the perturbed copies of `aug.jsonl`, in order), one column per
label in sorted order, the teachers' mean distribution at temperature 2. This joins the rows to
their texts and labels as the JSONL rows `triagedesk finetune --objective classify` reads
(`label_probs`: the classify objective then learns the mix of label and distribution).
Shares under 1e-5 are left out (the reader renormalises). With `--logits` (the teachers'
`teacher_logits.npz`) and `--test`, it also prints each teacher's and the teachers' mean
accuracy on the held-out 20 %: the ceiling the student is taught from.

    python3 benchmarks/gemma_device/soft_data.py --train train80.jsonl --transfer aug.jsonl \\
        --soft soft.npy --out train80soft.jsonl [--logits teacher_logits.npz --test test20.jsonl]
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tui.core.learning.finetuned_kind import softmax  # noqa: E402

SMALLEST = 1e-5


def rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--transfer", type=Path, required=True)
    parser.add_argument("--soft", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logits", type=Path)
    parser.add_argument("--test", type=Path)
    args = parser.parse_args()
    train, extra = rows(args.train), rows(args.transfer)
    labels = sorted({r["label"] for r in train})
    soft = np.load(args.soft)
    if soft.shape != (len(train) + len(extra), len(labels)):
        raise SystemExit(f"{args.soft}: shape {soft.shape}, expected {len(train) + len(extra)}")
    agree = 0
    with args.out.open("w") as out:
        for row, probs in zip(train + extra, soft, strict=True):
            kept = {labels[i]: round(float(p), 6) for i, p in enumerate(probs) if p >= SMALLEST}
            agree += labels[int(probs.argmax())] == row["label"]
            out.write(json.dumps({"text": row["text"], "label": row["label"], "label_probs": kept}))
            out.write("\n")
    summary: dict[str, object] = {
        "rows": len(train) + len(extra),
        "teacher_agrees_with_label": round(agree / len(soft), 4),
    }
    if args.logits and args.test:
        gold = np.array([r["label"] for r in rows(args.test)])
        logits = np.load(args.logits)
        names = np.array(labels)
        seeds = {k: float((names[v.argmax(1)] == gold).mean()) for k, v in logits.items()}
        mean = np.mean([softmax(v) for v in logits.values()], axis=0)
        summary["teachers_test"] = seeds
        summary["teachers_mean_test"] = float((names[mean.argmax(1)] == gold).mean())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
