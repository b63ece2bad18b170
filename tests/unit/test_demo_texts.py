"""The demo's words are package data: complete for every department, read lazily, and shipped
in the wheel (so an installed `triagedesk demo` finds them, not only a checkout)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.core import demo_texts as demo_texts_module
from tui.core.demo import DEMO_LABELS, generate_inbox
from tui.core.demo_texts import demo_texts

ROOT = Path(__file__).resolve().parents[2]

# The same inbox, generated in a fresh interpreter: texts and labels only, as JSON.
_GENERATE = (
    "import json, sys\n"
    "from datetime import UTC, datetime\n"
    "from tui.core.demo import generate_inbox\n"
    "inbox = generate_inbox(300, seed=5, now=datetime(2025, 6, 1, tzinfo=UTC))\n"
    "print(json.dumps([[d.ticket.text, d.true_label, d.agent_label] for d in inbox]))\n"
)


def _inbox_here() -> list[list[str | None]]:
    inbox = generate_inbox(300, seed=5, now=datetime(2025, 6, 1, tzinfo=UTC))
    return [[d.ticket.text, d.true_label, d.agent_label] for d in inbox]


def test_every_department_has_every_kind_of_text() -> None:
    texts = demo_texts()
    per_department = (
        texts.templates,
        texts.one_liners,
        texts.second_requests,
        texts.subjects,
        texts.agent_replies,
    )
    for pools in per_department:
        assert list(pools) == list(DEMO_LABELS)
        assert all(pools.values())
    assert texts.generic_subjects and texts.generic_agent_replies and texts.ambiguous
    assert not any(text.startswith("#") for text in texts.greetings + texts.products)


def test_texts_are_read_once() -> None:
    assert demo_texts() is demo_texts()


def test_importing_the_demo_reads_no_file() -> None:
    code = (
        "import tui.core.demo, tui.core.demo_texts\n"
        "print(tui.core.demo_texts.demo_texts.cache_info().currsize,"
        " tui.core.demo_texts.demo_config_template.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["0", "0"]


def test_text_before_the_first_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_texts_module, "_read", lambda name: "stray line\n[billing]\nHi")
    with pytest.raises(ValueError, match="before the first"):
        demo_texts_module._sections("subjects.txt", demo_texts_module._lines)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="building the wheel needs uv")
def test_an_installed_wheel_generates_the_same_inbox(tmp_path: Path) -> None:
    subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("triagedesk-*.whl")
    # -I keeps the checkout off sys.path; the wheel goes first, ahead of any editable install,
    # and is imported as a zip, so only files packed into it can be found.
    code = (
        f"import sys; sys.path.insert(0, {str(wheel)!r})\n"
        "import tui.core.demo_texts\n"
        f"assert tui.core.demo_texts.__file__.startswith({str(wheel)!r}), tui.core.demo_texts.__file__\n"
        + _GENERATE
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout) == _inbox_here()
