"""Numbers and lists on the command line are checked when parsed: out of range is bad usage.

Every case runs the real CLI in a subprocess on a database that could be routed (labelled
tickets and a trained specialist), so a value that slipped through would visibly do something:
`route --ids ","` routed every ticket, `eval --limit -1` all but the last one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

LABELLED = [
    ("I was charged twice for my order", "billing"),
    ("refund the payment please, wrong amount", "billing"),
    ("my invoice shows the wrong total", "billing"),
    ("where is my parcel, tracking is stuck", "shipping"),
    ("delivery is three days late", "shipping"),
    ("the courier lost my package", "shipping"),
]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TRIAGEDESK_DB", None)
    env.pop("TRIAGEDESK_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tui", *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def routable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose database has 12 labelled tickets and a specialist trained on them."""
    home = tmp_path_factory.mktemp("usage-home")
    data = home / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"L{i}", "text": text, "label": label}) + "\n"
            for i, (text, label) in enumerate(LABELLED * 2)
        )
    )
    assert cli(home, "import", str(data)).returncode == 0
    trained = cli(home, "train")
    assert trained.returncode == 0, trained.stderr
    return home


def decisions(home: Path) -> int:
    conn = sqlite3.connect(home / "data" / "triagedesk.db")
    try:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["route", "--ids", ","], "--ids"),
        (["route", "--ids", ""], "--ids"),
        (["route", "--ids", " , ,"], "--ids"),
        (["route", "--limit", "0"], "--limit"),
        (["route", "--limit", "-1"], "--limit"),
        (["route", "--limit", "lots"], "--limit"),
        (["eval", "--backend", "specialist", "--data", "{data}", "--limit", "-1"], "--limit"),
        (["eval", "--backend", "specialist", "--data", "{data}", "--limit", "0"], "--limit"),
        (["export", "--format", "csv", "--out", "{out}", "--val-fraction", "1"], "--val-fraction"),
        (
            ["export", "--format", "csv", "--out", "{out}", "--val-fraction", "-0.1"],
            "--val-fraction",
        ),
        (
            ["export", "--format", "csv", "--out", "{out}", "--val-fraction", "nan"],
            "--val-fraction",
        ),
        (
            ["tune-cascade", "--first", "a", "--then", "b", "--target-accuracy", "nan"],
            "--target-accuracy",
        ),
        (
            ["tune-cascade", "--first", "a", "--then", "b", "--target-accuracy", "1.5"],
            "--target-accuracy",
        ),
        (["demo", "--no-tui", "--size", "0"], "--size"),
    ],
)
def test_bad_numbers_and_lists_are_usage_errors(
    routable: Path, args: list[str], option: str
) -> None:
    out = routable / "export-out"
    filled = [a.format(data=routable / "labelled.jsonl", out=out) for a in args]
    r = cli(routable, *filled)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"argument {option}" in r.stderr and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()  # one line says what is wrong, and where
    assert line.startswith("triagedesk") and option in line and "--help" in line
    assert decisions(routable) == 0 and not out.exists()  # nothing routed, nothing written
    assert not (routable / "data" / "demo.db").exists()


def test_repeated_ids_are_routed_once(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"L{i}", "text": text, "label": label}) + "\n"
            for i, (text, label) in enumerate(LABELLED * 2)
        )
    )
    home = tmp_path / "home"
    assert cli(home, "import", str(data)).returncode == 0
    assert cli(home, "train").returncode == 0
    r = cli(home, "route", "--ids", " L1, L0 ,L1,,L0")
    assert r.returncode == 0, r.stderr
    assert "routed 2 tickets" in r.stdout
    assert decisions(home) == 2
    conn = sqlite3.connect(home / "data" / "triagedesk.db")
    try:
        assert conn.execute("SELECT selection FROM runs").fetchall() == [("ids:L1,L0",)]
    finally:
        conn.close()
