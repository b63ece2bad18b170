"""Fine-tune a MiniLM (BERT) sentence encoder plus a linear head for ticket classification.

Only training needs torch: the result is a plain dict of numpy weights, which
`onnx_encoder.export_encoder` exports (through the same torch module, `bert_torch`) to the
int8 ONNX graph that onnxruntime serves without torch. It runs on a GPU when torch sees one
(minutes) and on the CPU otherwise (about 10 minutes for 8,000 tickets on two cores).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.bert_torch import BertShape, Head, bert_module
from tui.core.learning.errors import TrainingError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters fixed in advance (not tuned on the evaluation split)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: float = 0.1
    label_smoothing: float = 0.1
    dropout: float = 0.1
    max_length: int = 128
    seed: int = 0
    distill_weight: float = 0.5
    """Share of the loss given to soft targets, when `finetune` is handed any."""
    max_steps: int | None = None
    """Stop after this many optimiser steps (the schedule shrinks to fit): a quick check."""


def resolve_device(device: str | None) -> str:
    """`auto` (or None) is CUDA when torch sees a GPU, else the CPU; `cuda:N` picks a GPU.

    Raises:
        TrainingError: An unknown device, or `cuda` where torch sees no GPU.
    """
    import torch

    wanted = device or "auto"
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return "cpu"
    if wanted == "cuda" or wanted.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {wanted}: torch sees no GPU (use --device auto or cpu)")
        return wanted
    raise TrainingError(f"unknown device {wanted!r}; choose one of {', '.join(DEVICES)}")


def load_base(model_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Weights (as float32 numpy) and config.json of a BERT-family model directory."""
    from safetensors.numpy import load_file

    weights = {
        k: v.astype(np.float32)
        for k, v in load_file(str(model_dir / "model.safetensors")).items()
        if not k.endswith("position_ids")
    }
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    config = json.loads((model_dir / "config.json").read_text())
    return weights, config


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids per text (truncated) and their lengths."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    ids = [e.ids for e in tokenizer.encode_batch(list(texts))]
    return ids, [len(i) for i in ids]


def pad(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence of the batch (dynamic padding)."""
    width = max(len(i) for i in ids)
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return out, mask


def warmup_then_linear(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


@dataclass
class Prepared:
    """What every fine-tune starts from: the device, the base weights, the labels as class
    indices (sorted names) and the tickets as token ids, with the seeded generator."""

    device: str
    base: dict[str, np.ndarray]
    bert_config: dict[str, Any]
    classes: list[str]
    y: np.ndarray
    ids: list[list[int]]
    rng: np.random.Generator


def prepare(
    texts: Sequence[str],
    labels: Sequence[str],
    base_dir: Path,
    *,
    max_length: int,
    seed: int,
    device: str | None,
) -> Prepared:
    """Seed torch and numpy, resolve the device, load the base and tokenise the tickets."""
    import torch
    from tokenizers import Tokenizer

    torch.manual_seed(seed)
    base, bert_config = load_base(base_dir)
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    ids, _ = tokenize(tokenizer, texts, max_length)
    return Prepared(
        device=resolve_device(device),
        base=base,
        bert_config=bert_config,
        classes=classes,
        y=np.array([index[label] for label in labels], dtype=np.int64),
        ids=ids,
        rng=np.random.default_rng(seed),
    )


@dataclass
class Finetuned:
    """A fine-tuned encoder's weights, its head and how training went."""

    weights: dict[str, np.ndarray]
    head: Head
    classes: list[str]
    config: dict[str, Any]
    log: list[dict[str, float]]
    seconds: float
    steps: int = 0
    """Optimiser steps taken (fewer than the epochs would take under `max_steps`)."""


def finetune(
    texts: Sequence[str],
    labels: Sequence[str],
    base_dir: Path,
    *,
    config: FinetuneConfig | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    soft_targets: np.ndarray | None = None,
) -> Finetuned:
    """Fine-tune the whole encoder and a linear head with cross-entropy (label smoothing).

    `soft_targets` (texts x classes probabilities, columns in sorted label order) turns this
    into distillation: the loss mixes the hard labels with the teacher's distribution, which
    carries which intents a ticket could also be, something a one-hot label cannot say.
    """
    import torch

    cfg = config or FinetuneConfig()
    started = time.perf_counter()
    prep = prepare(texts, labels, base_dir, max_length=cfg.max_length, seed=cfg.seed, device=device)
    device, base, bert_config, classes = prep.device, prep.base, prep.bert_config, prep.classes
    rng, y, ids = prep.rng, prep.y, prep.ids

    model = bert_module(base, BertShape.from_config(bert_config), len(classes)).to(device)
    model.dropout = cfg.dropout
    head_params = list(model.head.parameters())
    no_decay = [p for k, p in model.params.items() if "LayerNorm" in k or k.endswith("bias")]
    decay = [p for k, p in model.params.items() if not ("LayerNorm" in k or k.endswith("bias"))]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
            {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
            {"params": head_params, "weight_decay": 0.0, "lr": cfg.head_lr},
        ]
    )
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = max(1, min(total, cfg.max_steps))
    warmup = max(1, int(total * cfg.warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_then_linear(step, total, warmup)
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    if soft_targets is not None and soft_targets.shape != (len(ids), len(classes)):
        raise ValueError(f"soft targets {soft_targets.shape} != {(len(ids), len(classes))}")
    soft = None if soft_targets is None else np.asarray(soft_targets, dtype=np.float32)
    use_bf16 = device.startswith("cuda")
    history: list[dict[str, float]] = []
    step = 0
    for epoch in range(cfg.epochs):
        if step >= total:
            break
        model.train()
        order = rng.permutation(len(ids))
        running = 0.0
        taken = 0
        for start in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            chosen = order[start : start + cfg.batch_size]
            batch_ids, batch_mask = pad([ids[i] for i in chosen])
            t_ids = torch.from_numpy(batch_ids).to(device)
            t_mask = torch.from_numpy(batch_mask).to(device)
            target = torch.from_numpy(y[chosen]).to(device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                _, logits = model(t_ids, t_mask)
                loss = loss_fn(logits.float(), target)
                if soft is not None:
                    teacher = torch.from_numpy(soft[chosen]).to(device)
                    soft_loss = -(teacher * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
                    w = cfg.distill_weight
                    loss = (1 - w) * loss + w * soft_loss.mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += float(loss.detach())
            step += 1
            taken += 1
        entry = {
            "epoch": epoch + 1,
            "loss": running / max(1, taken),
            "seconds": time.perf_counter() - started,
        }
        history.append(entry)
        if log:
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {entry['loss']:.4f} {entry['seconds']:.1f}s")
    model.eval()
    weights, head = model.numpy_weights()
    return Finetuned(
        weights=weights,
        head=head,
        classes=classes,
        config={"bert": bert_config, "finetune": asdict(cfg), "device": device},
        log=history,
        seconds=time.perf_counter() - started,
        steps=step,
    )


def predict_logits(
    result: Finetuned, base_dir: Path, texts: Sequence[str], *, device: str = "cpu"
) -> np.ndarray:
    """Logits of the torch model (to check the ONNX export against)."""
    import torch
    from tokenizers import Tokenizer

    shape = BertShape.from_config(result.config["bert"])
    model = bert_module(result.weights, shape, len(result.classes), head=result.head)
    model = model.to(device).eval()
    tokenizer = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    ids, _ = tokenize(tokenizer, texts, int(result.config["finetune"]["max_length"]))
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), 256):
            batch_ids, batch_mask = pad(ids[start : start + 256])
            _, logits = model(
                torch.from_numpy(batch_ids).to(device), torch.from_numpy(batch_mask).to(device)
            )
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out)
