"""The MPNet encoder (all-mpnet-base-v2) written as an ONNX graph from its weights: no torch.

The `fewshot` kind can use a larger encoder at training time only, to guess the labels of
the unlabelled pool (`pool_teacher`); the served model stays MiniLM. MPNet is BERT's layer
stack with three differences, all written here node by node as `onnx_graph` writes BERT:
no token-type embedding; absolute positions start after the padding index (2, 3, ... for
right-padded rows); and every layer adds a learnt per-head bias for each bucketed relative
distance between two tokens (T5-style buckets, shared by the layers). The bucket of every
(query, key) pair up to `max_length` is a constant table, sliced to the batch's width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MpnetShape:
    """The numbers of an MPNet config that the graph needs."""

    hidden: int
    heads: int
    layers: int
    eps: float = 1e-5
    buckets: int = 32
    padding_idx: int = 1

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MpnetShape:
        return cls(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            eps=float(config.get("layer_norm_eps", 1e-5)),
            buckets=int(config.get("relative_attention_num_buckets", 32)),
            padding_idx=int(config.get("pad_token_id", 1)),
        )


def relative_buckets(length: int, buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bucket of key position j seen from query position i, shape (length, length), as
    MPNet's `relative_position_bucket` computes it: half the buckets for each direction,
    exact up to a quarter of them, then logarithmic up to `max_distance`."""
    pos = np.arange(length)
    n = -(pos[None, :] - pos[:, None])  # -(key - query)
    half = buckets // 2
    out = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (
            np.log(np.maximum(n, 1) / exact) / math.log(max_distance / exact) * (half - exact)
        ).astype(np.int64)
    large = np.minimum(large, half - 1)
    return np.asarray(out + np.where(n < exact, n, large), dtype=np.int64)


def mpnet_graph_onnx(
    weights: Mapping[str, np.ndarray], shape: MpnetShape, path: Path, *, max_length: int = 64
) -> Path:
    """Write the encoder as fp32 ONNX with `onnx_graph`'s interface: inputs `input_ids`,
    `attention_mask` (int64, batch x tokens, right-padded, at most `max_length` tokens),
    output the mean-pooled `embedding` (batch x hidden)."""
    from tui.core.learning.onnx_graph import GraphWriter, LayerNames

    g = GraphWriter(weights, shape.eps)
    i64 = np.int64
    zero = g.const("zero", np.array([0], dtype=i64))
    one = g.const("one", np.array([1], dtype=i64))
    tokens = g.node("Gather", [g.node("Shape", ["input_ids"]), one], axis=0)
    first = shape.padding_idx + 1
    table = g.w("embeddings.position_embeddings.weight")[first : first + max_length]
    positions = g.node("Slice", [g.const("pos", table), zero, tokens, zero])
    word = g.const("word", g.w("embeddings.word_embeddings.weight"))
    words = g.node("Gather", [word, "input_ids"])
    x = g.norm(g.node("Add", [words, positions]), "embeddings.LayerNorm")

    maskf = g.node("Cast", ["attention_mask"], to=g.tensor.FLOAT)
    mask_bias = g.mask_bias(maskf)
    # relative-position bias: buckets (L, L) -> (L, L, heads) -> (1, heads, L, L)
    table_ij = g.const("buckets", relative_buckets(max_length, shape.buckets))
    sliced = g.node(
        "Slice",
        [
            table_ij,
            g.const("zero2", np.array([0, 0], dtype=i64)),
            g.node("Concat", [tokens, tokens], axis=0),
        ],
    )
    rel_table = g.const("rel_bias", g.w("encoder.relative_attention_bias.weight"))
    rel = g.node("Gather", [rel_table, sliced])
    rel = g.node("Unsqueeze", [g.node("Transpose", [rel], perm=[2, 0, 1]), zero])
    bias = g.node("Add", [rel, mask_bias])
    names = LayerNames(
        query="attention.attn.q",
        key="attention.attn.k",
        value="attention.attn.v",
        output="attention.attn.o",
        attention_norm="attention.LayerNorm",
    )
    x = g.layers(x, bias, hidden=shape.hidden, heads=shape.heads, layers=shape.layers, names=names)
    return g.save_pooled(x, maskf, name="mpnet", hidden=shape.hidden, path=path)
