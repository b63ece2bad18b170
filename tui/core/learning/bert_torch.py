"""MiniLM (BERT) as one torch module over Hugging Face's weight names, and its ONNX export.

The same module is fine-tuned (`minilm_finetune`) and exported with `torch.onnx.export`, so
what onnxruntime serves is the graph that was trained, not a second copy written by hand. It
is functional over a flat dict of `BertModel` state-dict names, which keeps it free of any
transformers version. Only training and export need torch; serving needs onnxruntime only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

Head: TypeAlias = tuple[np.ndarray, np.ndarray]
"""A classification head as numpy arrays: its weight (classes x hidden) and its bias."""
OPSET = 17
"""LayerNormalization is a standard op from 17 on; every onnxruntime of recent years reads it."""


@dataclass(frozen=True)
class BertShape:
    """The few numbers of a BERT config that the module needs."""

    hidden: int
    heads: int
    layers: int
    eps: float = 1e-12

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BertShape:
        return cls(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
        )


def bert_module(
    weights: Mapping[str, np.ndarray], shape: BertShape, classes: int, *, head: Head | None = None
) -> Any:
    """A torch module: `forward(ids, mask) -> (mean-pooled embedding, head logits)`.

    The head is freshly initialised (std 0.02) unless `head` (weight [classes, hidden], bias)
    is given, as when a trained model is rebuilt for export.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    class FunctionalBert(nn.Module):  # type: ignore[misc,unused-ignore]
        """BERT over a flat dict of Hugging Face-named parameters, with a linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.params = nn.ParameterDict(
                {
                    k.replace(".", "__"): nn.Parameter(torch.from_numpy(np.array(v)))
                    for k, v in weights.items()
                }
            )
            self.head = nn.Linear(shape.hidden, classes)
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)
            self.dropout = 0.1

        def p(self, key: str) -> Any:
            return self.params[key.replace(".", "__")]

        def ln(self, x: Any, prefix: str) -> Any:
            return F.layer_norm(
                x, (shape.hidden,), self.p(prefix + ".weight"), self.p(prefix + ".bias"), shape.eps
            )

        def lin(self, x: Any, prefix: str) -> Any:
            return F.linear(x, self.p(prefix + ".weight"), self.p(prefix + ".bias"))

        def forward(self, ids: Any, mask: Any) -> tuple[Any, Any]:
            batch, tokens = ids.shape
            heads, hd = shape.heads, shape.hidden // shape.heads
            drop = self.dropout if self.training else 0.0
            x = (
                F.embedding(ids, self.p("embeddings.word_embeddings.weight"))
                + self.p("embeddings.position_embeddings.weight")[:tokens]
                + self.p("embeddings.token_type_embeddings.weight")[0]
            )
            x = F.dropout(self.ln(x, "embeddings.LayerNorm"), drop, self.training)
            maskf = mask.to(x.dtype)
            bias = ((1.0 - maskf) * -10000.0)[:, None, None, :]
            for i in range(shape.layers):
                pre = f"encoder.layer.{i}."

                def split(t: Any) -> Any:
                    return t.view(batch, tokens, heads, hd).transpose(1, 2)

                q = split(self.lin(x, pre + "attention.self.query"))
                k = split(self.lin(x, pre + "attention.self.key"))
                v = split(self.lin(x, pre + "attention.self.value"))
                ctx = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop
                )
                ctx = ctx.transpose(1, 2).reshape(batch, tokens, shape.hidden)
                attended = F.dropout(
                    self.lin(ctx, pre + "attention.output.dense"), drop, self.training
                )
                x = self.ln(attended + x, pre + "attention.output.LayerNorm")
                inner = F.gelu(self.lin(x, pre + "intermediate.dense"))
                out = F.dropout(self.lin(inner, pre + "output.dense"), drop, self.training)
                x = self.ln(out + x, pre + "output.LayerNorm")
            pooled = (x * maskf[:, :, None]).sum(1) / maskf.sum(1, keepdim=True).clamp(min=1e-9)
            return pooled, self.head(F.dropout(pooled, drop, self.training))

        def numpy_weights(self) -> tuple[dict[str, np.ndarray], Head]:
            encoder = {
                k.replace("__", "."): v.detach().float().cpu().numpy()
                for k, v in self.params.items()
            }
            trained = (
                self.head.weight.detach().float().cpu().numpy(),
                self.head.bias.detach().float().cpu().numpy(),
            )
            return encoder, trained

    model = FunctionalBert()
    if head is not None:
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(np.asarray(head[0], dtype=np.float32)))
            model.head.bias.copy_(torch.from_numpy(np.asarray(head[1], dtype=np.float32)))
    return model


def export_onnx(
    weights: Mapping[str, np.ndarray], shape: BertShape, path: Path, *, head: Head | None = None
) -> Path:
    """Write the encoder as fp32 ONNX with `torch.onnx.export`.

    Inputs `input_ids` and `attention_mask` (int64, batch x tokens, any sizes); outputs the
    mean-pooled `embedding` and, when a head is given, its `logits`.
    """
    import torch
    from torch import nn

    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    classes = 1 if head is None else int(np.asarray(head[0]).shape[0])
    model = bert_module(f32, shape, classes, head=head).eval()

    class Served(nn.Module):  # type: ignore[misc,unused-ignore]
        """The outputs the encoder directory promises: no logits without a head."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, ids: Any, mask: Any) -> Any:
            embedding, logits = self.bert(ids, mask)
            return embedding if head is None else (embedding, logits)

    outputs = ["embedding"] if head is None else ["embedding", "logits"]
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    axes.update({name: {0: "batch"} for name in outputs})
    sample = torch.ones((2, 3), dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is the older of torch's two; the newer one
        # needs onnxscript, a dependency the product does not carry for one export a training.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Served().eval(),
            (sample, sample),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def random_bert(
    shape: BertShape, vocab: int, *, positions: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """A small random BERT state dict, for tests of the export and the encoder."""
    rng = np.random.default_rng(seed)
    h, inner = shape.hidden, shape.hidden * 4

    def r(*dims: int) -> np.ndarray:
        return (rng.standard_normal(dims) * 0.2).astype(np.float32)

    out: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": r(vocab, h),
        "embeddings.position_embeddings.weight": r(positions, h),
        "embeddings.token_type_embeddings.weight": r(2, h),
        "embeddings.LayerNorm.weight": 1 + r(h),
        "embeddings.LayerNorm.bias": r(h),
    }
    for i in range(shape.layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            out[p + f"attention.self.{part}.weight"] = r(h, h)
            out[p + f"attention.self.{part}.bias"] = r(h)
        out[p + "attention.output.dense.weight"] = r(h, h)
        out[p + "attention.output.dense.bias"] = r(h)
        out[p + "attention.output.LayerNorm.weight"] = 1 + r(h)
        out[p + "attention.output.LayerNorm.bias"] = r(h)
        out[p + "intermediate.dense.weight"] = r(inner, h)
        out[p + "intermediate.dense.bias"] = r(inner)
        out[p + "output.dense.weight"] = r(h, inner)
        out[p + "output.dense.bias"] = r(h)
        out[p + "output.LayerNorm.weight"] = 1 + r(h)
        out[p + "output.LayerNorm.bias"] = r(h)
    return out
