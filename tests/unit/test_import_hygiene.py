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
    "backends.http_backend",
    "backends.http_reading",
    "tui.core.config.options",
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


HEAVY = ("httpx", "openai", "anthropic", "ollama", "llama_cpp", "onnxruntime", "backends")


def test_loading_a_config_imports_no_backend_or_sdk(tmp_path: Path) -> None:
    """Every built-in type's Options lives in the core: validating a block of each type (the
    demo config's, and one block per type) imports no backend module, httpx nor SDK, so a
    command that only reads the config starts fast."""
    config = tmp_path / "config.toml"
    config.write_text(
        '[backends.a]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        '[backends.b]\ntype = "anthropic"\nmodel = "m"\n'
        '[backends.c]\ntype = "ollama"\nmodel = "m"\n'
        '[backends.d]\ntype = "llamacpp"\nbase_url = "http://127.0.0.1:9"\n'
        '[backends.e]\ntype = "llamacpp-local"\nmodel_path = "m.gguf"\nn_threads = 2\n'
        '[backends.f]\ntype = "cascade"\nfirst = "specialist"\nthen = "a"\nthreshold = 0.5\n',
        encoding="utf-8",
    )
    code = (
        "import json, sys\n"
        "from tui.core.config import load_settings\n"
        "from tui.core.demo import demo_config_toml\n"
        f"settings = load_settings(__import__('pathlib').Path({str(config)!r}), required=True)\n"
        "print(json.dumps([sorted(type(c).__name__ for c in settings.backends.values()),\n"
        f"  sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    kinds, imported = json.loads(out.stdout)
    assert kinds == sorted(
        [
            "AnthropicOptions",
            "CascadeOptions",
            "LlamaCppLocalOptions",
            "LlamaCppOptions",
            "OllamaOptions",
            "OpenAIOptions",
            "SpecialistOptions",
        ]
    )
    assert imported == []


DEFERRED = (
    "numpy",  # cascade tuning writes, the specialist's model
    "sklearn",
    "tomlkit",  # config edits (promotion, tune-cascade --write, a fine-tune's table)
    "httpx",  # the backends' and helpdesks' clients: loaded by the first route or sync
    "aiohttp",
    "tui.core.ingest",  # importers: `import`, --watch, helpdesk sync
    "tui.core.helpdesk.wire",
    "tui.services.helpdesk",
    # The inbox's modals and what only they use: imported by the actions that open them.
    "screens.backend_picker",
    "screens.compare",
    "screens.filter_picker",
    "screens.label_picker",
    "screens.promote_shadow",
    "screens.stats",
    "screens.finetune_modal",
    "tui.services.promotion",  # the messages name its types for the checker only
    "tui.services.shadow_compare",
    "tui.core.learning.curve",
    "tui.core.config_write",
    # The fine-tune panel is hidden until a job starts: the job loads with the first one.
    "tui.services.finetune_job",
    "tui.core.learning.llm.progress",
)
"""What the TUI does not need before its first frame, so it loads when first used."""


def test_the_tui_and_the_command_line_start_without_what_they_load_later() -> None:
    code = (
        "import json, sys\n"
        "import tui.cli, tui.app\n"
        "from tui.core.config import load_settings\n"
        "from tui.core.store import Store\n"
        "from tui.services.routing import Router\n"
        f"print(json.dumps(sorted(m for m in {list(DEFERRED)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_what_loads_later_still_loads_where_it_is_used(tmp_path: Path) -> None:
    """The deferred imports are reached through their public names, as the commands use them."""
    code = (
        "from tui.core.helpdesk import PushRequest, RemoteTicket, HelpdeskConfig\n"
        "from tui.cli.sync import _sync_for\n"
        "from tui.core.config_write import write_cascade, write_routing\n"
        "from tui.core.store import Store\n"
        "import pathlib, sys\n"
        "store = Store(pathlib.Path(sys.argv[1]))\n"
        "print(store.open_pushes('zendesk'), RemoteTicket.__name__, PushRequest.__name__)\n"
        "store.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["[]", "RemoteTicket", "PushRequest"]


def test_an_import_command_loads_no_rich_and_a_progress_bar_still_draws(tmp_path: Path) -> None:
    """`triagedesk import` draws no progress bar, so rich (0.05-0.09 s of start-up) stays
    unloaded; the bar of the commands that draw one imports it when it starts."""
    data = tmp_path / "t.jsonl"
    data.write_text('{"id": "a", "text": "one"}\n')
    code = (
        "import io, json, sys\n"
        "from tui.__main__ import RichProgress, main\n"
        f"status = main(['--db', {str(tmp_path / 't.db')!r}, 'import', {str(data)!r}])\n"
        "before = sorted(m for m in sys.modules if m.split('.')[0] == 'rich')\n"
        "bar = RichProgress()\n"
        "bar.start(2, 'x')\n"
        "bar.advance()\n"
        "bar.stop()\n"
        "print(json.dumps([status, before, 'rich.progress' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.splitlines()[-1]) == [0, [], True]
