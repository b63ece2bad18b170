"""Regenerate `tests/data/tiny_finetuned.gguf`: a tiny random Gemma 3, fine-tuned to its labels.

Needs the `finetune` extra (torch, transformers, peft, sentencepiece, gguf) and llama.cpp's
converter (`--converter PATH`, `TRIAGEDESK_LLAMA_CPP` or the cached extract). CI never runs
this: it reads the committed GGUF through `llamacpp-local` with `prompt = "finetuned"`.

    python tests/data/make_finetuned_gguf.py --converter DIR

The model is the same tiny two-layer Gemma 3 as tests/unit/test_llm_finetune.py builds (a
320-piece sentencepiece tokenizer trained on the tickets), fully fine-tuned by
`triagedesk finetune`'s pipeline until it answers every held-back ticket right, and written
as f16 (about 100 kB).
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import tempfile
from pathlib import Path

from tui.core.learning.llm import data, pipeline

WORDS = {
    "refund": "money back refund return charge",
    "shipping": "parcel delivery courier late box",
    "login": "password account locked sign reset",
}
TARGET = Path(__file__).with_name("tiny_finetuned.gguf")


def tickets(per_label: int, seed: int) -> list[data.Example]:
    rng = random.Random(seed)
    out = []
    for label, words in WORDS.items():
        choices = words.split()
        for _ in range(per_label):
            text = " ".join(rng.choice(choices) for _ in range(5))
            out.append(data.Example(f"hello, {text}, please help", label))
    return out


def build_base(folder: Path, reserved: int = 0) -> Path:
    """The tiny base; `reserved` adds Gemma's `<unused0>` ... pieces, which
    `--objective classify` gives to the labels (the committed GGUF is built without)."""
    import sentencepiece
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GemmaTokenizer

    folder.mkdir(parents=True)
    texts = [data.prompt(e.text) + data.answer(e.label) for e in tickets(30, 0)]
    model_bytes = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model_bytes,
        vocab_size=320,
        model_type="bpe",
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=[*WORDS, *(f"<unused{i}>" for i in range(reserved))],
        byte_fallback=True,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model_bytes.getvalue())
    tokenizer = GemmaTokenizer.from_pretrained(folder, add_bos_token=True)
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        sliding_window=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--converter", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_base(Path(scratch) / "base")
        request = pipeline.FinetuneRequest(
            base=str(folder),
            out=Path(scratch) / "out",
            device="cpu",
            method="full",
            max_steps=80,
            epochs=100,
            learning_rate=3e-3,
            outtype="f16",
            converter=args.converter,
            name="tiny",
            n_threads=1,
        )
        report = pipeline.finetune(tickets(24, 5), None, request)
        if report.gguf_validation_accuracy < 1.0:
            raise SystemExit(f"not trained enough: {report.gguf_validation_accuracy:.0%}")
        shutil.copyfile(request.out / "model-f16.gguf", TARGET)
    print(f"wrote {TARGET} ({TARGET.stat().st_size} bytes), steps {report.steps}")


if __name__ == "__main__":
    main()
