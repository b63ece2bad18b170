"""The MiniLM (BERT) encoder written as an ONNX graph straight from its weights: no torch.

`bert_torch.export_onnx` traces the torch module, which is right after a fine-tune (torch is
there anyway). A frozen encoder needs no training, and so no torch: this module writes the
same computation (embeddings, post-norm attention layers, exact GELU, mean pooling over the
attention mask) node by node with `onnx.helper`, so the `fewshot` kind trains and serves
where torch is not installed. The test suite checks both graphs give the same embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.bert_torch import OPSET, BertShape


def bert_graph_onnx(weights: Mapping[str, np.ndarray], shape: BertShape, path: Path) -> Path:
    """Write the encoder as fp32 ONNX: inputs `input_ids`, `attention_mask` (int64, batch x
    tokens), output the mean-pooled `embedding` (batch x hidden), as `export_onnx` does."""
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
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
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
    positions = node(
        "Slice", [const("pos", w("embeddings.position_embeddings.weight")), zero, tokens, zero]
    )
    words = node("Gather", [const("word", w("embeddings.word_embeddings.weight")), "input_ids"])
    token_type = const("token_type", w("embeddings.token_type_embeddings.weight")[0])
    x = norm(node("Add", [node("Add", [words, positions]), token_type]), "embeddings.LayerNorm")

    maskf = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    inverted = node("Sub", [const("f1", np.array(1.0, np.float32)), maskf])
    bias = node(
        "Unsqueeze",
        [
            node("Mul", [inverted, const("neg", np.array(-10000.0, np.float32))]),
            const("axes12", np.array([1, 2], dtype=i64)),
        ],
    )
    scale = const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
    for i in range(shape.layers):
        pre = f"encoder.layer.{i}."

        def heads_first(t: str, perm: list[int]) -> str:
            return node("Transpose", [node("Reshape", [t, split_shape])], perm=perm)

        q = heads_first(linear(x, pre + "attention.self.query"), [0, 2, 1, 3])
        k = heads_first(linear(x, pre + "attention.self.key"), [0, 2, 3, 1])
        v = heads_first(linear(x, pre + "attention.self.value"), [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        attended = linear(ctx, pre + "attention.output.dense")
        x = norm(node("Add", [attended, x]), pre + "attention.output.LayerNorm")
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
        "minilm",
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
