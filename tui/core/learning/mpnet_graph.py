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

from tui.core.learning.bert_torch import OPSET


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
    from onnx import TensorProto, helper, numpy_helper, save

    inits: list[Any] = []
    nodes: list[Any] = []
    count = [0]

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        count[0] += 1
        out = f"{op.lower()}_{count[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def w(key: str) -> np.ndarray:
        return np.asarray(weights[key], dtype=np.float32)

    def linear(x: str, prefix: str) -> str:
        weight = const(prefix + ".weight_t", w(prefix + ".weight").T)
        return node(
            "Add", [node("MatMul", [x, weight]), const(prefix + ".bias", w(prefix + ".bias"))]
        )

    def norm(x: str, prefix: str) -> str:
        gamma = const(prefix + ".weight", w(prefix + ".weight"))
        beta = const(prefix + ".bias", w(prefix + ".bias"))
        return node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=shape.eps)

    heads, hd = shape.heads, shape.hidden // shape.heads
    i64 = np.int64
    split_shape = const("split_shape", np.array([0, 0, heads, hd], dtype=i64))
    merge_shape = const("merge_shape", np.array([0, 0, shape.hidden], dtype=i64))
    zero = const("zero", np.array([0], dtype=i64))
    one = const("one", np.array([1], dtype=i64))

    tokens = node("Gather", [node("Shape", ["input_ids"]), one], axis=0)
    first = shape.padding_idx + 1
    table = w("embeddings.position_embeddings.weight")[first : first + max_length]
    positions = node("Slice", [const("pos", table), zero, tokens, zero])
    words = node("Gather", [const("word", w("embeddings.word_embeddings.weight")), "input_ids"])
    x = norm(node("Add", [words, positions]), "embeddings.LayerNorm")

    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = node("Sub", [const("f1", np.array(1.0, np.float32)), maskf])
    mask_bias = node(
        "Unsqueeze",
        [
            node("Mul", [inverted, const("neg", np.array(-10000.0, np.float32))]),
            const("axes12", np.array([1, 2], dtype=i64)),
        ],
    )
    # relative-position bias: buckets (L, L) -> (L, L, heads) -> (1, heads, L, L)
    table_ij = const("buckets", relative_buckets(max_length, shape.buckets))
    sliced = node(
        "Slice",
        [
            table_ij,
            const("zero2", np.array([0, 0], dtype=i64)),
            node("Concat", [tokens, tokens], axis=0),
        ],
    )
    rel = node("Gather", [const("rel_bias", w("encoder.relative_attention_bias.weight")), sliced])
    rel = node(
        "Unsqueeze",
        [node("Transpose", [rel], perm=[2, 0, 1]), zero],
    )
    bias = node("Add", [rel, mask_bias])
    scale = const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for i in range(shape.layers):
        pre = f"encoder.layer.{i}."

        def heads_first(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split_shape])], perm=perm)

        q = heads_first(linear(x, pre + "attention.attn.q"), [0, 2, 1, 3])
        k = heads_first(linear(x, pre + "attention.attn.k"), [0, 2, 3, 1])
        v = heads_first(linear(x, pre + "attention.attn.v"), [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        attended = linear(ctx, pre + "attention.attn.o")
        x = norm(node("Add", [attended, x]), pre + "attention.LayerNorm")
        inner = linear(x, pre + "intermediate.dense")
        erf = node(
            "Erf", [node("Div", [inner, const(f"sqrt2_{i}", np.array(np.sqrt(2.0), np.float32))])]
        )
        gelu = node(
            "Mul",
            [
                node("Mul", [inner, const(f"half_{i}", np.array(0.5, np.float32))]),
                node("Add", [erf, const(f"f1_{i}", np.array(1.0, np.float32))]),
            ],
        )
        out = linear(gelu, pre + "output.dense")
        x = norm(node("Add", [out, x]), pre + "output.LayerNorm")

    weights_mask = node("Unsqueeze", [maskf, const("axis2", np.array([2], dtype=i64))])
    summed = node("ReduceSum", [node("Mul", [x, weights_mask]), one], keepdims=0)
    counted = node("ReduceSum", [maskf, one], keepdims=1)
    floor = const("floor", np.array(1e-9, np.float32))
    pooled = node("Div", [summed, node("Max", [counted, floor])])
    nodes.append(helper.make_node("Identity", [pooled], ["embedding"]))

    graph = helper.make_graph(
        nodes,
        "mpnet",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", shape.hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    return path
