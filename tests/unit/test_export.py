"""Retraining export: agent labels only, cleaning, stratified split, formats, atomic writes."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui.cli import run
from tui.core import dedup
from tui.core.export import ExportError, export, neutralise_cell, split
from tui.core.models import Decision, Label, Taxonomy, Ticket
from tui.core.pii import luhn_valid, scrub
from tui.core.prompt import build_prompt
from tui.core.store import Store

TAXONOMY = Taxonomy(
    labels=(
        Label(name="billing", description="Charges, invoices, refunds"),
        Label(name="shipping", description="Delivery, tracking, delays"),
        Label(name="returns", description="Returns and exchanges"),
        Label(name="account", description="Login and profile"),
    )
)
WORDS = [
    "parcel",
    "invoice",
    "refund",
    "courier",
    "password",
    "login",
    "jacket",
    "shoes",
    "card",
    "charged",
    "twice",
    "late",
    "lost",
    "tracking",
    "label",
    "exchange",
    "size",
    "colour",
    "address",
    "email",
    "profile",
    "order",
    "week",
    "yesterday",
    "please",
    "urgent",
    "help",
    "broken",
    "damaged",
    "missing",
    "wrong",
    "amount",
    "bank",
    "transfer",
    "cancel",
    "subscription",
]


def text_for(label: str, i: int) -> str:
    """A distinct ticket text: twelve seeded random words, never a near duplicate of another."""
    rng = random.Random(f"{label}-{i}")
    return f"{label} case {i}: " + " ".join(rng.choice(WORDS) for _ in range(12))


def decision(tid: str, label: str) -> Decision:
    return Decision(
        ticket_id=tid, run_id="r1", backend="spec", backend_type="specialist", label=label
    )


def build_store(path: Path, per_label: int = 8) -> Store:
    """Tickets labelled every way an agent can, plus some that must never be exported."""
    store = Store(path)
    imported = [
        Ticket(id=f"I-{label}-{i}", text=text_for(label, i))
        for label in ("billing", "shipping", "returns")
        for i in range(per_label)
    ]
    store.import_tickets(imported, {t.id: t.id.split("-")[1] for t in imported}, source="f")
    extra = [
        Ticket(id="ACC-1", text=text_for("account", 1)),
        Ticket(id="COR-1", text=text_for("billing", 100)),
        Ticket(id="CLI-1", text=text_for("shipping", 100)),
        Ticket(id="PRED-1", text=text_for("returns", 100)),
        Ticket(id="NONE-1", text=text_for("returns", 101)),
        Ticket(id="UNDO-1", text=text_for("returns", 102)),
        Ticket(id="OUT-1", text=text_for("legal", 1)),
    ]
    store.import_tickets(extra)
    store.record_decisions([decision("ACC-1", "account"), decision("PRED-1", "returns")])
    store.record_decisions([decision("COR-1", "shipping")])
    store.add_label("ACC-1", "account", agent="ann", source="accept")
    store.add_label("COR-1", "billing", agent="ann", source="correct")
    store.add_label("CLI-1", "shipping", agent="bob", source="cli")
    store.add_label("UNDO-1", "returns", agent="cy", source="accept")
    store.undo_last_label("cy")
    store.add_label("OUT-1", "legal", agent="bob", source="cli")
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return build_store(tmp_path / "t.db")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_rows_are_agent_labels_only(store: Store) -> None:
    rows = store.export_rows()
    ids = {r[0] for r in rows}
    assert {"ACC-1", "COR-1", "CLI-1", "OUT-1"} <= ids
    assert not ids & {"PRED-1", "NONE-1", "UNDO-1"}
    assert {r[3] for r in rows} == {"import", "accept", "correct", "cli"}
    with_predictions = {r[0]: r for r in store.export_rows(include_predictions=True)}
    assert with_predictions["PRED-1"][2:] == ("returns", "prediction")
    assert "NONE-1" not in with_predictions


def check_openai_line(record: dict[str, Any], taxonomy: Taxonomy) -> tuple[str, str]:
    """OpenAI chat fine-tuning rules for our task; returns (ticket text, label)."""
    assert list(record) == ["messages"]
    messages = record["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    for m in messages:
        assert set(m) == {"role", "content"} and isinstance(m["content"], str) and m["content"]
    answer = json.loads(messages[2]["content"])
    assert list(answer) == ["label"] and answer["label"] in taxonomy
    user = messages[1]["content"]
    text = user.removeprefix("<ticket>\n").removesuffix("\n</ticket>")
    assert messages[:2] == build_prompt(text, taxonomy).messages()
    return text, answer["label"]


def test_openai_round_trip(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "ft"
    report = export(store, TAXONOMY, fmt="openai", out=out)
    assert sorted(os.listdir(out)) == ["report.json", "train.jsonl", "validation.jsonl"]
    assert (out / "train.jsonl").stat().st_mode & 0o777 == 0o600  # customer text: private
    train = read_jsonl(out / "train.jsonl")
    validation = read_jsonl(out / "validation.jsonl")
    assert len(train) == report.train_rows >= 10 and len(validation) == report.validation_rows
    exported = dict(check_openai_line(r, TAXONOMY) for r in train + validation)
    expected = {text: label for _, text, label, _ in store.export_rows() if label in TAXONOMY}
    assert exported == expected
    data = json.loads((out / "report.json").read_text())
    assert data["format"] == "openai" and data["seed"] == 13 and data["val_fraction"] == 0.2
    assert data["source_db"] == str(store.path)
    assert data["out_of_taxonomy_dropped"] == 1 and data["out_of_taxonomy_labels"] == {"legal": 1}
    assert data["duplicates_dropped"] == {"exact": 0, "near": 0} and data["conflicts_dropped"] == 0
    assert data["pii_scrubbed"] is None
    assert sum(v["train"] + v["validation"] for v in data["per_label"].values()) == len(exported)
    assert data["per_label"]["account"] == {"train": 1, "validation": 0}


def test_hf_round_trip(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    export(store, TAXONOMY, fmt="hf", out=out, val_fraction=0.25)
    names = json.loads((out / "labels.json").read_text())
    assert names == ["billing", "shipping", "returns", "account"]
    rows = read_jsonl(out / "train.jsonl") + read_jsonl(out / "validation.jsonl")
    assert all(set(r) == {"text", "label"} and r["label"] in names for r in rows)
    assert set(names) <= {r["label"] for r in rows}
    if importlib.util.find_spec("datasets") is not None:  # pragma: no cover - optional
        import datasets

        loaded = datasets.load_dataset(
            "json",
            data_files={"train": str(out / "train.jsonl")},
            split="train",
        )
        assert loaded.column_names == ["text", "label"]


def test_csv_round_trip_neutralises_formulas(tmp_path: Path) -> None:
    store = build_store(tmp_path / "t.db")
    nasty = {
        "X-1": '=HYPERLINK("http://evil","click") refund now',
        "X-2": "+1 555 123 4567 called about my parcel twice",
        "X-3": "-5 stars, wrong jacket size again",
        "X-4": "@SUM(A1:A9) my invoice is off",
        "X-5": "\tcmd|' /C calc'!A0 password reset",
    }
    store.import_tickets(
        [Ticket(id=k, text=v) for k, v in nasty.items()], {k: "billing" for k in nasty}
    )
    out = tmp_path / "csv"
    report = export(store, TAXONOMY, fmt="csv", out=out, val_fraction=0.0)
    assert report.validation_rows == 0
    with (out / "train.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["text", "label"]
    texts = [r[0] for r in rows[1:]]
    for value in nasty.values():
        assert "'" + value in texts
    assert not any(t.startswith(("=", "+", "-", "@", "\t", "\r")) for t in texts)
    assert (out / "validation.csv").read_text() == "text,label\n"
    assert neutralise_cell("plain") == "plain" and neutralise_cell("\rx") == "'\rx"


def test_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    store = build_store(tmp_path / "t.db", per_label=20)
    a = export(store, TAXONOMY, fmt="hf", out=tmp_path / "a", seed=5)
    b = export(store, TAXONOMY, fmt="hf", out=tmp_path / "b", seed=5)
    c = export(store, TAXONOMY, fmt="hf", out=tmp_path / "c", seed=6)
    for name in ("train.jsonl", "validation.jsonl", "labels.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "validation.jsonl").read_bytes() != (
        tmp_path / "c" / "validation.jsonl"
    ).read_bytes()
    assert a.per_label == b.per_label == c.per_label
    # 21 billing (20 imported + 1 corrected), 21 shipping, 20 returns, 1 account
    assert a.per_label["returns"] == {"train": 16, "validation": 4}
    assert a.per_label["account"] == {"train": 1, "validation": 0}
    assert a.validation_rows == round(63 * 0.2)


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    fraction=st.floats(0.0, 0.95),
    seed=st.integers(0, 10_000),
)
def test_split_properties(counts: list[int], fraction: float, seed: int) -> None:
    labels = [f"l{i}" for i, c in enumerate(counts) for _ in range(c)]
    train, validation = split(labels, fraction, seed)
    assert sorted(train + validation) == list(range(len(labels)))
    in_train = Counter(labels[i] for i in train)
    assert all(in_train[f"l{i}"] >= 1 for i in range(len(counts)))
    assert len(validation) == min(round(len(labels) * fraction), len(labels) - len(counts))
    assert split(labels, fraction, seed) == (train, validation)


def test_exact_near_and_conflicting_duplicates(tmp_path: Path) -> None:
    store = build_store(tmp_path / "t.db")
    base = text_for("billing", 0)
    long_text = " ".join(text_for("shipping", i) for i in range(200, 204))
    near = long_text.replace("case 201", "case 2O1")
    conflict = text_for("returns", 300)
    store.import_tickets(
        [
            Ticket(id="D-1", text="  " + base.upper().replace(" ", "\n  ")),
            Ticket(id="D-2", text=long_text),
            Ticket(id="D-3", text=near),
            Ticket(id="D-4", text=conflict),
            Ticket(id="D-5", text=conflict.title()),
        ],
        {
            "D-1": "billing",
            "D-2": "shipping",
            "D-3": "shipping",
            "D-4": "returns",
            "D-5": "account",
        },
    )
    report = export(store, TAXONOMY, fmt="hf", out=tmp_path / "hf")
    assert report.duplicates_dropped == {"exact": 1, "near": 1}
    assert report.conflicts_dropped == 2 and report.conflict_groups == 1
    texts = {r["text"] for r in read_jsonl(tmp_path / "hf" / "train.jsonl")} | {
        r["text"] for r in read_jsonl(tmp_path / "hf" / "validation.jsonl")
    }
    assert base in texts and long_text in texts
    assert near not in texts and conflict not in texts and conflict.title() not in texts


def test_near_duplicates_threshold() -> None:
    a = (
        "my parcel from last tuesday never arrived and the tracking page shows nothing at all,"
        " could you please check with the courier what happened and send a replacement"
    )
    tiny_edit = a.replace("tuesday", "tuesdey")
    reworded = a.replace("never arrived", "did not come").replace("please check", "ask")
    far = "please refund the second charge on my card from the order placed last week"
    assert dedup.jaccard(dedup.shingles(a), dedup.shingles(tiny_edit)) >= 0.9
    assert dedup.jaccard(dedup.shingles(a), dedup.shingles(reworded)) < 0.9
    groups = dedup.group_duplicates([a, far, reworded, a.upper(), tiny_edit])
    assert groups.members == [[0, 3, 4], [1], [2]]
    assert groups.kinds == {3: "exact", 4: "near"}
    assert dedup.group_duplicates([a, tiny_edit], near=False).members == [[0], [1]]
    assert dedup.group_duplicates(["", "  ", "abc"]).members == [[0, 1], [2]]


def test_dedup_scales_without_all_pairs() -> None:
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(20)) + f" #{i}" for i in range(20_000)]
    texts += [t + "." for t in texts[:500]]
    started = time.perf_counter()
    groups = dedup.group_duplicates(texts)
    elapsed = time.perf_counter() - started
    assert sum(1 for k in groups.kinds.values() if k == "near") >= 495
    assert elapsed < 30, f"{elapsed:.1f} s for 20,500 rows"


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("mail me at jane.doe+x@mail.example.co.uk now", "mail me at [EMAIL] now", "EMAIL"),
        ("call +44 20 7946 0958 today", "call [PHONE] today", "PHONE"),
        ("call (555) 123-4567 today", "call [PHONE] today", "PHONE"),
        ("or 555-123-4567.", "or [PHONE].", "PHONE"),
        ("card 4111 1111 1111 1111 was charged", "card [CARD] was charged", "CARD"),
        ("card 5500-0000-0000-0004 charged", "card [CARD] charged", "CARD"),
        ("card 378282246310005 (amex)", "card [CARD] (amex)", "CARD"),
        ("iban DE89 3704 0044 0532 0130 00 THANKS", "iban [IBAN] THANKS", "IBAN"),
        ("to GB82WEST12345698765432 please", "to [IBAN] please", "IBAN"),
    ],
)
def test_pii_scrubbed(text: str, expected: str, kind: str) -> None:
    scrubbed, counts = scrub(text)
    assert scrubbed == expected and counts == Counter({kind: 1})


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 is not a card number (Luhn fails)",
        "reference 1234567890123456 please",
        "order no. 12345678 and #1234567 and A12345",
        "delivered 2024-05-01 at 10:30, tracking 1Z999E1234567890",
        "paid $1,234.56 on 5/12",
    ],
)
def test_pii_leaves_non_pii_alone(text: str) -> None:
    assert scrub(text) == (text, Counter())


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_export_scrubs_and_counts_pii(tmp_path: Path) -> None:
    store = build_store(tmp_path / "t.db")
    store.import_tickets(
        [Ticket(id="P-1", text="refund to jo@x.io, card 4111 1111 1111 1111, tel +1 555 123 4567")],
        {"P-1": "billing"},
    )
    report = export(store, TAXONOMY, fmt="hf", out=tmp_path / "hf", scrub_pii=True)
    assert report.pii_scrubbed == {"EMAIL": 1, "IBAN": 0, "CARD": 1, "PHONE": 1}
    body = (tmp_path / "hf" / "train.jsonl").read_text() + (
        tmp_path / "hf" / "validation.jsonl"
    ).read_text()
    assert "refund to [EMAIL], card [CARD], tel [PHONE]" in body and "4111" not in body


def test_failed_write_leaves_nothing(store: Store, tmp_path: Path, monkeypatch: Any) -> None:
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    out = tmp_path / "fresh" / "ft"
    with pytest.raises(ExportError, match="nothing written"):
        export(store, TAXONOMY, fmt="openai", out=out)
    assert not out.exists() or os.listdir(out) == []

    previous = tmp_path / "previous"
    monkeypatch.setattr(os, "replace", real_replace)
    export(store, TAXONOMY, fmt="hf", out=previous, seed=1)
    before = {p.name: p.read_bytes() for p in previous.iterdir()}
    calls["n"] = 0
    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(ExportError):
        export(store, TAXONOMY, fmt="hf", out=previous, seed=2)
    assert {p.name: p.read_bytes() for p in previous.iterdir()} == before


def test_errors(tmp_path: Path) -> None:
    empty = Store(tmp_path / "empty.db")
    empty.import_tickets([Ticket(id="a", text="hello")])
    with pytest.raises(ExportError, match="no agent-labelled tickets"):
        export(empty, TAXONOMY, fmt="csv", out=tmp_path / "x")
    small = Store(tmp_path / "small.db")
    tickets = [Ticket(id=f"s{i}", text=text_for("billing", i)) for i in range(9)]
    small.import_tickets(tickets, {t.id: "billing" for t in tickets})
    with pytest.raises(ExportError, match="at least 10"):
        export(small, TAXONOMY, fmt="openai", out=tmp_path / "y", val_fraction=0.0)
    assert not (tmp_path / "y").exists()
    with pytest.raises(ExportError, match="val-fraction"):
        export(small, TAXONOMY, fmt="hf", out=tmp_path / "z", val_fraction=1.0)


def test_cli_export(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    build_store(db).close()
    out, err = io.StringIO(), io.StringIO()
    args = ["--db", str(db), "export", "--format", "openai", "--out", str(tmp_path / "o")]
    assert run(args, out=out, err=err) == 0, err.getvalue()
    assert "train /" in out.getvalue() and (tmp_path / "o" / "train.jsonl").exists()
    empty = tmp_path / "empty.db"
    Store(empty).close()
    args = ["--db", str(empty), "export", "--format", "hf", "--out", str(tmp_path / "e")]
    err = io.StringIO()
    assert run(args, out=io.StringIO(), err=err) == 2
    assert len(err.getvalue().strip().splitlines()) == 1


def test_flywheel_modules_never_import_the_ui() -> None:
    modules = [
        "tui.core.export",
        "tui.core.dedup",
        "tui.core.pii",
        "tui.core.learning.curve",
        "tui.core.cascade_tuning",
    ]
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('textual', 'rich', 'screens') or m == 'tui.app')))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_cli_export_can_include_predictions(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    build_store(db).close()
    base = ["--db", str(db), "export", "--format", "hf", "--out"]
    args = [*base, str(tmp_path / "p"), "--include-predictions"]
    assert run(args, out=io.StringIO(), err=io.StringIO()) == 0
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["include_predictions"] is True and report["label_sources"]["prediction"] == 1


def test_export_says_what_dropped_every_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "dropped.db")
    conflict = text_for("returns", 7)
    store.import_tickets(
        [
            Ticket(id="o-1", text=text_for("billing", 1)),
            Ticket(id="c-1", text=conflict),
            Ticket(id="c-2", text=conflict.upper()),
        ],
        {"o-1": "spam", "c-1": "returns", "c-2": "account"},
    )
    expected = (
        "nothing left to export: 3 labelled tickets, all dropped"
        " (1 outside the taxonomy, 2 conflicting duplicates)"
    )
    with pytest.raises(ExportError) as raised:
        export(store, TAXONOMY, fmt="hf", out=tmp_path / "out")
    assert str(raised.value) == expected
    assert not (tmp_path / "out").exists()
