"""A tiny random-weight LLaMA model written as GGUF, for tests that load a real model.

Random weights produce nonsense, but a real llama.cpp loads, tokenizes, samples under a
grammar and reports usage for it, in milliseconds and a few hundred kilobytes: enough to test
the in-process backend and a real `llama_cpp.server` end to end, offline.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
CONTEXT_LENGTH = 2048
"""Room for the whole routing prompt, which this one-character vocabulary spells out."""

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""A minimal template, so llama-cpp-python formats chats from the file like a real model."""


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style vocabulary: specials, all 256 byte tokens, printable characters.

    Byte tokens let any text be tokenized (byte fallback) and every JSON answer be spelled.
    """
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # unknown, control, control
    tokens += [f"<0x{value:02X}>" for value in range(256)]
    types += [6] * 256  # byte
    printable = [char for char in string.printable if char not in string.whitespace]
    pieces = ["\u2581", *printable, '\u2581"', '":', "\u2581{"]
    tokens += pieces
    types += [1] * len(pieces)  # normal
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(index) for index in range(len(pieces))]
    return tokens, scores, types


def write_tiny_llama(path: Path, *, seed: int = 0, decided: bool = False) -> Path:
    """Write the model to `path` (about 600 KB) and return it.

    `decided`: bend the weights so that, under the answer's JSON grammar, greedy decoding
    writes a valid answer (`"confidence":0}`, no stray whitespace) instead of a random
    number: one shared dimension of every token embedding dominates the final norm, and the
    output matrix turns it into fixed preferences (end of text, `}`, `0`; whitespace last).
    Tests of a real server's behaviour then count valid answers, not luck.
    """
    import gguf  # test dependency only

    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHAT_TEMPLATE)

    # numpy shapes are (rows, columns): GGML's ne reversed.
    embeddings, output = weights(n_vocab, N_EMBD), weights(n_vocab, N_EMBD)
    if decided:
        embeddings[:, 0] = 10.0
        preference = {"</s>": 5.0, "}": 4.0, "0": 3.0, "\u2581": -3.0}
        for index, token in enumerate(tokens):
            char = chr(int(token[3:5], 16)) if token.startswith("<0x") else token
            if char in (" ", "\n", "\t", "\r"):
                output[index, 0] = -3.0
            else:
                output[index, 0] = preference.get(char, 0.0)
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for layer in range(N_LAYER):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(N_EMBD, N_FF))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
