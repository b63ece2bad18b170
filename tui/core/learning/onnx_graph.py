"""The MiniLM (BERT) encoder written as an ONNX graph straight from its weights: no torch.

`bert_torch.export_onnx` traces the torch module, which is right after a fine-tune (torch is
there anyway). A frozen encoder needs no training, and so no torch: this module writes the
same computation (embeddings, post-norm attention layers, exact GELU, mean pooling over the
attention mask) node by node with `onnx.helper`, so the `fewshot` kind trains and serves
where torch is not installed. The test suite checks both graphs give the same embeddings.
`GraphWriter` holds what BERT and MPNet (`mpnet_graph`) share: the post-norm layer stack,
the mean pooling and the model around them; each builder adds its own embeddings and bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tui.core.learning.bert_torch import OPSET, BertShape


@dataclass(frozen=True)
class LayerNames:
    """Where one layer's weights sit under `encoder.layer.{i}.`: BERT's names by default."""

    query: str = "attention.self.query"
    key: str = "attention.self.key"
    value: str = "attention.self.value"
    output: str = "attention.output.dense"
    attention_norm: str = "attention.output.LayerNorm"


class GraphWriter:
    """Nodes and initialisers of one encoder graph, and the pieces BERT and MPNet share."""

    def __init__(self, weights: Mapping[str, np.ndarray], eps: float) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self._helper, self._numpy_helper, self.tensor = helper, numpy_helper, TensorProto
        self.weights, self.eps = weights, eps
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self._numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        self._count += 1
        out = f"{op.lower()}_{self._count}"
        self.nodes.append(self._helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def w(self, key: str) -> np.ndarray:
        return np.asarray(self.weights[key], dtype=np.float32)

    def linear(self, x: str, prefix: str) -> str:
        weight = self.const(prefix + ".weight_t", self.w(prefix + ".weight").T)
        bias = self.const(prefix + ".bias", self.w(prefix + ".bias"))
        return self.node("Add", [self.node("MatMul", [x, weight]), bias])

    def norm(self, x: str, prefix: str) -> str:
        gamma = self.const(prefix + ".weight", self.w(prefix + ".weight"))
        beta = self.const(prefix + ".bias", self.w(prefix + ".bias"))
        return self.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=self.eps)

    def mask_bias(self, maskf: str) -> str:
        """The additive attention mask (batch, 1, 1, tokens): 0 on tokens, -10000 on padding."""
        inverted = self.node("Sub", [self.const("f1", np.array(1.0, np.float32)), maskf])
        scaled = self.node("Mul", [inverted, self.const("neg", np.array(-10000.0, np.float32))])
        axes = self.const("axes12", np.array([1, 2], dtype=np.int64))
        return self.node("Unsqueeze", [scaled, axes])

    def layers(
        self, x: str, bias: str, *, hidden: int, heads: int, layers: int, names: LayerNames
    ) -> str:
        """The post-norm attention layers (exact GELU), attention scores plus `bias`."""
        hd = hidden // heads
        split_shape = self.const("split_shape", np.array([0, 0, heads, hd], dtype=np.int64))
        merge_shape = self.const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
        scale = self.const("scale", np.array(1.0 / np.sqrt(hd), np.float32))
        node, linear, norm = self.node, self.linear, self.norm
        for i in range(layers):
            pre = f"encoder.layer.{i}."

            def heads_first(t: str, perm: list[int]) -> str:
                return node("Transpose", [node("Reshape", [t, split_shape])], perm=perm)

            q = heads_first(linear(x, pre + names.query), [0, 2, 1, 3])
            k = heads_first(linear(x, pre + names.key), [0, 2, 3, 1])
            v = heads_first(linear(x, pre + names.value), [0, 2, 1, 3])
            scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
            ctx = node("MatMul", [node("Softmax", [scores], axis=-1), v])
            ctx = node("Reshape", [node("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
            attended = linear(ctx, pre + names.output)
            x = norm(node("Add", [attended, x]), pre + names.attention_norm)
            inner = linear(x, pre + "intermediate.dense")
            erf = node(
                "Erf",
                [
                    node(
                        "Div", [inner, self.const(f"sqrt2_{i}", np.array(np.sqrt(2.0), np.float32))]
                    )
                ],
            )
            gelu = node(
                "Mul",
                [
                    node("Mul", [inner, self.const(f"half_{i}", np.array(0.5, np.float32))]),
                    node("Add", [erf, self.const(f"f1_{i}", np.array(1.0, np.float32))]),
                ],
            )
            out = linear(gelu, pre + "output.dense")
            x = norm(node("Add", [out, x]), pre + "output.LayerNorm")
        return x

    def save_pooled(self, x: str, maskf: str, *, name: str, hidden: int, path: Path) -> Path:
        """Mean-pool `x` over the mask as the `embedding` output and write the model."""
        from onnx import save

        node, helper, one = (
            self.node,
            self._helper,
            self.const("one_pool", np.array([1], dtype=np.int64)),
        )
        weights_mask = self.node(
            "Unsqueeze", [maskf, self.const("axis2", np.array([2], dtype=np.int64))]
        )
        summed = node("ReduceSum", [node("Mul", [x, weights_mask]), one], keepdims=0)
        counted = node("ReduceSum", [maskf, one], keepdims=1)
        floor = self.const("floor", np.array(1e-9, np.float32))
        pooled = node("Div", [summed, node("Max", [counted, floor])])
        self.nodes.append(helper.make_node("Identity", [pooled], ["embedding"]))
        ids = ["batch", "tokens"]
        graph = helper.make_graph(
            self.nodes,
            name,
            [
                helper.make_tensor_value_info("input_ids", self.tensor.INT64, ids),
                helper.make_tensor_value_info("attention_mask", self.tensor.INT64, ids),
            ],
            [helper.make_tensor_value_info("embedding", self.tensor.FLOAT, ["batch", hidden])],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        path.parent.mkdir(parents=True, exist_ok=True)
        save(model, str(path))
        return path


def bert_graph_onnx(weights: Mapping[str, np.ndarray], shape: BertShape, path: Path) -> Path:
    """Write the encoder as fp32 ONNX: inputs `input_ids`, `attention_mask` (int64, batch x
    tokens), output the mean-pooled `embedding` (batch x hidden), as `export_onnx` does."""
    g = GraphWriter(weights, shape.eps)
    zero = g.const("zero", np.array([0], dtype=np.int64))
    one = g.const("one", np.array([1], dtype=np.int64))
    tokens = g.node("Gather", [g.node("Shape", ["input_ids"]), one], axis=0)
    table = g.const("pos", g.w("embeddings.position_embeddings.weight"))
    positions = g.node("Slice", [table, zero, tokens, zero])
    word = g.const("word", g.w("embeddings.word_embeddings.weight"))
    words = g.node("Gather", [word, "input_ids"])
    token_type = g.const("token_type", g.w("embeddings.token_type_embeddings.weight")[0])
    summed = g.node("Add", [g.node("Add", [words, positions]), token_type])
    x = g.norm(summed, "embeddings.LayerNorm")
    maskf = g.node("Cast", ["attention_mask"], to=g.tensor.FLOAT)
    x = g.layers(
        x,
        g.mask_bias(maskf),
        hidden=shape.hidden,
        heads=shape.heads,
        layers=shape.layers,
        names=LayerNames(),
    )
    return g.save_pooled(x, maskf, name="minilm", hidden=shape.hidden, path=path)
