"""Fine-tuned weights cut into parts, for the lent GPU machine's 16 MiB file limit only.

The product writes and reads whole files (`finetuned.safetensors`); the device tool that runs
these benchmarks returns files of at most 16 MiB, so a GPU run cuts its weights into
`{stem}.safetensors.partNN` (`write_run`) and the local benchmark joins them back into a
whole-file folder (`joined`) before handing it to the product.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tui.core.learning.minilm_finetune import Finetuned

PART = 15 * 1024 * 1024


def write_parts(weights: dict[str, np.ndarray], out: Path, stem: str) -> list[str]:
    """Save fp16 safetensors and cut it into parts that the device tool can return."""
    from safetensors.numpy import save

    blob = save({k: v.astype(np.float16) for k, v in weights.items()})
    names = []
    for i, start in enumerate(range(0, len(blob), PART)):
        name = f"{stem}.part{i:02d}"
        (out / name).write_bytes(blob[start : start + PART])
        names.append(name)
    return names


def write_run(result: Finetuned, out: Path, stem: str = "finetuned") -> list[str]:
    """A fine-tune as the GPU run returns it: `{stem}.safetensors.partNN` (encoder and
    classifier head, fp16) and `{stem}.json` (labels, BERT config, hyper-parameters)."""
    weights = dict(result.weights)
    weights["classifier.weight"], weights["classifier.bias"] = result.head
    parts = write_parts(weights, out, f"{stem}.safetensors")
    meta = {
        "classes": result.classes,
        "bert": result.config["bert"],
        "finetune": result.config["finetune"],
    }
    (out / f"{stem}.json").write_text(json.dumps(meta))
    return parts


def joined(folder: Path, into: Path, stem: str = "finetuned") -> Path:
    """`folder` as the product reads it: a whole `finetuned.safetensors` beside its
    `finetuned.json` (and tokenizer.json when the run kept one). A folder that already has
    the whole file is returned as it is."""
    if (folder / f"{stem}.safetensors").exists():
        return folder
    parts = sorted(folder.glob(f"{stem}.safetensors.part*"))
    if not parts:
        return folder
    into.mkdir(parents=True, exist_ok=True)
    with (into / "finetuned.safetensors").open("wb") as whole:
        for part in parts:
            whole.write(part.read_bytes())
    shutil.copyfile(folder / f"{stem}.json", into / "finetuned.json")
    if (folder / "tokenizer.json").exists():
        shutil.copyfile(folder / "tokenizer.json", into / "tokenizer.json")
    return into
