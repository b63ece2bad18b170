"""Every command through a real subprocess, with SPEC's exit statuses and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LABELLED = [
    ("I was charged twice for my order", "billing"),
    ("refund the payment please, wrong amount", "billing"),
    ("my invoice shows the wrong total", "billing"),
    ("card charged again after cancelling", "billing"),
    ("where is my parcel, tracking is stuck", "shipping"),
    ("delivery is three days late", "shipping"),
    ("the courier lost my package", "shipping"),
    ("tracking number does not work", "shipping"),
    ("I want to return these shoes", "returns"),
    ("how do I send back a damaged item", "returns"),
    ("return label please, wrong size", "returns"),
    ("can I exchange this jacket", "returns"),
]


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGEDESK_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("TRIAGEDESK_DB", None)
    env.pop("TRIAGEDESK_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "tui", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        input=stdin,
    )


@pytest.fixture
def labelled_file(tmp_path: Path) -> Path:
    path = tmp_path / "labelled.jsonl"
    lines = [
        json.dumps({"id": f"L{i}", "text": t, "label": lab})
        for i, (t, lab) in enumerate(LABELLED * 2)
    ]
    # duplicate texts get distinct ids so the specialist sees enough examples
    path.write_text("\n".join(lines) + "\n")
    return path


def test_full_headless_workflow(isolated_home: Path, tmp_path: Path, labelled_file: Path) -> None:
    r = run(isolated_home, "import", str(labelled_file))
    assert r.returncode == 0, r.stderr
    assert "imported 24 tickets" in r.stdout
    r = run(isolated_home, "import", str(labelled_file))
    assert "0 tickets (24 already present" in r.stdout
    inbox = tmp_path / "inbox.csv"
    inbox.write_text(
        "id,subject,body\nN1,Refund,I was charged twice\nN2,Where,parcel tracking stuck\n"
    )
    assert run(isolated_home, "import", str(inbox)).returncode == 0
    r = run(isolated_home, "train")
    assert r.returncode == 0 and "trained tfidf specialist on 24 tickets, 3 labels" in r.stdout, (
        r.stderr
    )
    r = run(isolated_home, "route")
    assert r.returncode == 0, r.stderr
    assert "routed 26 tickets" in r.stdout and "0 failed" in r.stdout
    r = run(isolated_home, "route")
    assert "routed 0 tickets" in r.stdout
    r = run(isolated_home, "label", "N1", "billing", "--agent", "ann")
    assert r.returncode == 0 and "N1: labelled billing by ann" in r.stdout
    r = run(isolated_home, "stats", "--json")
    assert r.returncode == 0, r.stderr
    (spec,) = json.loads(r.stdout)
    assert spec["backend"] == "specialist" and spec["n"] == 26 and spec["errors"] == 0
    assert set(spec["latency_ms"]) == {"p50", "p95"} and spec["accuracy"] is not None
    learnt = spec["concurrency_limit"]  # what the adaptive limit ended the run at
    assert 1 <= learnt["limit"] <= learnt["max"] and learnt["cuts"] == 0
    r = run(isolated_home, "stats")
    assert "specialist" in r.stdout and "per month" in r.stdout
    assert f"calls at once, as the last run learnt: specialist {learnt['limit']} of" in r.stdout
    r = run(isolated_home, "route", "--all", "--limit", "5")
    assert "routed 5 tickets" in r.stdout
    r = run(isolated_home, "route", "--ids", "N1,N2")
    assert "routed 2 tickets" in r.stdout


def test_eval_json(isolated_home: Path, labelled_file: Path) -> None:
    assert run(isolated_home, "train", "--data", str(labelled_file)).returncode == 0
    r = run(
        isolated_home, "eval", "--backend", "specialist", "--data", str(labelled_file), "--json"
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {
        "backend",
        "n",
        "errors",
        "accuracy",
        "macro_f1",
        "latency_ms",
        "cost_usd",
        "cost_per_1k_usd",
        "per_label",
    } <= set(report)
    assert report["n"] == 24 and report["accuracy"] >= 0.9
    assert set(report["per_label"]["billing"]) == {"precision", "recall", "support"}
    assert not (isolated_home / "data" / "triagedesk.db").exists() or "decisions" not in r.stdout


def test_backends_listing(isolated_home: Path) -> None:
    r = run(isolated_home, "backends", "--json")
    entries = json.loads(r.stdout)
    assert {e["name"] for e in entries} == {"specialist", "gpt-4o-mini"}
    assert set(entries[0]) == {"name", "type", "model", "ok", "detail"}
    r = run(isolated_home, "backends", "--check", "--json")
    checked = {e["name"]: e for e in json.loads(r.stdout)}
    assert checked["specialist"]["ok"] is False and "not trained" in checked["specialist"]["detail"]
    assert (
        checked["gpt-4o-mini"]["ok"] is False
        and "OPENAI_API_KEY" in checked["gpt-4o-mini"]["detail"]
    )


@pytest.mark.parametrize(
    ("args", "needle", "existing_db"),
    [
        (["import", "/nonexistent/file.jsonl"], "file.jsonl", False),
        (["route", "--backend", "nope"], "unknown backend 'nope'", False),
        (["label", "NOPE", "billing"], "no ticket with id 'NOPE'", True),
        (["train"], "need at least 2 different labels", True),
        (["label", "NOPE", "billing"], "no database at", False),
        (["train"], "no database at", False),
        (
            ["--config", "/nonexistent.toml", "stats"],
            "nonexistent.toml: config file not found",
            False,
        ),
        (["frobnicate"], "invalid choice", False),
    ],
)
def test_bad_input_exits_2_with_one_line(
    isolated_home: Path, args: list[str], needle: str, existing_db: bool
) -> None:
    # Commands that only read or change what is stored refuse a missing database (issue 12,
    # item 17) instead of creating an empty one; with an empty one they say what is missing.
    if existing_db:
        from tui.core.store import Store

        Store(isolated_home / "data" / "triagedesk.db", make_folder=True).close()
    r = run(isolated_home, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_rows_import_nothing(isolated_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{not json\n{"id": "c", "text": "also fine"}\n')
    r = run(isolated_home, "import", str(bad))
    assert r.returncode == 2
    assert f"{bad}:2:" in r.stderr and "nothing imported" in r.stderr
    r = run(isolated_home, "stats", "--json")
    assert json.loads(r.stdout) == []


def test_invalid_config_names_file_and_key(isolated_home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[backends.x]\ntype = "openai"\nmodel = "m"\n')
    r = run(isolated_home, "--config", str(cfg), "backends")
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "backends.x" in r.stderr and "base_url" in r.stderr
    cfg.write_text("[routing\n")
    r = run(isolated_home, "--config", str(cfg), "backends")
    assert r.returncode == 2 and "invalid TOML" in r.stderr


def test_demo_builds_offline_and_reuses_its_database(isolated_home: Path) -> None:
    r = run(isolated_home, "demo", "--no-tui", "--size", "400")
    assert r.returncode == 0, r.stderr
    assert "trained specialist (tfidf) on" in r.stderr
    assert "trained embeddings (embeddings) on" in r.stderr
    assert "routed 400 tickets with specialist" in r.stderr
    assert "specialist" in r.stdout and "per month" in r.stdout
    data = isolated_home / "data"
    assert (data / "demo.db").exists() and (data / "demo.toml").exists()
    assert (data / "models" / "demo-specialist.joblib").exists()
    assert (data / "models" / "demo-embeddings.joblib").exists()
    # three backends answer offline, on a shared sample: real alternatives, no errors
    demo_files = ("--db", str(data / "demo.db"), "--config", str(data / "demo.toml"))
    listed = run(isolated_home, *demo_files, "stats", "--json")
    stats = {s["backend"]: s for s in json.loads(listed.stdout)}
    assert set(stats) == {"specialist", "embeddings", "local-cascade"}
    assert stats["specialist"]["n"] == 400
    assert stats["embeddings"]["n"] == stats["local-cascade"]["n"] == 300
    assert all(s["errors"] == 0 for s in stats.values())
    assert not (data / "models" / "specialist.joblib").exists()  # the user's own model is untouched
    again = run(isolated_home, "demo", "--no-tui", "--size", "400")
    assert again.returncode == 0 and "already built" in again.stderr


def test_eval_store_with_limit_stores_only_the_routed_tickets(
    isolated_home: Path, labelled_file: Path
) -> None:
    assert run(isolated_home, "train", "--data", str(labelled_file)).returncode == 0
    r = run(
        isolated_home,
        "eval",
        "--backend",
        "specialist",
        "--data",
        str(labelled_file),
        "--limit",
        "5",
        "--store",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n"] == 5
    (spec,) = json.loads(run(isolated_home, "stats", "--json").stdout)
    assert spec["n"] == 5 and spec["labelled"] == 5
