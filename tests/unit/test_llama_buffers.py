"""llama.cpp's extra CPU buffer types are off on AMX CPUs, where they crash the first decode.

The crash (ggml-org/llama.cpp#20824) killed the process on this project's 2-core Intel machine
with AMX: a Q8_0 GGUF repacked into the AMX buffer segfaulted at once. The real-model test
below runs in a child process, so that on such a CPU a regression fails one test instead of
killing the test run; on a CPU without AMX it passes with or without the fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tui.core.llama_buffers import ENV, cpu_flags, extra_buffers_wanted, model_params_default

REPO = Path(__file__).resolve().parents[2]
GGUF = REPO / "tests" / "data" / "tiny_finetuned.gguf"


def test_flags_come_from_the_first_flags_line() -> None:
    text = "processor\t: 0\nflags\t\t: fpu sse avx512f amx_int8 amx_tile\nflags : other\n"
    assert {"amx_int8", "avx512f"} <= cpu_flags(text)
    assert "other" not in cpu_flags(text)
    assert cpu_flags("processor : 0\n") == set()


def test_auto_turns_them_off_only_for_amx_and_the_variable_decides_otherwise() -> None:
    assert extra_buffers_wanted({}, amx=False) is True
    assert extra_buffers_wanted({}, amx=True) is False
    assert extra_buffers_wanted({ENV: "on"}, amx=True) is True
    assert extra_buffers_wanted({ENV: "off"}, amx=False) is False
    with pytest.raises(ValueError, match=ENV):
        extra_buffers_wanted({ENV: "sometimes"}, amx=False)


def test_the_defaults_are_swapped_for_one_load_and_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def defaults() -> Any:
        return SimpleNamespace(use_extra_bufts=True, n_gpu_layers=0)

    fake = SimpleNamespace(llama_cpp=SimpleNamespace(llama_model_default_params=defaults))
    monkeypatch.setenv(ENV, "off")
    with model_params_default(fake):
        assert fake.llama_cpp.llama_model_default_params().use_extra_bufts is False
    assert fake.llama_cpp.llama_model_default_params is defaults
    monkeypatch.setenv(ENV, "on")
    with model_params_default(fake):
        assert fake.llama_cpp.llama_model_default_params is defaults


CHILD = """
import asyncio, sys
import llama_cpp
from backends.llamacpp_local import LlamaCppLocalBackend
from tests.backends.conftest import backend_config
from tests.data.make_finetuned_gguf import WORDS, tickets
from tui.core.models import Taxonomy, Ticket

params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
params.allow_requantize = True
assert llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params) == 0
config = backend_config("llamacpp-local", name="q8", model_path=sys.argv[2], n_threads=1,
                        n_ctx=512, prompt="finetuned")
backend = LlamaCppLocalBackend(config)
example = tickets(1, 7)[0]
async def go():
    try:
        result = await backend.route(Ticket(id="1", text=example.text), Taxonomy.from_names(list(WORDS)))
        print(result.label)
    finally:
        await backend.aclose()
asyncio.run(go())
"""


def test_a_q8_0_model_routes_on_this_cpu(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python (dev group) runs the model")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(GGUF), str(tmp_path / "q8.gguf")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    from tests.data.make_finetuned_gguf import WORDS

    assert done.stdout.strip().splitlines()[-1] in WORDS
