"""SetFit's first stage: contrastive fine-tuning of the MiniLM sentence encoder (torch).

From a handful of labelled tickets, pairs are drawn: two tickets of one label should embed
close together, two of different labels apart. Fine-tuning the encoder on those pairs makes
the embedding space separate the team's labels, so that a linear head trained afterwards
on the same few tickets generalises far beyond what the frozen encoder allows. The encoder
is the module `bert_torch` exports to ONNX, so the result is served without torch.

SetFit regresses the cosine of randomly drawn pairs onto 1 or 0, one pair per two sentences
encoded. Here a batch is a few tickets of each of several labels and the loss is the
supervised contrastive one (Khosla et al., 2020) over every pair in it: the same sentences
encoded teach many more pairs a step, which is what two CPU cores' minutes allow. The word
embeddings stay frozen (a third of the weights, and most of the optimiser's work on a CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.bert_torch import BertShape, bert_module
from tui.core.learning.minilm_finetune import pad, prepare, warmup_then_linear


@dataclass(frozen=True)
class ContrastiveConfig:
    """Hyper-parameters fixed in advance (SetFit's defaults where it has one)."""

    steps: int = 60
    """Optimiser steps (fewer when `seconds` runs out first)."""
    batch_size: int = 32
    """Sentences a step."""
    per_label: int = 4
    """Tickets of each label in a batch (so batch_size / per_label labels)."""
    lr: float = 2e-5
    temperature: float = 0.07
    warmup: float = 0.1
    max_length: int = 64
    seed: int = 0
    seconds: float | None = None
    """Stop once training has run this long (the CPU's time budget); None: all steps."""


@dataclass
class Contrastive:
    """A contrastively fine-tuned encoder's weights and how training went."""

    weights: dict[str, np.ndarray]
    bert_config: dict[str, Any]
    steps: int
    seconds: float
    device: str


def _label_batches(
    y: np.ndarray, cfg: ContrastiveConfig, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A function drawing one batch: `per_label` tickets of each of some random labels."""
    members = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    usable = [m for m in members if len(m) >= 2]
    labels_per_batch = max(2, cfg.batch_size // cfg.per_label)

    def draw() -> np.ndarray:
        chosen = rng.choice(len(usable), min(labels_per_batch, len(usable)), replace=False)
        parts = [
            rng.choice(usable[c], min(cfg.per_label, len(usable[c])), replace=False) for c in chosen
        ]
        return np.concatenate(parts)

    return draw


def contrastive_finetune(
    texts: Sequence[str],
    labels: Sequence[str],
    base_dir: Path,
    *,
    config: ContrastiveConfig | None = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Contrastive:
    """Fine-tune the encoder so that tickets of a label embed together.

    `progress(step, total)` is called after each optimiser step.
    """
    import torch
    import torch.nn.functional as F

    cfg = config or ContrastiveConfig()
    started = time.perf_counter()
    prep = prepare(texts, labels, base_dir, max_length=cfg.max_length, seed=cfg.seed, device=device)
    device, bert_config, rng, y, ids = prep.device, prep.bert_config, prep.rng, prep.y, prep.ids

    model = bert_module(prep.base, BertShape.from_config(bert_config), 1).to(device)
    model.dropout = 0.0
    frozen = model.p("embeddings.word_embeddings.weight")
    frozen.requires_grad_(False)
    params = [p for p in model.params.values() if p is not frozen]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    total = max(1, cfg.steps)
    warmup = max(1, int(total * cfg.warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_then_linear(step, total, warmup)
    )
    use_bf16 = device.startswith("cuda")

    def embed(rows: np.ndarray) -> Any:
        batch_ids, batch_mask = pad([ids[i] for i in rows])
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            pooled, _ = model(
                torch.from_numpy(batch_ids).to(device), torch.from_numpy(batch_mask).to(device)
            )
        return F.normalize(pooled.float(), dim=-1)

    draw = _label_batches(y, cfg, rng)
    model.train()
    step = 0
    while step < total:
        if cfg.seconds is not None and time.perf_counter() - started > cfg.seconds:
            break
        rows = draw()
        z = embed(rows)
        sim = z @ z.T / cfg.temperature
        same = torch.from_numpy(y[rows][:, None] == y[rows][None, :]).to(device)
        eye = torch.eye(len(rows), dtype=torch.bool, device=device)
        sim = sim.masked_fill(eye, -math.inf)
        log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
        positives = same & ~eye
        loss = -(log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        if progress is not None:
            progress(step, total)
    model.eval()
    weights, _ = model.numpy_weights()
    return Contrastive(weights, bert_config, step, time.perf_counter() - started, device)
