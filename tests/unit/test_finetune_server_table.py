"""`triagedesk finetune`'s backend.toml also carries the llama-server variant, commented."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

from tui.core.config import BackendConfig
from tui.core.config.options import LlamaCppOptions
from tui.core.learning.llm import export


def test_server_table_is_commented_and_valid_once_uncommented(tmp_path: Path) -> None:
    gguf = tmp_path / "my models" / "model-q8_0.gguf"
    table = export.backend_toml("desk", gguf)

    assert set(tomllib.loads(table)["backends"]) == {"desk"}  # appending adds one backend
    lines = table.splitlines()
    command = next(line for line in lines if "llama-server" in line).removeprefix("#").strip()
    assert shlex.split(command) == [
        "llama-server", "-m", str(gguf.resolve()), "-c", str(export.SERVE_N_CTX),
        "--port", str(export.SERVER_PORT),
    ]  # fmt: skip
    start = lines.index("# [backends.desk-server]")
    uncommented = "\n".join(line.removeprefix("# ") for line in lines[start:])
    block = tomllib.loads(uncommented)["backends"]["desk-server"]
    config = BackendConfig.model_validate({"name": "desk-server", **block})
    assert isinstance(config, LlamaCppOptions)
    assert (config.prompt, config.base_url, config.model) == (
        "finetuned",
        f"http://127.0.0.1:{export.SERVER_PORT}",
        "model-q8_0",
    )
