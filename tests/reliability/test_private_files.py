"""Files that hold customer text are 0600 and the folders made for them 0700, whatever the
umask: exports, watch-folder reports and their folders, specialist models, and the config that
`tune-cascade --write` creates (an existing config keeps its mode). `train --out` to a place
that cannot be written fails before training, and a failed save leaves nothing behind.

Real files, a real SQLite store, the real TUI for the watch folder and real subprocesses where
the exit status matters. (The database file's own mode is covered with the store.)
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.screens.helpers import LABELS, build_router, make_tickets, seed, settings_for, wait_until
from tests.unit.test_cascade_tuning import write_fixture
from tui.app import make_app
from tui.cli import run
from tui.core import registry
from tui.core.export import export
from tui.core.learning.model import SpecialistModel
from tui.core.models import Taxonomy
from tui.core.store import Store

ROOT = Path(__file__).resolve().parents[2]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "inbox.db") as opened:
        yield opened


def test_exports_are_private(store: Store, tmp_path: Path, umask: int) -> None:
    seed(store, 40, labelled=40)
    out = tmp_path / "new" / "ft"
    report = export(store, Taxonomy.from_names(list(LABELS)), fmt="hf", out=out)
    assert report.files == ["train.jsonl", "validation.jsonl", "labels.json", "report.json"]
    for name in report.files:
        assert mode(out / name) == 0o600, name
    assert mode(out) == 0o700 and mode(out.parent) == 0o700
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


async def test_watch_folder_reports_and_folders_are_private(
    store: Store, tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "imported").mkdir()
    os.chmod(drop / "imported", 0o755)  # as older versions left it
    (drop / "bad.jsonl").write_text('{"id": "B-1", "text": ""}\n')
    (drop / "good.jsonl").write_text('{"id": "G-1", "text": "parcel late"}\n')
    settings = settings_for({"hash": {"type": "hash"}})
    app = make_app(settings, store, build_router(settings, store), watch=drop)
    async with app.run_test(size=(120, 40)) as pilot:
        report = drop / "rejected" / "bad.jsonl.errors.txt"
        await wait_until(pilot, report.exists, timeout=15)
        await wait_until(pilot, (drop / "imported" / "good.jsonl").exists, timeout=15)
    assert report.read_text().startswith("bad.jsonl:1: ")
    assert mode(report) == 0o600
    assert mode(drop / "rejected") == 0o700 and mode(drop / "imported") == 0o700


def test_models_are_private(tmp_path: Path, umask: int) -> None:
    tickets, truth = make_tickets(24)
    model = SpecialistModel.train([t.text for t in tickets], [truth[t.id] for t in tickets])
    target = tmp_path / "models" / "specialist.joblib"
    model.save(target)
    assert mode(target) == 0o600 and mode(target.with_suffix(".json")) == 0o600
    assert mode(target.parent) == 0o700
    assert mode(target.with_name("specialist.training.json")) == 0o600  # ticket ids, hashes
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "specialist.joblib",
        "specialist.json",
        "specialist.training.json",
    ]


def test_a_failed_model_save_leaves_nothing_behind(tmp_path: Path) -> None:
    tickets, truth = make_tickets(24)
    model = SpecialistModel.train([t.text for t in tickets], [truth[t.id] for t in tickets])
    folder = tmp_path / "models"
    folder.mkdir()
    old = folder / "specialist.joblib"
    old.write_bytes(b"the previous model")
    model.pipeline.unpicklable = lambda: None  # joblib fails half-way through the dump
    with pytest.raises(Exception, match="pickle|lambda"):
        model.save(old)
    assert old.read_bytes() == b"the previous model"
    assert sorted(p.name for p in folder.iterdir()) == ["specialist.joblib"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_tune_cascade_write_keeps_the_configs_mode(
    tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    data, config = write_fixture(tmp_path)
    os.chmod(config, 0o640)
    code, _, err = run_cli(
        "--config", str(config), "tune-cascade", "--first", "strong", "--then", "weak",
        "--data", str(data), "--write",
    )  # fmt: skip
    assert code == 0, err
    assert "[backends.cascade]" in config.read_text()
    assert mode(config) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_tune_cascade_write_creates_a_private_config(
    tmp_path: Path, isolated_home: Path, umask: int
) -> None:
    from tui.core import paths

    data, _ = write_fixture(tmp_path)
    paths.default_specialist_path().parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "strong.joblib").rename(paths.default_specialist_path())
    (tmp_path / "strong.json").rename(paths.default_specialist_path().with_suffix(".json"))
    config = paths.default_config_path()
    assert not config.exists()
    code, _, err = run_cli(
        "tune-cascade", "--first", "specialist", "--then", "gpt-4o-mini", "--data", str(data),
        "--write",
    )  # fmt: skip
    assert code == 0, err
    assert config.exists() and mode(config) == 0o600


LABELLED = [
    ("I was charged twice for my order", "billing"),
    ("refund the payment please, wrong amount", "billing"),
    ("my invoice shows the wrong total", "billing"),
    ("where is my parcel, tracking is stuck", "shipping"),
    ("the courier lost my package", "shipping"),
    ("delivery is a week late", "shipping"),
]


def cli(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TRIAGEDESK_DB", None)
    env.pop("TRIAGEDESK_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tui", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.jsonl"
    rows = [
        json.dumps({"id": f"L{i}", "text": text, "label": label})
        for i, (text, label) in enumerate(LABELLED * 3)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("where", ["root-folder", "under-a-file", "existing-folder"])
def test_train_to_an_unwritable_destination_fails_before_training(
    tmp_path: Path, isolated_home: Path, labelled: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = {
        "root-folder": Path("/"),
        "under-a-file": blocker / "models" / "specialist.joblib",
        "existing-folder": tmp_path,
    }[where]
    before = sorted(os.listdir(tmp_path))
    # An unknown kind fails at the first step of training: the destination must fail first.
    r = cli(isolated_home, "train", "--data", str(labelled), "--out", str(out), "--kind", "nope")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"triagedesk: error: --out {out}"), r.stderr
    assert "nope" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli(isolated_home, "train", "--data", str(labelled), "--out", str(out))
    assert r.returncode == 2 and "trained" not in r.stdout, r.stderr
    assert sorted(os.listdir(tmp_path)) == before
    assert not [name for name in os.listdir("/") if name.endswith(".tmp")]


def test_train_writes_a_private_model_through_the_cli(
    tmp_path: Path, isolated_home: Path, labelled: Path, umask: int
) -> None:
    out = tmp_path / "fresh" / "model.joblib"
    r = cli(isolated_home, "train", "--data", str(labelled), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert mode(out) == 0o600 and mode(out.parent) == 0o700


def test_the_demo_writes_private_files(isolated_home: Path, umask: int) -> None:
    """The demo's database, model and config (the config names the model's path) are the
    user's alone, as every other file triagedesk writes."""
    r = cli(isolated_home, "demo", "--no-tui", "--size", "100")
    assert r.returncode == 0, r.stderr
    data = isolated_home / "data"
    written = [data / "demo.db", data / "demo.toml", *sorted((data / "models").iterdir())]
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    assert mode(data) == 0o700 and mode(data / "models") == 0o700
