"""The training loop (LoRA through peft, or every weight) and greedy validation.

A plain loop rather than transformers' Trainer: the examples are a few hundred to a few
thousand short sequences, the loop is forty lines, and it reports each step (loss, elapsed,
an ETA) to whoever shows progress, a terminal or the TUI's background job.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from tui.core.learning.llm import classify
from tui.core.learning.llm.data import Example, encode, pad_batch, prompt
from tui.core.learning.llm.errors import FinetuneError, require

Method = Literal["lora", "full"]
Objective = Literal["generate", "classify"]
"""generate: write ` <label><eos>` (full-vocabulary cross-entropy); classify: put the
probability on the label's own reserved token among the labels' (`label_tokens`)."""
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear layer of a Gemma/Llama block: r=16 there is 3.8 M weights on Gemma 3 270M."""
DEFAULT_LR: dict[Method, float] = {"lora": 2e-4, "full": 2e-5}


@dataclass(frozen=True, slots=True)
class TrainOptions:
    """Hyper-parameters, fixed before training (none is tuned on the validation split)."""

    method: Method = "lora"
    objective: Objective = "generate"
    epochs: int = 1
    max_steps: int | None = None
    """Stop after this many optimiser steps, whatever `epochs` says."""
    batch_size: int = 8
    learning_rate: float | None = None
    """None: 2e-4 for LoRA, 2e-5 for a full fine-tune."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    warmup_fraction: float = 0.1
    max_tokens: int = 256
    seed: int = 13
    distill_weight: float = 0.7
    """classify: the share of the loss given to a teacher's distribution, for the examples
    that carry one (`label_probs`); 0.7 is what lifted the MiniLM student from mpnet
    teachers (benchmarks/RESULTS.md, 4b)."""

    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.method]

    def total_steps(self, train_size: int) -> int:
        per_epoch = math.ceil(train_size / self.batch_size)
        total = per_epoch * self.epochs
        return max(1, min(total, self.max_steps) if self.max_steps is not None else total)


@dataclass(frozen=True, slots=True)
class Progress:
    """One training step, as a progress display shows it."""

    step: int
    total_steps: int
    loss: float
    elapsed_s: float

    @property
    def eta_s(self) -> float:
        """Seconds left at the mean pace so far."""
        return self.elapsed_s / self.step * (self.total_steps - self.step) if self.step else 0.0

    def line(self) -> str:
        return (
            f"step {self.step}/{self.total_steps}  loss {self.loss:.4f}"
            f"  {self.elapsed_s:.0f} s  ETA {self.eta_s:.0f} s"
        )


ProgressCallback = Callable[[Progress], None]


@dataclass(slots=True)
class TrainResult:
    model: Any
    """The trained model: a peft wrapper for LoRA (merge it before export)."""
    steps: int
    seconds: float
    trainable_parameters: int
    losses: list[float] = field(default_factory=list)


def choose_device(wanted: str) -> str:
    """`auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without one is an error.

    Raises:
        FinetuneError: CUDA was asked for and is not there, or the name is unknown.
    """
    require("torch")
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise FinetuneError("--device cuda: torch sees no CUDA GPU (or is a CPU-only build)")
    if wanted not in ("cpu", "cuda"):
        raise FinetuneError(f"--device {wanted}: use auto, cpu or cuda")
    return wanted


def _wrap(model: Any, options: TrainOptions, label_tokens: Sequence[int] = ()) -> Any:
    """Every weight trainable (full), or LoRA adapters; under LoRA the labels' own token rows
    (classify) train too, through peft's trainable tokens, which follow the tied output layer
    and are merged with the adapters."""
    if options.method == "full":
        model.requires_grad_(True)
        return model
    require("peft")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=list(LORA_TARGETS),
        trainable_token_indices={"embed_tokens": list(label_tokens)} if label_tokens else None,
    )
    return get_peft_model(model, config)


def _schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    options: TrainOptions,
    *,
    device: str,
    on_progress: ProgressCallback | None = None,
    label_tokens: Mapping[str, int] | None = None,
) -> TrainResult:
    """Fine-tune `model` on the examples; returns it trained (LoRA: still wrapped).

    `label_tokens` (each label's reserved token) is what the classify objective learns to
    answer; its rows start at the label names' mean embedding (`classify.init_rows`).
    """
    require("torch")
    import torch

    if not examples:
        raise FinetuneError("no training examples")
    classifying = options.objective == "classify"
    if classifying and not label_tokens:
        raise FinetuneError("--objective classify needs a token for each label")
    if not classifying:
        classify.refuse_teachers(examples)
    torch.manual_seed(options.seed)
    rng = random.Random(options.seed)
    if classifying and label_tokens:
        classify.init_rows(model, tokenizer, label_tokens)
    model = _wrap(model, options, list(label_tokens.values()) if label_tokens else ())
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options.lr(), weight_decay=0.0)
    total = options.total_steps(len(examples))
    warmup = max(1, round(total * options.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _schedule(step, total, warmup)
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded: Sequence[Any]
    if classifying and label_tokens:
        encoded = classify.encode_all(tokenizer, examples, label_tokens, options.max_tokens)
        token_ids = torch.tensor(list(label_tokens.values()), device=device)
    else:
        encoded = [encode(tokenizer, e, options.max_tokens) for e in examples]
    result = TrainResult(model, 0, 0.0, sum(p.numel() for p in params))
    started = time.perf_counter()
    order: list[int] = []
    while result.steps < total:
        if not order:
            order = list(range(len(encoded)))
            rng.shuffle(order)
        batch = [encoded[i] for i in order[: options.batch_size]]
        del order[: options.batch_size]
        if classifying:
            rows = cast(Sequence[classify.Encoded], batch)
            targets = torch.tensor([target for _ids, target, _t in rows], device=device)
            prompts = [ids for ids, _target, _t in rows]
            teacher = classify.batch_teacher(rows, len(token_ids), device)
            loss = classify.loss(
                model, prompts, targets, token_ids, pad_id, teacher, options.distill_weight
            )
        else:
            ids, mask, labels = (
                torch.tensor(part, device=device) for part in pad_batch(cast(Any, batch), pad_id)
            )
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise FinetuneError(f"the loss diverged at step {result.steps + 1}: lower the rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.steps += 1
        result.losses.append(float(loss.detach()))
        result.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(Progress(result.steps, total, result.losses[-1], result.seconds))
    model.eval()
    return result


def predict(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    device: str,
    max_new_tokens: int = 16,
    batch_size: int = 16,
) -> list[str]:
    """Greedy free-text answers (first line, stripped), as a served model would give them."""
    require("torch")
    import torch

    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    answers: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            chunk = [prompt(t) for t in texts[start : start + batch_size]]
            batch = tokenizer(chunk, return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
            for row in out[:, batch["input_ids"].shape[1] :]:
                text = tokenizer.decode(row, skip_special_tokens=True)
                answers.append(text.strip().split("\n", 1)[0].strip())
    finally:
        tokenizer.padding_side = side
    return answers


def macro_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """F1 averaged over the gold labels, each weighing the same (an answer outside them is
    wrong for its ticket's label and a false positive of none), so a rare queue counts.

    The product's own counts (`tui.core.scoring`), not scikit-learn's: on the H200 machine
    importing scipy into a process that holds llama.cpp's CUDA build crashes it (either
    order; benchmarks/gemma_device/NOTES.md, run 8), and the fine-tune and its benchmarks
    score answers in such processes.
    """
    if not gold:
        return 0.0
    from tui.core.scoring import score_pairs

    return score_pairs(predicted, gold).macro_f1 or 0.0


def accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Share of exact label matches (an answer outside the taxonomy counts as wrong)."""
    if not gold:
        return 0.0
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
