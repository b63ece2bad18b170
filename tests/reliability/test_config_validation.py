"""The config is validated whole and strictly, once (issue 12, items 18 and 11's prices).

Each mistake that used to be accepted (an unknown backend type that turned every ticket into
an error decision, misspelt sections and keys, a reference to no backend, a non-table
`backends`, an empty label, NaN and infinite numbers, a specialist `path` that is a folder,
cascade cycles) is now an error that names its key, exit status 2 through the real CLI, with
the closest valid key suggested for a typo; a config with several mistakes reports all of
them, one per line. A UTF-8 byte order mark is read, not rejected. Every config example of
the README and SPEC, the demo config and the built-in defaults pass the strict rules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tui.core import registry
from tui.core.config import (
    BACKEND_TYPE_KEYS,
    BUILTIN_OPTIONS,
    COMMON_KEYS,
    DEFAULT_BACKENDS,
    BackendConfig,
    ConfigError,
    Settings,
    default_settings,
    load_settings,
)
from tui.core.models import Ticket
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "SPEC.md"

OPENAI = '[backends.gpt]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'


def run_cli(
    home: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT), **(env or {})}
    for var in ("TRIAGEDESK_DB", "TRIAGEDESK_CONFIG"):
        if var not in (env or {}):
            full.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv], capture_output=True, text=True, env=full, timeout=180
    )


def problems(text: str, tmp_path: Path) -> list[str]:
    """The problem lines load_settings reports for `text` (empty when it loads)."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path, required=True)
    except ConfigError as exc:
        return exc.problems
    return []


MISTAKES: dict[str, tuple[str, str, str]] = {
    # name: (config text, the key the line must name, a phrase the line must hold)
    "unknown type": (
        '[backends.gpt]\ntype = "opnai"\nbase_url = "u"\nmodel = "m"\n',
        "backends.gpt.type",
        "did you mean 'openai'?",
    ),
    "[label]": ('[label]\nbilling = "Charges"\n', "label", "did you mean 'labels'?"),
    "[routng]": ('[routng]\nbackend = "specialist"\n', "routng", "did you mean 'routing'?"),
    "api_key_evn": (
        OPENAI + 'api_key_evn = "OPENAI_API_KEY"\n',
        "backends.gpt.api_key_evn",
        "did you mean 'api_key_env'?",
    ),
    "max_concurency": (
        OPENAI + "max_concurency = 4\n",
        "backends.gpt.max_concurency",
        "did you mean 'max_concurrency'?",
    ),
    "key of another type": (OPENAI + 'host = "h"\n', "backends.gpt.host", "type 'ollama'"),
    "reference to nothing": (
        OPENAI + '[routing]\nreference_backend = "gpt-4o"\n',
        "routing.reference_backend",
        "no backend named",
    ),
    "routing to nothing": ('[routing]\nbackend = "ghost"\n', "routing.backend", "ghost"),
    "backends = 3": ("backends = 3\n", "backends", "must be a table"),
    "empty label": ('[labels]\n"" = "nothing"\n', 'labels.""', "empty label"),
    "label with a newline": ('[labels]\n"a\\nb" = "x"\n', "labels.", "control"),
    "temperature nan": (OPENAI + "temperature = nan\n", "backends.gpt.temperature", "finite"),
    "price inf": (
        OPENAI + "input_usd_per_mtok = inf\n",
        "backends.gpt.input_usd_per_mtok",
        "finite",
    ),
    "negative price": (
        OPENAI + "output_usd_per_mtok = -0.5\n",
        "backends.gpt.output_usd_per_mtok",
        "greater than or equal to 0",
    ),
    "low_confidence nan": ("[routing]\nlow_confidence = nan\n", "routing.low_confidence", "finite"),
    "specialist path is a folder": (
        '[backends.specialist]\ntype = "specialist"\npath = "{folder}"\n',
        "backends.specialist.path",
        "folder",
    ),
    "gguf model_path is a folder": (
        '[backends.gguf]\ntype = "llamacpp-local"\nmodel_path = "{folder}"\n',
        "backends.gguf.model_path",
        "folder",
    ),
    "cascade cycle": (
        '[backends.a]\ntype = "cascade"\nfirst = "b"\nthen = "specialist"\nthreshold = 0.5\n'
        '[backends.b]\ntype = "cascade"\nfirst = "a"\nthen = "specialist"\nthreshold = 0.5\n',
        "backends.a",
        "cascade cycle a -> b -> a",
    ),
    "longer cascade cycle": (
        '[backends.a]\ntype = "cascade"\nfirst = "specialist"\nthen = "b"\nthreshold = 0.5\n'
        '[backends.b]\ntype = "cascade"\nfirst = "specialist"\nthen = "c"\nthreshold = 0.5\n'
        '[backends.c]\ntype = "cascade"\nfirst = "a"\nthen = "specialist"\nthreshold = 0.5\n',
        "backends.a",
        "cascade cycle a -> b -> c -> a",
    ),
    "missing required key": (
        '[backends.gpt]\ntype = "openai"\nmodel = "m"\n',
        "backends.gpt.base_url",
        "missing: type 'openai' needs it",
    ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_each_mistake_exits_2_naming_its_key(
    tmp_path: Path, isolated_home: Path, name: str
) -> None:
    text, key, phrase = MISTAKES[name]
    config = tmp_path / "config.toml"
    config.write_text(text.replace("{folder}", str(tmp_path)), encoding="utf-8")
    done = run_cli(isolated_home, "--config", str(config), "backends")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"triagedesk: error: {config}: {key}"), lines[0]
    assert phrase in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_every_problem_is_reported_at_once(tmp_path: Path, isolated_home: Path) -> None:
    """One run lists them all, one line each: fixing a config is not one rerun per typo."""
    text = (
        '[label]\nbilling = "Charges"\n'
        '[labels]\n"" = "empty"\n'
        '[routing]\nbackend = "gpt"\nreference_backend = "nobody"\n'
        + OPENAI
        + 'api_key_evn = "K"\nmax_concurency = 4\ntemperature = nan\ninput_usd_per_mtok = inf\n'
        '[backends.local]\ntype = "olama"\n'
        '[backends.a]\ntype = "cascade"\nfirst = "b"\nthen = "gpt"\nthreshold = 1.5\n'
        '[backends.b]\ntype = "cascade"\nfirst = "a"\nthen = "gpt"\nthreshold = 0.5\n'
    )
    expected = [
        "label",
        'labels.""',
        "routing.reference_backend",
        "backends.gpt.api_key_evn",
        "backends.gpt.max_concurency",
        "backends.gpt.temperature",
        "backends.gpt.input_usd_per_mtok",
        "backends.local.type",
        "backends.a.threshold",
        "backends.a",
    ]
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    done = run_cli(isolated_home, "--config", str(config), "backends")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == f"triagedesk: error: {config}: {len(lines) - 1} problems", lines
    keys = [line.removeprefix(f"{config}: ").split(": ")[0] for line in lines[1:]]
    assert sorted(keys) == sorted(expected), lines
    assert all(line.startswith(f"{config}: ") for line in lines[1:])
    assert any("cascade cycle a -> b -> a" in line for line in lines)


def test_an_unknown_backend_type_routes_nothing(tmp_path: Path, isolated_home: Path) -> None:
    """It used to store an error decision for every ticket; now the run never starts."""
    db = tmp_path / "t.db"
    with Store(db) as store:
        store.import_tickets([Ticket(id=f"T{i}", text=f"ticket {i}") for i in range(5)])
    config = tmp_path / "config.toml"
    config.write_text('[routing]\nbackend = "x"\n[backends.x]\ntype = "opnai"\nmodel = "m"\n')
    done = run_cli(isolated_home, "--db", str(db), "--config", str(config), "route")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "backends.x.type: unknown backend type" in done.stderr
    with Store(db) as store:
        assert store.decision_count() == 0


def test_a_byte_order_mark_is_read_not_rejected(tmp_path: Path, isolated_home: Path) -> None:
    """Windows editors start UTF-8 files with a BOM; it is invisible, so it must not matter."""
    text = '[labels]\nbilling = "Charges"\nshipping = "Parcels"\n' + OPENAI
    plain, marked = tmp_path / "plain.toml", tmp_path / "bom.toml"
    plain.write_text(text, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_settings(marked, required=True).model_dump() == (
        load_settings(plain, required=True).model_dump()
    )
    done = run_cli(isolated_home, "--config", str(marked), "backends", "--json")
    assert done.returncode == 0, done.stderr
    assert {entry["name"] for entry in json.loads(done.stdout)} == {"specialist", "gpt"}


def test_a_plugin_type_keeps_its_own_keys_but_numbers_must_be_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    good = '[backends.h]\ntype = "hash"\ndelay_s = 0.5\ntimeout_s = 5\n'
    path = tmp_path / "config.toml"
    path.write_text(good)
    settings = load_settings(path, required=True)
    assert settings.backend("h").model_extra == {"delay_s": 0.5}
    assert problems(good.replace("0.5", "nan"), tmp_path) == [
        f"{path}: backends.h.delay_s: nan is not a finite number"
    ]
    assert problems(good.replace("timeout_s = 5", "timeout_s = -1"), tmp_path) == [
        f"{path}: backends.h.timeout_s: Input should be greater than 0"
    ]


def test_settings_built_in_code_are_just_as_strict() -> None:
    """The rules live in the models, not only in the file loader."""
    with pytest.raises(ValueError, match="unknown backend type"):
        Settings.model_validate({"backends": {"specialist": {"type": "specialist", "name": "x"},
                                              "y": {"type": "nope"}}})  # fmt: skip
    with pytest.raises(ValueError, match="finite"):
        BackendConfig(type="openai", base_url="u", model="m", input_usd_per_mtok=float("inf"))


def every_key_block(type_name: str) -> dict[str, Any]:
    """A block of `type_name` that sets every key its type accepts, each to a valid value."""
    values: dict[str, Any] = {
        "path": "model.joblib", "cpu_usd_per_hour": 0.04, "base_url": "http://127.0.0.1:9",
        "model": "m", "api_key_env": "KEY", "keyring_service": "svc", "stream": False,
        "temperature": 0.2, "http_transport": "httpx", "host": "http://127.0.0.1:9",
        "keep_alive": "5m", "model_path": "m.gguf", "n_ctx": 4096, "n_gpu_layers": -1,
        "n_threads": 4, "first": "specialist", "then": "gpt", "threshold": 0.7,
        "timeout_s": 10.0, "max_concurrency": 2, "max_retries": 1, "input_usd_per_mtok": 0.1,
        "output_usd_per_mtok": 0.2, "cached_input_usd_per_mtok": 0.05, "gpu_usd_per_hour": 1.0,
        "gpu_parallel_slots": 2, "max_prompt_chars": 1000, "prompt": "finetuned",
        "adaptive_concurrency": False, "label_scoring": "constrained", "batch_tickets": 16,
        "label_tokens": {"refund": 6, "lost or stolen": 7},
    }  # fmt: skip
    keys = BACKEND_TYPE_KEYS[type_name]
    return {"type": type_name, **{key: values[key] for key in keys.all() if key != "type"}}


def toml_value(value: Any) -> str:
    """A TOML value: JSON's scalars and strings are TOML's; a table is written inline."""
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(value)


def toml_block(name: str, block: dict[str, Any]) -> str:
    return f"[backends.{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in block.items())


@pytest.mark.parametrize("type_name", sorted(BACKEND_TYPE_KEYS))
def test_every_key_a_type_reads_is_accepted(tmp_path: Path, type_name: str) -> None:
    """Strict, not over-strict: a block may set every key its type uses."""
    text = toml_block("x", every_key_block(type_name)) + OPENAI
    assert problems(text, tmp_path) == []


def test_the_key_table_matches_the_registry_and_the_model() -> None:
    """The table is read off each type's Options: every key it lists is a field of the model
    the backend reads (so mypy checks each `config.<key>`), required ones without default."""
    assert set(BACKEND_TYPE_KEYS) == set(registry.BUILTIN) == set(BUILTIN_OPTIONS)
    for type_name, keys in BACKEND_TYPE_KEYS.items():
        fields = BUILTIN_OPTIONS[type_name].model_fields
        for key in (*keys.required, *keys.optional):
            assert key in fields, key
        assert all(fields[key].is_required() for key in keys.required)
        assert set(keys.all()) | {"name"} == set(fields)
    assert set(COMMON_KEYS) <= set(BackendConfig.model_fields)


def test_defaults_and_demo_config_pass_the_strict_rules(tmp_path: Path) -> None:
    from tui.core.demo import demo_config_toml

    assert set(default_settings().backends) == set(DEFAULT_BACKENDS)
    path = tmp_path / "demo.toml"
    path.write_text(demo_config_toml(), encoding="utf-8")
    assert "cascade" in load_settings(path, required=True).backends


def toml_examples(markdown: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", markdown, re.DOTALL)


AS_ABOVE = re.compile(
    r"^(\[backends\.[^\]]+\]\n)((?:[^\[\n][^\n]*\n)*?)(.*#\s*([\w, ]+?)\s+as above.*\n)", re.M
)


def expand_as_above(text: str) -> str:
    """A table whose comment says "base_url, model, api_key_env, prices as above" is read as a
    reader pastes it: the named keys copied from the backend tables written before it."""

    def fill(match: re.Match[str]) -> str:
        before = tomllib.loads(text[: match.start()]).get("backends", {})
        named = {word.strip() for word in match.group(4).split(",")}
        wanted = {key for key in named if key != "prices"}
        given: dict[str, Any] = {}
        for block in before.values():
            for key, value in block.items():
                if key in wanted or ("prices" in named and key.endswith("_usd_per_mtok")):
                    given.setdefault(key, value)
        missing = (wanted | ({"prices"} if "prices" in named else set())) - set(given)
        assert not missing - {"prices"}, f"'as above' names keys no earlier table sets: {missing}"
        lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in given.items())
        return match.group(1) + match.group(2) + match.group(3) + lines

    return AS_ABOVE.sub(fill, text)


def check_examples(doc: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Each example's problems. A fragment that only adds backends (the cascade one) is
    checked inside the document's first, full example, as the reader would paste it; keys a
    comment says are "as above" are filled from the tables before it."""
    examples = [expand_as_above(text) for text in toml_examples(doc.read_text(encoding="utf-8"))]
    assert examples, f"{doc}: no TOML examples found"
    full = examples[0]
    found: dict[str, list[str]] = {}
    for index, text in enumerate(examples):
        tomllib.loads(text)
        alone = problems(text, tmp_path)
        adds_only_new_tables = not set(re.findall(r"^\[.*\]", text, re.M)) & set(
            re.findall(r"^\[.*\]", full, re.M)
        )
        if alone and index and adds_only_new_tables:
            alone = problems(full + "\n" + text, tmp_path)
        found[f"{doc.name} example {index + 1}"] = [p.split(": ", 1)[1] for p in alone]
    return found


def test_readme_config_examples_validate(tmp_path: Path) -> None:
    found = check_examples(ROOT / "README.md", tmp_path)
    assert len(found) >= 7
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_spec_config_example_validates(tmp_path: Path) -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not present (the shared folder lives beside the checkout)")
    found = check_examples(SPEC, tmp_path)
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_tune_cascade_writes_into_a_config_with_a_byte_order_mark(tmp_path: Path) -> None:
    """The command that rewrites the config reads it as the loader does."""
    import io

    from tests.unit.test_cascade_tuning import write_fixture
    from tui.cli import run

    data, config = write_fixture(tmp_path, plugin=False)
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    argv = ["--config", str(config), "tune-cascade", "--first", "weak", "--then", "strong"]
    err = io.StringIO()
    args = [*argv, "--data", str(data), "--write"]
    assert run(args, out=io.StringIO(), err=err) == 0, err.getvalue()
    assert load_settings(config, required=True).backend("cascade").first == "weak"


def test_as_above_fills_the_named_keys_from_earlier_tables() -> None:
    text = (
        '[backends.a]\ntype = "openai"\nmodel = "m"\ninput_usd_per_mtok = 0.1\n\n'
        '[backends.b]\ntype = "anthropic"   # model, prices as above\n'
    )
    assert tomllib.loads(expand_as_above(text))["backends"]["b"] == {
        "type": "anthropic", "model": "m", "input_usd_per_mtok": 0.1,
    }  # fmt: skip
