"""The core and the backends load without the UI: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CORE = [
    "tui",
    "tui.core.models",
    "tui.core.config",
    "tui.core.store",
    "tui.services.routing",
    "tui.services.runs",
    "tui.services.compare",
    "tui.services.status_figures",
    "tui.core.inbox_window",
    "tui.core.cost_report",
    "tui.core.store_changes",
    "tui.core.costs",
    "tui.core.paths",
    "tui.core.scoring",
    "tui.core.ingest",
    "tui.core.demo",
    "tui.core.demo_texts",
    "tui.services.demo_build",
    "tui.cli",
    "tui.core.safe_files",
    "tui.core.safe_text",
    "tui.core.watch_folder",
    "tui.core.claims",
    "tui.core.numbers",
    "backends",
    "tui.core.backend",
    "tui.core.prompt",
    "backends.specialist",
    "backends.openai_compat",
    "backends.anthropic",
    "backends.ollama",
    "backends.llamacpp",
    "backends.cascade",
]


def test_core_never_imports_textual() -> None:
    # rich is not checked here: httpx itself imports it (httpx._main) whenever it is installed;
    # that our own core modules never import rich directly is the import-linter contract's job.
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'screens') or m == 'tui.app')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_package_import_has_no_side_effects(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    code = "import tui, tui.core.config, tui.core.store, tui.core.paths, backends; print('ok')"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"TRIAGEDESK_HOME": str(home), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    assert out.stdout.strip() == "ok"
    assert not home.exists()
