"""From a trained model to files that serve it: merged weights, GGUF, Modelfile, backend table.

LoRA weights are merged into the base (`merge_and_unload`) and the result saved as a Hugging
Face folder, which llama.cpp's converter turns into one GGUF. Q8_0 is the default: on Gemma 3
270M it kept 99/100 where re-quantising to Q4_K_M fell to 48/100. The GGUF is then read back
with llama-cpp-python on the validation split, so `report.json` says what the served file
does, not only what the training framework did.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tui.core.learning.llm.data import Example
from tui.core.learning.llm.errors import FinetuneError, require
from tui.core.learning.llm.prompt import prompt
from tui.core.safe_files import private_dir

BACKEND_TYPE = "llamacpp-local"
SERVE_N_CTX = 512
"""Prompt (at most ~400 tokens of ticket) plus a few answer tokens."""
MAX_ANSWER_TOKENS = 16
STOP = ("\n",)
"""The answer is one line; the end-of-sequence token stops generation by itself."""
_NAME = re.compile(r"[^a-z0-9_-]+")


def merge(model: Any) -> Any:
    """A plain model with the LoRA weights folded in (a full fine-tune is returned as it is)."""
    merge_and_unload = getattr(model, "merge_and_unload", None)
    return merge_and_unload() if callable(merge_and_unload) else model


def save_adapter(model: Any, folder: Path) -> Path | None:
    """Keep a LoRA fine-tune's adapter (a few MB) beside the GGUF, before it is merged.

    With it a team can re-merge into another base file or convert it with llama.cpp's
    `convert_lora_to_gguf.py` and apply it at load time; a full fine-tune has none.
    """
    if getattr(model, "peft_config", None) is None:
        return None
    private_dir(folder)
    model.save_pretrained(folder, safe_serialization=True)
    for file in folder.rglob("*"):
        file.chmod(0o700 if file.is_dir() else 0o600)
    return folder


def save(model: Any, tokenizer: Any, folder: Path, sentencepiece: Path | None) -> Path:
    """Save weights, config and tokenizer where the converter reads them.

    `sentencepiece` is the base's `tokenizer.model` (rebuilt from its GGUF when it came as
    one); copied beside the weights, it makes the converter write the vocabulary as the
    sentencepiece model it is.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    target = folder / "tokenizer.model"
    if sentencepiece is not None and sentencepiece.resolve() != target.resolve():
        shutil.copyfile(sentencepiece, target)
    _declare_added_tokens(folder)
    return folder


def _declare_added_tokens(folder: Path) -> None:
    """Copy `tokenizer.json`'s added tokens into `tokenizer_config.json`'s decoder table.

    transformers 5 no longer writes `added_tokens_decoder` there, and that table is where the
    converter learns which tokens are control tokens and which are user-defined (matched
    whole, as `refund` or `[multimodal]`); without it they would become ordinary pieces that
    llama.cpp's tokenizer splits, and served prompts would tokenize differently.
    """
    config_path, tokens_path = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if not (config_path.is_file() and tokens_path.is_file()):
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("added_tokens_decoder"):
        return
    added = json.loads(tokens_path.read_text(encoding="utf-8")).get("added_tokens") or []
    config["added_tokens_decoder"] = {
        str(token["id"]): {
            key: token[key]
            for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
            if key in token
        }
        for token in added
    }
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")


def backend_name(out: Path, given: str | None) -> str:
    """A config-safe backend name: the one given, else `finetuned-<folder name>`."""
    raw = given if given else f"finetuned-{out.resolve().name}"
    name = _NAME.sub("-", raw.lower()).strip("-")
    if not name:
        raise FinetuneError(f"backend name {raw!r}: use letters, digits, '-' or '_'")
    return name


SERVER_PORT = 8080
"""llama-server's default port, which the commented server table points at."""


def server_command(gguf: Path) -> str:
    """The `llama-server` command line that serves the GGUF for the server table."""
    path = shlex.quote(str(gguf.resolve()))
    return f"llama-server -m {path} -c {SERVE_N_CTX} --port {SERVER_PORT}"


def backend_toml(
    name: str, gguf: Path, model: str | None = None, tokens: Mapping[str, int] | None = None
) -> str:
    """One `[backends.<name>]` table that routes with the GGUF in process, then the same model
    through a llama.cpp server as a commented `[backends.<name>-server]` table.

    `prompt = "finetuned"` asks it the trained prompt: in process the taxonomy's labels are
    all scored; through `llama-server` the answer is constrained to them by a grammar. The
    server table is commented so that appending the file adds one working backend; its
    first comment line is the command that starts the server. `model` is the identity its
    decisions carry (the GGUF's stem and the training set's id, see `pipeline.training_set`),
    so that its accuracy leaves out what it trained on. TOML basic strings share JSON's
    escapes, so `json.dumps` quotes the path safely.

    `tokens` (the classify objective) adds the table's `label_tokens`, each label's reserved
    token, which the model answers; no server table is offered then, as llama-server's
    answer is held to the labels' names by a grammar, which such a model does not write.
    """
    table = (
        f"[backends.{name}]\n"
        f'type = "{BACKEND_TYPE}"\n'
        f"model_path = {json.dumps(str(gguf.resolve()))}\n"
        f"model = {json.dumps(model or gguf.stem)}\n"
        f"n_ctx = {SERVE_N_CTX}\n"
        f'prompt = "finetuned"\n'
        f"\n"
    )
    if tokens is not None:
        return (
            "# Written by `triagedesk finetune --objective classify`: append to your config to\n"
            "# route with this model (each label is answered by its own token below).\n"
            + table
            + f"[backends.{name}.label_tokens]\n"
            + "".join(f"{json.dumps(label)} = {token}\n" for label, token in tokens.items())
        )
    return (
        "# Written by `triagedesk finetune`: append to your config to route with this model.\n"
        + table
        + f"# The same model through a llama.cpp server (CPU or CUDA build): start it with\n"
        f"#   {server_command(gguf)}\n"
        f"# then uncomment this table (an OpenAI-compatible llama.cpp-family server works too:\n"
        f'# type = "openai", base_url = "http://127.0.0.1:{SERVER_PORT}/v1").\n'
        f"# [backends.{name}-server]\n"
        f'# type = "llamacpp"\n'
        f'# base_url = "http://127.0.0.1:{SERVER_PORT}"\n'
        f"# model = {json.dumps(model or gguf.stem)}\n"
        f'# prompt = "finetuned"\n'
    )


def modelfile(gguf: Path, tokens: Mapping[str, int] | None = None) -> str:
    """An Ollama Modelfile whose template is the training prompt, answer stopped at eos/newline.

    The text given to Ollama must be the ticket with its whitespace collapsed, as in training.
    A classify model answers one reserved token: the Modelfile then asks for one token and
    lists which label each token means (Ollama returns the token's text, `<unusedN>`).
    """
    stops = "".join(f"PARAMETER stop {json.dumps(s)}\n" for s in ("<eos>", *STOP))
    if tokens is not None:
        return (
            "# Written by `triagedesk finetune --objective classify`: `ollama create NAME -f\n"
            "# Modelfile` serves it; the answer is one token, which means the label below.\n"
            + "".join(f"#   token {token}: {label}\n" for label, token in tokens.items())
            + f"FROM ./{gguf.name}\n"
            f'TEMPLATE """{prompt("{{ .Prompt }}")}"""\n'
            "PARAMETER temperature 0\n"
            "PARAMETER num_predict 1\n"
            f"PARAMETER num_ctx {SERVE_N_CTX}\n"
        )
    return (
        "# Written by `triagedesk finetune`: `ollama create NAME -f Modelfile` serves it.\n"
        f"FROM ./{gguf.name}\n"
        f'TEMPLATE """{prompt("{{ .Prompt }}")}"""\n'
        "PARAMETER temperature 0\n"
        f"PARAMETER num_predict {MAX_ANSWER_TOKENS}\n"
        f"PARAMETER num_ctx {SERVE_N_CTX}\n"
        f"{stops}"
    )


def load_gguf(path: Path, *, n_threads: int | None = None, n_gpu_layers: int = 0) -> Any:
    """The GGUF loaded with llama-cpp-python, the way the `llamacpp-local` backend loads it.

    Raises:
        FinetuneError: llama-cpp-python is missing or cannot read the file.
    """
    require("llama_cpp")
    import llama_cpp

    from tui.core.llama_buffers import open_llama

    try:
        return open_llama(  # AMX CPUs: see tui.core.llama_buffers
            llama_cpp,
            model_path=str(path),
            n_ctx=SERVE_N_CTX,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise FinetuneError(f"llama.cpp cannot load {path}: {exc}") from exc


def answer_with(llm: Any, text: str) -> str:
    """The GGUF's greedy answer to one ticket: the first line, stripped."""
    out = llm.create_completion(
        prompt(text), max_tokens=MAX_ANSWER_TOKENS, temperature=0.0, stop=list(STOP)
    )
    return str(out["choices"][0]["text"]).strip()


def label_with(llm: Any, text: str, tokens: Mapping[str, int]) -> str:
    """A classify GGUF's answer to one ticket: the label whose token is most probable after
    the trained prompt (one prompt pass; the served backend scores the same way)."""
    import llama_cpp
    import numpy as np

    from tui.core.learning.llm.prompt import prompt_ids

    llm.reset()
    llm.eval(prompt_ids(llm, text, SERVE_N_CTX - 1))
    pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))
    names = list(tokens)
    return names[int(np.argmax(logits[list(tokens.values())]))]


def score_gguf(
    path: Path,
    examples: Sequence[Example],
    *,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    label_tokens: Mapping[str, int] | None = None,
) -> tuple[float, float]:
    """Accuracy of the served file on `examples` and its median milliseconds a ticket
    (greedy free text, or with `label_tokens` the most probable label token)."""
    llm = load_gguf(path, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
    try:
        right, times = 0, []
        for example in examples:
            started = time.perf_counter()
            said = (
                answer_with(llm, example.text)
                if label_tokens is None
                else label_with(llm, example.text, label_tokens)
            )
            right += said == example.label
            times.append((time.perf_counter() - started) * 1000.0)
    finally:
        llm.close()
    return right / max(1, len(examples)), statistics.median(times) if times else 0.0


CHECK_CHILD = "import llama_cpp; from tui.core.learning.llm.gguf_check import main; main()"
"""The check child's whole program: llama_cpp imported first (see `gguf_check`)."""


def score_gguf_apart(
    path: Path,
    examples: Sequence[Example],
    *,
    n_threads: int | None = None,
    gpu: bool = False,
    label_tokens: Mapping[str, int] | None = None,
) -> tuple[float, float]:
    """`score_gguf` in a fresh Python process (`gguf_check`), on the GPU when `gpu`.

    Why a child: llama.cpp's CUDA build initialised in the process where torch already holds
    the GPU died with SIGSEGV on the H200 (2026-12-02). A fresh interpreter starts with no CUDA
    context, and imports llama_cpp before numpy (a multiprocessing child could not: see
    `gguf_check`), so the served file is checked on the GPU it will be served from, and a crash
    there is a failed check, not a lost fine-tune. The tickets travel in a private folder.

    Raises:
        FinetuneError: The child failed or died.
    """
    import subprocess
    import sys
    import tempfile

    import tui
    from tui.core.safe_files import write_private

    root = str(Path(tui.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="triagedesk-check-") as scratch:
        request, result = Path(scratch) / "request.json", Path(scratch) / "result.json"
        body = {
            "model": str(path),
            "examples": [{"text": e.text, "label": e.label} for e in examples],
            "n_threads": n_threads,
            "n_gpu_layers": -1 if gpu else 0,
            "label_tokens": None if label_tokens is None else dict(label_tokens),
        }
        write_private(request, json.dumps(body))
        done = subprocess.run(
            [sys.executable, "-c", CHECK_CHILD, str(request), str(result)],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not result.is_file():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            why = lines[-1][:200] if lines else f"exit status {done.returncode}"
            raise FinetuneError(f"checking {path.name} failed: the checking process died ({why})")
        figures = json.loads(result.read_text(encoding="utf-8"))
    return float(figures["accuracy"]), float(figures["p50_ms"])
