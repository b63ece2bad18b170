"""A sentence encoder served by onnxruntime + tokenizers: no torch at inference.

An encoder directory holds `model.onnx` (int8 by default), `tokenizer.json` and
`encoder.json` (max length, classes of the optional head). It is written once, where the
fine-tune ran (torch exports the graph, onnxruntime quantises it), and read by `OnnxEncoder`.
Texts are tokenised, sorted by length and padded per batch only to that batch's longest
text, which on short tickets is most of the speed on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.bert_torch import BertShape

ENCODER_FILES = ("model.onnx", "tokenizer.json", "encoder.json")


def export_encoder(
    weights: Mapping[str, Any],
    bert_config: Mapping[str, Any],
    tokenizer_json: Path,
    out_dir: Path,
    *,
    head: tuple[Any, Any] | None = None,
    classes: Sequence[str] = (),
    max_length: int = 128,
    int8: bool = True,
) -> Path:
    """Write an encoder directory from numpy weights (fine-tuned or not); needs torch."""
    from tui.core.learning.bert_torch import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    shape = BertShape.from_config(bert_config)
    fp32 = out_dir / "model.fp32.onnx"
    export_onnx(weights, shape, fp32, head=head)
    if int8:
        quantize_int8(fp32, out_dir / "model.onnx")
        fp32.unlink()
    else:
        fp32.replace(out_dir / "model.onnx")
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    meta = {
        "max_length": max_length,
        "classes": list(classes),
        "hidden": shape.hidden,
        "int8": int8,
    }
    (out_dir / "encoder.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def is_weights_dir(directory: Path) -> bool:
    """A fine-tune's weights folder: `finetuned.safetensors` and its `finetuned.json`."""
    directory = Path(directory)
    return (directory / "finetuned.json").exists() and (
        directory / "finetuned.safetensors"
    ).exists()


def encoder_from_weights_dir(folder: Path, out: Path, *, tokenizer: Path | None = None) -> Path:
    """The int8 ONNX encoder directory from a fine-tune's weights (fp16 or fp32 safetensors).

    Raises:
        ValueError: The weights file is damaged (truncated, not safetensors).
        FileNotFoundError: No tokenizer.json beside the weights and none given.
    """
    from safetensors.numpy import load

    folder = Path(folder)
    meta = json.loads((folder / "finetuned.json").read_text())
    blob = (folder / "finetuned.safetensors").read_bytes()
    try:
        loaded = load(blob)
    except Exception as exc:  # safetensors' own error type: a truncated or missing part
        raise ValueError(f"{folder}: damaged weights ({exc})") from None
    weights = {k: v.astype(np.float32) for k, v in loaded.items()}
    head = (weights.pop("classifier.weight"), weights.pop("classifier.bias"))
    tokenizer = tokenizer or folder / "tokenizer.json"
    if not tokenizer.exists():
        raise FileNotFoundError(f"{folder}: no tokenizer.json (copy the base model's beside it)")
    return export_encoder(
        weights,
        meta["bert"],
        tokenizer,
        out,
        head=head,
        classes=meta["classes"],
        max_length=int(meta.get("finetune", {}).get("max_length", 128)),
    )


def quantize_int8(
    source: Path,
    target: Path,
    *,
    op_types: Sequence[str] = ("MatMul", "Gather"),
    nodes: Sequence[str] | None = None,
) -> Path:
    """Dynamic int8 quantisation of the MatMul weights: ~4x smaller, ~2x faster on CPUs.

    `op_types` and `nodes` narrow what is quantised (the MPNet teacher keeps some products
    fp32: `pool_teacher.quantize_teacher`); by default every MatMul and Gather weight.

    Per output channel, not per tensor: one scale for a whole 384 x 1536 matrix let a few
    large weights flatten the rest, which cost a fine-tuned MiniLM 0.15-0.5 points of
    Banking77 accuracy; per-channel scales keep it within 0.05 of fp32 at the same speed
    (benchmarks/CHANGES.md).
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime logs a generic "consider pre-processing" warning on the root logger, which
    # `triagedesk train` would print to the agent; it does not apply to this graph.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(op_types),
            nodes_to_quantize=None if nodes is None else list(nodes),
            per_channel=True,
        )
    finally:
        root.setLevel(level)
    return target


class OnnxEncoder:
    """Embeddings (and head logits) for texts; the session loads on first use and is not
    pickled, so a model holding an encoder saves as a small joblib plus this directory."""

    def __init__(self, directory: Path, *, threads: int | None = None) -> None:
        self.directory = Path(directory)
        self.threads = threads
        meta = json.loads((self.directory / "encoder.json").read_text())
        self.max_length = int(meta["max_length"])
        self.classes: list[str] = list(meta.get("classes", []))
        self._session: Any = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        state["_tokenizer"] = None
        return state

    def _ensure(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(self.directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(self.directory / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length)
        self._tokenizer = tokenizer

    @property
    def outputs(self) -> list[str]:
        self._ensure()
        return [o.name for o in self._session.get_outputs()]

    def run(self, texts: Sequence[str], *, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output of the graph for every text, in the order given."""
        self._ensure()
        names = self.outputs
        if not texts:
            return {name: np.zeros((0, 0), dtype=np.float32) for name in names}
        ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(i) for i in ids], kind="stable")
        parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            width = max(len(ids[i]) for i in chosen)
            batch = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.int64)
            for row, i in enumerate(chosen):
                batch[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            results = self._session.run(names, {"input_ids": batch, "attention_mask": mask})
            for name, value in zip(names, results, strict=True):
                parts[name].append(value)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return {name: np.concatenate(chunks)[inverse] for name, chunks in parts.items()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.run(texts)["embedding"]


def cached_encoder(
    weights_file: Path,
    name: str,
    max_length: int,
    write: Callable[[Path], object],
    say: Callable[[str], None],
    message: str,
) -> Path:
    """An encoder directory `write` makes from `weights_file`, made once and kept under the
    models folder as `{name}-{key}` (the key: the file's path, size, time and `max_length`).

    Written into a temporary sibling and renamed into place, so a reader never sees half a
    directory; when another process finished the same one first, its copy is used.
    """
    import hashlib
    import tempfile

    from tui.core import paths

    stat = weights_file.stat()
    key = hashlib.sha256(
        f"{weights_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{max_length}:1".encode()
    ).hexdigest()[:16]
    cached = paths.models_dir() / "encoders" / f"{name}-{key}"
    if (cached / "encoder.json").exists():
        return cached
    say(message)
    cached.parent.mkdir(parents=True, exist_ok=True)
    pending = Path(tempfile.mkdtemp(prefix=f".{cached.name}-", dir=cached.parent))
    try:
        write(pending)
        pending.replace(cached)
    except OSError:
        if not (cached / "encoder.json").exists():  # another process did not finish it first
            raise
    finally:
        shutil.rmtree(pending, ignore_errors=True)
    return cached
