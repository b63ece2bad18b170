"""Bad input end to end: import files and config files that are broken in every way.

`tests/unit/test_ingest.py` fuzzes the parsers alone; here the whole path is checked: the
`import` command with the store behind it (all-or-nothing per file, exit status 2 with
`file:line: reason` lines, the ticket count unchanged), the config loader on arbitrary text
and on valid TOML with wrong types (only ConfigError, naming the file), and CSV injection in
the export.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.cli import run
from tui.core.config import ConfigError, Settings, load_settings
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]
SEED_TICKETS = 3
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def seeded_db(path: Path) -> Path:
    """A database that already holds a few tickets, so "unchanged" is not just "empty"."""
    with Store(path) as store:
        if store.ticket_count() == 0:
            store.import_tickets([_ticket(f"seed-{i}") for i in range(SEED_TICKETS)])
    return path


def _ticket(ticket_id: str) -> Any:
    from tui.core.models import Ticket

    return Ticket(id=ticket_id, text=f"seed ticket {ticket_id}")


def ticket_count(db: Path) -> int:
    with Store(db) as store:
        return store.ticket_count()


def cli_import(db: Path, *files: Path, fmt: str | None = None) -> tuple[int, str, str]:
    """The `import` command in process (argument parsing, store, exit status)."""
    argv = ["--db", str(db), "import", *map(str, files)]
    if fmt:
        argv += ["--format", fmt]
    out, err = io.StringIO(), io.StringIO()
    status = run(argv, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def row_lines(err: str, path: Path) -> list[int]:
    """Line numbers of the `file:line: reason` lines about `path`."""
    found = re.findall(rf"^{re.escape(str(path))}:(\d+): \S.*$", err, re.MULTILINE)
    return [int(n) for n in found]


good_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60
).filter(lambda t: t.strip())
BAD_JSONL_LINES = st.sampled_from(
    [
        "{not json",
        '{"subject": "", "body": "   "}',
        '{"id": "x"}',
        '{"text": 42}',
        '{"text": "ok", "created_at": "yesterday-ish"}',
        '{"text": "ok", "id": {"nested": 1}}',
        '["a", "list"]',
        '{"text": "   "}',
        '{"text": "ok", "customer": [1, 2]}',
    ]
)


@FUZZ
@given(
    texts=st.lists(good_text, min_size=1, max_size=8),
    bad=BAD_JSONL_LINES,
    position=st.integers(min_value=0, max_value=8),
)
def test_jsonl_with_one_bad_line_imports_nothing(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], bad: str, position: int
) -> None:
    folder = tmp_path_factory.mktemp("jsonl")
    db = seeded_db(folder / "t.db")
    lines = [json.dumps({"id": f"J-{i}", "text": text}) for i, text in enumerate(texts)]
    position = min(position, len(lines))
    lines.insert(position, bad)
    path = folder / "tickets.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status, _out, err = cli_import(db, path)
    assert status == 2, err
    assert row_lines(err, path) == [position + 1], err
    assert "nothing imported" in err
    assert ticket_count(db) == SEED_TICKETS


@FUZZ
@given(
    texts=st.lists(good_text.filter(lambda t: "\r" not in t), min_size=1, max_size=6),
    bad_index=st.integers(min_value=0, max_value=5),
    fault=st.sampled_from(["empty_text", "extra_fields", "duplicate_id", "bad_date"]),
)
def test_csv_with_one_bad_row_imports_nothing(
    tmp_path_factory: pytest.TempPathFactory, texts: list[str], bad_index: int, fault: str
) -> None:
    folder = tmp_path_factory.mktemp("csv")
    db = seeded_db(folder / "t.db")
    rows: list[list[str]] = [[f"C-{i}", text, ""] for i, text in enumerate(texts)]
    bad_index = min(bad_index, len(rows))
    bad = {
        "empty_text": ["C-bad", "   ", ""],
        "extra_fields": ["C-bad", "text", "", "surplus", "cells"],
        "duplicate_id": ["C-0", "a different text entirely", ""],
        "bad_date": ["C-bad", "text", "the 32nd of Smarch"],
    }[fault]
    if fault == "duplicate_id":
        bad_index = len(rows)  # after the row it duplicates
    rows.insert(bad_index, bad)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "created_at"])
    writer.writerows(rows)
    path = folder / "tickets.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    expected_line = bad_index + 2  # the header is line 1; no text holds a line break
    status, _out, err = cli_import(db, path)
    assert status == 2, err
    assert row_lines(err, path) == [expected_line], err
    assert ticket_count(db) == SEED_TICKETS


@FUZZ
@given(data=st.binary(min_size=1, max_size=512), fmt=st.sampled_from(["jsonl", "csv"]))
def test_binary_or_invalid_utf8_is_refused_whole(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, fmt: str
) -> None:
    folder = tmp_path_factory.mktemp("bin")
    db = seeded_db(folder / "t.db")
    path = folder / f"blob.{fmt}"
    path.write_bytes(b'{"text": "fine"}\n' + b"\xff\xfe\x00" + data)
    status, _out, err = cli_import(db, path)
    assert status == 2
    assert str(path) in err
    assert "Traceback" not in err
    assert ticket_count(db) == SEED_TICKETS


@FUZZ
@given(data=st.binary(max_size=2048), fmt=st.sampled_from(["eml", "mbox"]))
def test_arbitrary_mail_bytes_import_all_or_nothing(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, fmt: str
) -> None:
    folder = tmp_path_factory.mktemp("mail")
    db = seeded_db(folder / "t.db")
    path = folder / f"mail.{fmt}"
    path.write_bytes((b"From x@y Sat Jan  1 00:00:00 2000\n" if fmt == "mbox" else b"") + data)
    status, out, err = cli_import(db, path)
    assert status in (0, 2), err
    assert "Traceback" not in err
    if status == 2:
        assert ticket_count(db) == SEED_TICKETS
        assert str(path) in err
    else:
        imported = int(re.search(r"imported (\d+) tickets", out).group(1))  # type: ignore[union-attr]
        assert ticket_count(db) == SEED_TICKETS + imported


def test_ten_megabyte_ticket_is_a_row_error_in_a_subprocess(tmp_path: Path) -> None:
    db = seeded_db(tmp_path / "t.db")
    path = tmp_path / "huge.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "ok-1", "text": "fine"}) + "\n")
        handle.write(json.dumps({"id": "huge", "text": "x" * 10_000_000}) + "\n")
    done = run_cli("--db", str(db), "import", str(path))
    assert done.returncode == 2, done.stderr
    assert f"{path}:2: field 'text' is 10000000 characters" in done.stderr
    assert ticket_count(db) == SEED_TICKETS


MAIL_WITHOUT_HEADERS = b"just some words\nno headers at all\n"
GOOD_MAIL = b"From: a@b.c\nSubject: hello\nMessage-ID: <m1@b.c>\n\nbody text\n"
BAD_FILES: dict[str, tuple[str, bytes, list[int]]] = {
    "jsonl": ("t.jsonl", b'{"text": "good"}\n{"text": 5}\n{"text": "good too"}\n', [2]),
    "csv": ("t.csv", b"id,text\n1,good\n2,\n3,fine\n", [3]),
    "eml": ("t.eml", MAIL_WITHOUT_HEADERS, [1]),
    "mbox": (
        "t.mbox",
        b"From a Sat Jan  1 00:00:00 2000\n"
        + GOOD_MAIL
        + b"From b Sat Jan  1 00:00:00 2000\n"
        + MAIL_WITHOUT_HEADERS,
        [7],
    ),
}


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("fmt", sorted(BAD_FILES))
def test_cli_import_bad_row_exits_2_and_imports_nothing(tmp_path: Path, fmt: str) -> None:
    name, data, lines = BAD_FILES[fmt]
    db = seeded_db(tmp_path / "t.db")
    path = tmp_path / name
    path.write_bytes(data)
    done = run_cli("--db", str(db), "import", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert row_lines(done.stderr, path) == lines, done.stderr
    assert "Traceback" not in done.stderr
    assert ticket_count(db) == SEED_TICKETS


def test_cli_import_keeps_good_files_and_reports_the_bad_one(tmp_path: Path) -> None:
    db = seeded_db(tmp_path / "t.db")
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": "g1", "text": "fine"}\n{"id": "g2", "text": "also fine"}\n')
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "b1", "text": "fine"}\n{"id": "b1", "text": "same id, new text"}\n')
    done = run_cli("--db", str(db), "import", str(good), str(bad))
    assert done.returncode == 2
    assert row_lines(done.stderr, bad) == [2]
    assert "duplicate id b1" in done.stderr
    assert ticket_count(db) == SEED_TICKETS + 2


def check_config(path: Path) -> Settings | None:
    """load_settings must return settings or raise ConfigError naming the file; nothing else.

    Every problem is reported (issue 12, item 18): one line each, every line naming the
    file; with several, the first line says how many."""
    try:
        return load_settings(path, required=True)
    except ConfigError as exc:
        lines = str(exc).split("\n")
        assert all(line.startswith(f"{path}:") for line in lines), str(exc)
        if len(lines) > 1:
            assert lines[0] == f"{path}: {len(lines) - 1} problems", str(exc)
            assert exc.problems == lines[1:]
        return None


@FUZZ
@given(text=st.text(max_size=400))
def test_config_loader_on_arbitrary_text(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check_config(path)


@FUZZ
@given(data=st.binary(max_size=200))
def test_config_loader_on_arbitrary_bytes(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(data)
    check_config(path)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    pairs = (f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items())
    return "{ " + ", ".join(pairs) + " }"


TOML_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f"), max_size=20
)
"""Strings TOML can spell (json.dumps escapes the other control characters)."""
SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    TOML_TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(TOML_TEXT.filter(lambda k: len(k) <= 8), inner, max_size=3)
    ),
    max_leaves=6,
)
BACKEND_KEYS = st.sampled_from(
    [
        "type", "model", "base_url", "host", "api_key_env", "timeout_s", "max_concurrency",
        "max_retries", "threshold", "first", "then", "input_usd_per_mtok", "stream",
        "max_prompt_chars", "gpu_parallel_slots", "http_transport", "keep_alive", "temperature",
    ]
)  # fmt: skip
ROUTING_KEYS = st.sampled_from(
    ["backend", "daily_volume", "reference_backend", "low_confidence", "auto_route", "extra"]
)
TYPES = st.sampled_from(
    ["openai", "anthropic", "ollama", "llamacpp", "llamacpp-local", "cascade", "specialist", "x"]
)


@st.composite
def wrong_typed_config(draw: st.DrawFn) -> str:
    """Valid TOML shaped like a triagedesk config, with values of any type anywhere."""
    lines: list[str] = []
    labels = draw(st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), VALUES, max_size=3))
    if labels or draw(st.booleans()):
        lines.append("[labels]")
        lines += [f"{k} = {toml_value(v)}" for k, v in labels.items()]
    routing = draw(st.dictionaries(ROUTING_KEYS, VALUES, max_size=3))
    if routing:
        lines.append("[routing]")
        lines += [f"{k} = {toml_value(v)}" for k, v in routing.items()]
    for index in range(draw(st.integers(min_value=0, max_value=3))):
        block = draw(st.dictionaries(BACKEND_KEYS, VALUES, max_size=5))
        if draw(st.booleans()):
            block["type"] = draw(TYPES)
        lines.append(f'[backends."b{index}"]')
        lines += [f"{k} = {toml_value(v)}" for k, v in block.items()]
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=wrong_typed_config())
def test_config_loader_on_valid_toml_with_wrong_types(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    import tomllib

    tomllib.loads(text)  # the generator writes valid TOML; the loader gets well-formed input
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text, encoding="utf-8")
    loaded = check_config(path)
    if loaded is not None:
        assert loaded.routing.backend in loaded.backends


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[backends.x]\ntype = "openai"\nmodel = "m"\nbase_url = 3\n', "backends.x.base_url"),
        ('[backends.x]\ntype = "openai"\nbase_url = "u"\nmodel = "m"\ntimeout_s = "fast"\n',
         "backends.x.timeout_s"),
        ("[routing]\ndaily_volume = -5\n", "routing.daily_volume"),
        ('[routing]\nbackend = "ghost"\n', "ghost"),
        ("labels = 7\n", "labels"),
        ("[backends]\nx = 1\n", "backends.x"),
    ],
)  # fmt: skip
def test_cli_bad_config_exits_2_with_one_line_naming_file_and_key(
    tmp_path: Path, text: str, key: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    done = run_cli("--config", str(config), "--db", str(tmp_path / "d.db"), "backends")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(config) in lines[0] and key in lines[0], lines[0]


FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", '=HYPERLINK("http://x")']


def test_csv_export_neutralises_formula_tickets(tmp_path: Path) -> None:
    """Tickets that are spreadsheet formulas come out of `export --format csv` as text."""
    db = tmp_path / "t.db"
    source = tmp_path / "in.jsonl"
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records = [
        {"id": f"F-{i}", "text": f"{formula} {words[i]} {i * 104729}", "label": "billing"}
        for i, formula in enumerate(FORMULAS)
    ] + [
        {"id": f"P-{i}", "text": f"plain {w} ticket {i}", "label": "shipping"}
        for i, w in enumerate(words)
    ]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    assert run_cli("--db", str(db), "import", str(source)).returncode == 0
    out = tmp_path / "export"
    done = run_cli("--db", str(db), "export", "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    cells: list[str] = []
    for name in ("train.csv", "validation.csv"):
        with (out / name).open(newline="", encoding="utf-8") as handle:
            cells += [row[0] for row in list(csv.reader(handle))[1:]]
    formula_cells = [c for c in cells if any(f in c for f in FORMULAS)]
    assert len(formula_cells) == len(FORMULAS)
    assert all(cell.startswith("'") for cell in formula_cells), formula_cells
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells)
