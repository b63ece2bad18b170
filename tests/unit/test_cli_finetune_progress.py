"""`triagedesk finetune --progress json`: stdout is JSON lines only, the error is one of them
(with the exit status), and stderr keeps its one `triagedesk: error:` line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import tickets
from tui.cli import run
from tui.core.learning.llm.errors import FINETUNE_EXTRA
from tui.core.learning.llm.progress import ErrorEvent, parse_line


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def _labelled(path: Path) -> Path:
    rows = [{"text": e.text, "label": e.label} for e in tickets(4, 3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_missing_torch_is_one_error_line_on_stdout_and_exit_2(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    data = _labelled(tmp_path / "labelled.jsonl")
    argv = ["finetune", "--out", str(tmp_path / "out"), "--data", str(data), "--progress", "json"]
    code, out, err = cli(*argv)
    message = f"torch is not installed; fine-tuning needs {FINETUNE_EXTRA}"
    assert code == 2
    assert out.splitlines() == [json.dumps({"event": "error", "message": message, "exit": 2})]
    assert parse_line(out) == ErrorEvent(event="error", message=message, exit=2)
    assert err == f"triagedesk: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_bad_data_is_the_same_message_in_json(isolated_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    code, out, err = cli("finetune", "--out", "o", "--data", str(bad), "--progress", "json")
    event = parse_line(out)
    assert code == 2 and isinstance(event, ErrorEvent) and event.exit == 2
    assert err == f"triagedesk: error: {event.message}\n"
    assert event.message == f"{bad}:1: expected an object"


def test_progress_takes_text_or_json_only() -> None:
    code, out, err = cli("finetune", "--out", "d", "--progress", "yaml")
    assert (code, out) == (2, "")
    assert "argument --progress: invalid choice: 'yaml' (choose from 'text', 'json')" in err
