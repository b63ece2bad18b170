"""Accuracy counts only labels the answering model did not train on: training sets recorded by
`train` (database or file), matched by ticket id or text hash, moved by new labels and retraining;
`stats --json`'s `scored_on`, `excluded_trained` and Wilson interval; the demo's held-out labels.

Everything runs through the real command line on real SQLite files and a real specialist.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tui.cli import run
from tui.core.intervals import accuracy_text, wilson_interval
from tui.core.learning.model import SpecialistModel
from tui.core.store import Store
from tui.core.training_sets import read_training_set, text_sha256, training_set_path

PHRASES = {
    "billing": [
        "I was charged twice for order {n}",
        "please refund payment {n}, the amount is wrong",
        "invoice {n} shows the wrong total",
        "my card was billed for {n} after I cancelled",
    ],
    "shipping": [
        "where is parcel {n}, tracking is stuck",
        "delivery of {n} is three days late",
        "the courier lost package {n}",
        "order {n} never arrived at my address",
    ],
    "account": [
        "I cannot log in to account {n}",
        "reset the password of user {n}",
        "my account {n} is locked after too many tries",
        "change the email address on profile {n}",
    ],
}


def make_rows(n: int, *, start: int = 0, with_ids: bool = True) -> list[dict[str, str]]:
    names = list(PHRASES)
    rows = []
    for i in range(start, start + n):
        label = names[i % len(names)]
        row = {"text": PHRASES[label][(i // len(names)) % 4].format(n=5000 + i), "label": label}
        if with_ids:
            row["id"] = f"T-{i:03d}"
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]], *, labels: bool = True) -> Path:
    lines = [
        json.dumps(r if labels else {k: v for k, v in r.items() if k != "label"}) for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Desk:
    """A database, a config whose specialist model lives in tmp_path, and the CLI on them."""

    def __init__(self, tmp_path: Path, name: str = "inbox") -> None:
        self.db = tmp_path / f"{name}.db"
        self.model = tmp_path / f"{name}-specialist.joblib"
        self.config = tmp_path / f"{name}.toml"
        self.config.write_text(
            f'[routing]\nbackend = "specialist"\n\n[backends.specialist]\ntype = "specialist"\n'
            f"path = {json.dumps(str(self.model))}\n",
            encoding="utf-8",
        )

    def cli(self, *argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        code = run(["--db", str(self.db), "--config", str(self.config), *argv], out=out, err=err)
        assert code == 0, err.getvalue()
        return out.getvalue()

    def stats(self) -> dict[str, Any]:
        (specialist,) = json.loads(self.cli("stats", "--json"))
        return dict(specialist)

    def label(self, rows: list[dict[str, str]], label: str | None = None) -> None:
        for row in rows:
            self.cli("label", row["id"], label or row["label"])


def held_out_accuracy(db: Path, ticket_ids: list[str]) -> tuple[int, int]:
    """(correct, n) of the specialist's latest decisions on these tickets, read from the raw
    tables with plain SQL: the figure `stats` must agree with."""
    marks = ",".join("?" * len(ticket_ids))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.label = t.label FROM tickets t JOIN decisions d ON d.id = (SELECT max(id)"
            f" FROM decisions WHERE ticket_id = t.id AND backend = 'specialist')"
            f" WHERE t.id IN ({marks})",
            ticket_ids,
        ).fetchall()
    return sum(int(r[0]) for r in rows), len(rows)


def assert_interval(stats: dict[str, Any], correct: int, n: int) -> None:
    interval = wilson_interval(correct, n)
    assert stats["scored_on"] == n
    assert stats["accuracy"] == pytest.approx(correct / n)
    assert stats["accuracy_low"] == pytest.approx(interval.low)
    assert stats["accuracy_high"] == pytest.approx(interval.high)


def test_a_model_is_scored_only_on_labels_added_after_it_trained(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    rows = make_rows(60)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows, labels=False)))
    first, later, newest = rows[:18], rows[18:30], rows[30:36]
    desk.label(first)
    desk.cli("train")
    desk.cli("route", "--all")

    trained_only = desk.stats()
    assert trained_only["labelled"] == 18
    assert trained_only["excluded_trained"] == 18
    assert trained_only["scored_on"] == 0
    assert trained_only["accuracy"] is None and trained_only["accuracy_low"] is None

    desk.label(later)  # labels B, after training: they count, A does not
    stats = desk.stats()
    assert stats["labelled"] == 30 and stats["excluded_trained"] == 18
    assert_interval(stats, *held_out_accuracy(desk.db, [r["id"] for r in later]))

    changed = first[0]  # a trained label changed after training counts for that model
    other = next(name for name in PHRASES if name != changed["label"])
    desk.cli("label", changed["id"], other)
    stats = desk.stats()
    assert stats["excluded_trained"] == 17
    ids = [changed["id"]] + [r["id"] for r in later]
    assert_interval(stats, *held_out_accuracy(desk.db, ids))

    desk.cli("train")  # retrained on A+B: the old model's decisions still stand
    assert desk.stats()["excluded_trained"] == 17
    desk.cli("route", "--all")  # now the new model answers: nothing it was not trained on
    stats = desk.stats()
    assert (stats["labelled"], stats["excluded_trained"], stats["scored_on"]) == (30, 30, 0)

    desk.label(newest)
    stats = desk.stats()
    assert stats["excluded_trained"] == 30
    assert_interval(stats, *held_out_accuracy(desk.db, [r["id"] for r in newest]))


def test_the_training_set_is_recorded_in_the_database_and_beside_the_model(
    tmp_path: Path,
) -> None:
    desk = Desk(tmp_path)
    rows = make_rows(12)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows)))
    desk.cli("train")
    info = SpecialistModel.read_info(desk.model)
    assert info is not None and info.model_id
    training = read_training_set(training_set_path(desk.model))
    assert training is not None and training.model == info.identity
    assert {e.ticket_id for e in training.examples} == {r["id"] for r in rows}
    assert {e.text_sha256 for e in training.examples} == {text_sha256(r["text"]) for r in rows}
    assert SpecialistModel.load(desk.model).training == training  # inside the artefact too
    with sqlite3.connect(desk.db) as conn:
        (model,) = conn.execute("SELECT model FROM trained_models").fetchone()
        events = conn.execute(
            "SELECT e.ticket_id, e.label, e.label_event_id = l.id FROM trained_examples e"
            " JOIN label_events l ON l.ticket_id = e.ticket_id"
        ).fetchall()
    assert model == info.identity
    assert sorted(events) == sorted((r["id"], r["label"], 1) for r in rows)
    desk.cli("route", "--all")
    with sqlite3.connect(desk.db) as conn:
        assert {r[0] for r in conn.execute("SELECT model FROM decisions")} == {info.identity}


def test_a_model_trained_from_a_file_is_matched_on_text_in_a_database_it_never_saw(
    tmp_path: Path,
) -> None:
    desk = Desk(tmp_path)
    rows = make_rows(30, with_ids=False)
    data = write_jsonl(tmp_path / "labelled.jsonl", rows)
    desk.cli("train", "--data", str(data))  # no database yet: nothing recorded there
    assert not desk.db.exists()

    inbox = [{**r, "id": f"Z-{i}"} for i, r in enumerate(rows[:20])]  # other ids, same texts
    fresh = make_rows(6, start=100)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", inbox + fresh)))
    desk.cli("route", "--all")
    stats = desk.stats()  # the model's training set, read beside it, is recorded now
    assert stats["labelled"] == 26 and stats["excluded_trained"] == 20
    assert_interval(stats, *held_out_accuracy(desk.db, [r["id"] for r in fresh]))

    late = [{**rows[25], "id": "LATE-1"}]  # imported after the model was recorded
    desk.cli("import", str(write_jsonl(tmp_path / "late.jsonl", late)))
    desk.cli("route")
    assert desk.stats()["excluded_trained"] == 21


def test_labels_that_count_is_the_rule_for_any_comparison(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    rows = make_rows(9)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows, labels=False)))
    desk.label(rows[:6])
    desk.cli("train")
    info = SpecialistModel.read_info(desk.model)
    assert info is not None
    desk.label(rows[6:])
    desk.cli("label", rows[0]["id"], rows[1]["label"])  # changed after training
    with Store(desk.db) as store:
        latest = {
            r["id"]: store.label_history(r["id"])[-1].id for r in rows
        }  # each ticket's current label event
        asked = [(ticket, event) for ticket, event in latest.items() if event is not None]
        counted = store.labels_that_count(info.identity, asked)
        cascade = store.labels_that_count(f"{info.identity}→gpt-4o-mini", asked)
        other = store.labels_that_count("gpt-4o-mini", asked)
        first_event = store.label_history(rows[0]["id"])[0].id
        assert first_event is not None
        original = store.labels_that_count(info.identity, [(rows[0]["id"], first_event)])
    expected = [ticket in {r["id"] for r in rows[6:]} | {rows[0]["id"]} for ticket, _ in asked]
    assert counted == expected == cascade
    assert other == [True] * len(asked)
    assert original == [False]  # the label event it learnt from


def test_stats_table_shows_the_interval_and_what_was_left_out(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    rows = make_rows(24)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows, labels=False)))
    desk.label(rows[:12])
    desk.cli("train")
    desk.cli("route", "--all")
    assert "no held-out labels yet" in desk.cli("stats")
    desk.label(rows[12:])
    stats = desk.stats()
    text = desk.cli("stats")
    shown = accuracy_text(
        stats["accuracy"], stats["accuracy_low"], stats["accuracy_high"], stats["scored_on"]
    )
    assert shown.endswith("n=12)") and shown in text
    assert "specialist 12)" in text  # the labels left out, named


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ((0.863, 0.8127, 0.897, 412), "86.3% (81–90%, n=412)"),
        ((1.0, 0.72, 1.0, 10), "100.0% (72–100%, n=10)"),
        ((None, None, None, 0), "–"),
    ],
)
def test_accuracy_text(args: tuple[Any, ...], shown: str) -> None:
    assert accuracy_text(*args) == shown
    assert accuracy_text(None, None, None, 0, left_out=3) == "no held-out labels yet"


def test_the_demo_holds_labels_back_and_scores_its_specialist_on_them(tmp_path: Path) -> None:
    from tui.services.demo_build import DEMO_HOLD_OUT_EVERY, build_demo, demo_paths

    target = demo_paths(tmp_path / "demo.db", tmp_path / "demo.toml")
    settings = build_demo(target, size=300, say=lambda _line: None)
    with Store(target.db) as store:
        from tui.core.learning.training import held_out_stats

        by_backend = {s.backend: s for s in held_out_stats(settings, store)}
        stats = by_backend["specialist"]
        labelled = len(store.training_examples())
    held_back = len(range(0, labelled, DEMO_HOLD_OUT_EVERY))
    assert stats.labelled == labelled
    assert stats.scored_on == held_back > 0
    assert stats.excluded_trained == labelled - held_back
    assert stats.accuracy_low is not None and stats.accuracy_low < (stats.accuracy or 0)

    said: list[str] = []
    build_demo(target, say=said.append)  # built already, with its training set: no hint
    assert len(said) == 1 and "already built" in said[0]
    sidecar = target.model.with_suffix(".json")  # as a build from before training sets
    info = json.loads(sidecar.read_text())
    del info["model_id"]
    sidecar.write_text(json.dumps(info))
    build_demo(target, say=said.append)
    assert "`demo --fresh` rebuilds it" in said[-1]


def test_tune_cascade_on_the_database_leaves_out_the_specialists_training_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tui.core import registry

    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    desk = Desk(tmp_path)
    with desk.config.open("a", encoding="utf-8") as handle:
        handle.write('\n[backends.hashy]\ntype = "hash"\n')
    rows = make_rows(30)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows, labels=False)))
    desk.label(rows[:18])
    desk.cli("train")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--db", str(desk.db), "--config", str(desk.config), "tune-cascade"]
    argv += ["--first", "specialist", "--then", "hashy", "--json"]
    assert run(argv, out=out, err=err) == 2  # every label was trained on: nothing to tune on
    assert "all 18 labelled tickets were trained on by specialist or hashy" in err.getvalue()
    desk.label(rows[18:])
    out, err = io.StringIO(), io.StringIO()
    assert run(argv, out=out, err=err) == 0, err.getvalue()
    assert json.loads(out.getvalue())["n"] == 12
    assert "left out 18 labelled tickets that specialist or hashy trained on" in err.getvalue()


def test_a_fine_tuned_model_leaves_out_its_training_split_only(tmp_path: Path) -> None:
    """The fine-tune's recording hook without the training stack: the pipeline's training set
    of a real split, written where `finetune` writes it, read through the configured table."""
    from tui.core.learning.llm.data import from_store, make_split
    from tui.core.learning.llm.export import backend_toml
    from tui.core.learning.llm.pipeline import training_set
    from tui.core.models import Decision
    from tui.core.training_sets import write_training_set

    desk = Desk(tmp_path)
    rows = make_rows(30)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows)))
    with Store(desk.db) as store:
        split = make_split(from_store(store), None, val_fraction=0.2, seed=13)
    out = tmp_path / "ft"
    out.mkdir()
    gguf = out / "model-q8_0.gguf"
    training = training_set(gguf, split, "gemma3-270m", str(desk.db))
    write_training_set(out / "training.json", training)
    assert {e.ticket_id for e in training.examples} == {e.ticket_id for e in split.train}
    with desk.config.open("a", encoding="utf-8") as handle:
        handle.write("\n" + backend_toml("tiny", gguf, training.model).split("\n", 1)[1])
    truth = {r["id"]: r["label"] for r in rows}
    with Store(desk.db) as store:
        store.record_decisions(
            [
                Decision(
                    ticket_id=ticket,
                    run_id="ft",
                    backend="tiny",
                    backend_type="llamacpp-local",
                    model=training.model,
                    label=label,
                )
                for ticket, label in truth.items()
            ]
        )
    (tiny,) = [s for s in json.loads(desk.cli("stats", "--json")) if s["backend"] == "tiny"]
    assert tiny["excluded_trained"] == len(split.train)
    assert tiny["scored_on"] == len(split.validation) > 0
    assert tiny["accuracy"] == 1.0 and tiny["accuracy_low"] < 1.0


def test_retraining_from_the_tui_records_the_new_model(tmp_path: Path) -> None:
    from tui.core.config import load_settings
    from tui.core.learning.training import retrain

    desk = Desk(tmp_path)
    rows = make_rows(15)
    desk.cli("import", str(write_jsonl(tmp_path / "inbox.jsonl", rows)))
    settings = load_settings(desk.config, required=True)
    with Store(desk.db) as store:
        assert "15 labelled tickets" in retrain(settings, store)
        info = SpecialistModel.read_info(desk.model)
        assert info is not None and store.is_recorded(info.identity)
        events = [(r["id"], store.label_history(r["id"])[-1].id) for r in rows]
        assert store.labels_that_count(info.identity, events) == [False] * 15  # type: ignore[arg-type]
