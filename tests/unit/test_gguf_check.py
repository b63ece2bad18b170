"""The GGUF check runs in a fresh interpreter that imports llama_cpp first, on real files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import tickets
from tui.core.learning.llm import export
from tui.core.learning.llm.errors import FinetuneError

pytest.importorskip("llama_cpp", reason="llama-cpp-python (dev group) runs the model")

GGUF = Path(__file__).parents[1] / "data" / "tiny_finetuned.gguf"


def test_the_child_answers_held_out_tickets_with_the_served_file() -> None:
    examples = tickets(6, 11)
    accuracy, p50 = export.score_gguf_apart(GGUF, examples, n_threads=1)
    direct, _ = export.score_gguf(GGUF, examples, n_threads=1)
    assert accuracy == direct and accuracy > 0.5
    assert p50 > 0


def test_a_child_that_fails_says_why_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    with pytest.raises(FinetuneError, match=r"checking broken.gguf failed: .*\(.+\)") as caught:
        export.score_gguf_apart(broken, tickets(2, 1), n_threads=1)
    assert "\n" not in str(caught.value)


def test_the_tickets_travel_in_a_private_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Customer text on disk is the user's alone, and gone after the check."""
    import subprocess

    seen: list[tuple[int, str]] = []
    real = subprocess.run

    def spy(command: list[str], **kwargs: object) -> object:
        request = Path(command[-2])
        seen.append((stat.S_IMODE(request.stat().st_mode), str(request)))
        return real(command, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", spy)
    export.score_gguf_apart(GGUF, tickets(2, 5), n_threads=1)
    assert seen and seen[0][0] == 0o600
    assert not Path(seen[0][1]).exists()
