"""A real `python -m llama_cpp.server` on a loopback port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


class ServerDidNotStart(RuntimeError):
    """The server exited or did not answer `/models` in time (tests skip on it)."""


@contextlib.contextmanager
def llama_server(model: Path, *, alias: str = "tiny", extra: tuple[str, ...] = ()) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free loopback port, serving `model` as `alias` with
    `extra` arguments; its /v1 URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), *extra]
    command += ["--host", "127.0.0.1", "--port", str(port), "--model_alias", alias]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise ServerDidNotStart("llama_cpp.server did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
