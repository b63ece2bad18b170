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
import math
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.banking77 import load_rows, split
from tui.core.learning.finetuned_kind import softmax


def _train(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel

    from tui.core.learning.minilm_finetune import pad, warmup_then_linear

    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model_dir = Path(spec["model"])
    train, test = split(load_rows(Path(spec["data"])))
    if spec.get("limit"):
        train, test = train[: spec["limit"]], test[: spec["limit"]]
    classes = sorted({r["label"] for r in train})
    index = {c: i for i, c in enumerate(classes)}
    config = AutoConfig.from_pretrained(model_dir)
    encoder = AutoModel.from_config(config)
    state = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k and "pooler" not in k]
    if missing:
        raise RuntimeError(f"weights missing: {missing[:5]}")
    head = torch.nn.Linear(config.hidden_size, len(classes))
    encoder.to(device)
    head.to(device)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(128)
    pad_id = int(config.pad_token_id or 0)

    def batch(texts: list[str]) -> tuple[Any, Any]:
        out, mask = pad([e.ids for e in tokenizer.encode_batch(texts)], pad_id)
        return torch.from_numpy(out).to(device), torch.from_numpy(mask).to(device)

    def forward(texts: list[str]) -> Any:
        ids, mask = batch(texts)
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return head(torch.nn.functional.dropout(pooled, 0.1, encoder.training))

    texts = [r["text"] for r in train]
    y = torch.tensor([index[r["label"]] for r in train], device=device)
    epochs, batch_size = spec["epochs"], 32
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder.parameters(), "lr": spec["lr"], "weight_decay": 0.01},
            {"params": head.parameters(), "lr": 2e-3, "weight_decay": 0.0},
        ]
    )
    total = epochs * math.ceil(len(texts) / batch_size)
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_then_linear(step, total, warmup)
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    started = time.perf_counter()
    for _ in range(epochs):
        encoder.train()
        order = rng.permutation(len(texts))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = forward([texts[i] for i in chosen])
                loss = loss_fn(logits.float(), y[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                list(encoder.parameters()) + list(head.parameters()), 1.0
            )
            optimizer.step()
            scheduler.step()
    encoder.eval()

    def predict(batch_texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(batch_texts), 256):
                out.append(forward(batch_texts[start : start + 256]).float().cpu().numpy())
        return np.concatenate(out)

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
