"""Learning curve: nested samples, and accuracy that grows with labels on the demo inbox."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from tui.cli import run
from tui.core.demo import DemoTicket, generate_inbox
from tui.core.learning.curve import format_curve, learning_curve, nested_sample
from tui.core.learning.model import TrainingError


def test_nested_sample_is_seeded_and_nested() -> None:
    labels = ["a"] * 10 + ["b"] * 3 + ["c"] * 7
    small = nested_sample(labels, 2, seed=1)
    large = nested_sample(labels, 5, seed=1)
    assert set(small) <= set(large)
    assert Counter(labels[i] for i in large) == {"a": 5, "b": 3, "c": 5}
    assert nested_sample(labels, 5, seed=1) == large
    assert nested_sample(labels, 5, seed=2) != large
    assert nested_sample(labels, None, seed=1) == list(range(len(labels)))


def test_accuracy_rises_with_labels() -> None:
    inbox = generate_inbox(800, seed=11, labelled_fraction=0.0)
    train, test = inbox[:600], inbox[600:]
    points = learning_curve(
        [d.ticket.text for d in train],
        [d.true_label for d in train],
        [d.ticket.text for d in test],
        [d.true_label for d in test],
        seed=13,
    )
    assert [p.per_class for p in points] == [2, 5, 10, 20, 50, None]
    assert points[-1].n_train == 600
    assert [p.n_train for p in points] == sorted(p.n_train for p in points)
    assert points[-1].accuracy >= points[0].accuracy + 0.1
    for before, after in zip(points, points[1:], strict=False):
        assert after.accuracy >= before.accuracy - 0.05
    assert points[-1].to_dict()["per_class"] == "all"
    table = format_curve(points)
    assert len(table) == len(points) + 1 and table[-1].strip().startswith("all")


def test_sizes_beyond_the_data_are_skipped() -> None:
    texts = ["refund my card", "charged twice", "parcel late", "tracking stuck"] * 3
    labels = ["billing", "billing", "shipping", "shipping"] * 3
    points = learning_curve(texts, labels, texts[:4], labels[:4], sizes=(2, 5, 10, None))
    assert [p.per_class for p in points] == [2, 5, None]
    with pytest.raises(TrainingError):
        learning_curve(texts[:1], labels[:1], texts, labels)
    with pytest.raises(ValueError, match="empty"):
        learning_curve(texts, labels, [], [])


def test_eval_curve_cli(tmp_path: Path) -> None:
    inbox = generate_inbox(500, seed=5, labelled_fraction=0.0)

    def write(path: Path, items: list[DemoTicket]) -> Path:
        path.write_text(
            "".join(
                json.dumps({"id": d.ticket.id, "text": d.ticket.text, "label": d.true_label}) + "\n"
                for d in items
            )
        )
        return path

    train = write(tmp_path / "train.jsonl", inbox[:400])
    test = write(tmp_path / "test.jsonl", inbox[400:])
    model = tmp_path / "m.joblib"
    config = tmp_path / "c.toml"
    config.write_text(f'[backends.specialist]\ntype = "specialist"\npath = "{model}"\n')
    base = ["--config", str(config)]
    code, _, err = run_cli(*base, "train", "--data", str(train))
    assert code == 0, err
    args = ["eval", "--backend", "specialist", "--data", str(test), "--curve"]
    code, out, err = run_cli(*base, *args, "--train", str(train), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["backend"] == "specialist" and report["n"] == 100
    curve = report["curve"]
    assert [p["per_class"] for p in curve] == [2, 5, 10, 20, 50, "all"]
    assert set(curve[0]) == {"per_class", "n_train", "accuracy", "macro_f1"}
    test_texts = {d.ticket.text for d in inbox[400:]}
    unseen = sum(d.ticket.text not in test_texts for d in inbox[:400])  # no test leakage
    assert unseen < 400
    assert curve[-1]["n_train"] == unseen and curve[-1]["accuracy"] > curve[0]["accuracy"]
    code, out, _ = run_cli(*base, *args, "--train", str(train))
    assert code == 0 and "learning curve" in out and "per class" in out
    single = tmp_path / "single.jsonl"
    single.write_text(json.dumps({"id": "a", "text": "x", "label": "billing"}) + "\n")
    code, _, err = run_cli(*base, *args, "--train", str(single))
    assert code == 2 and "--curve" in err and len(err.strip().splitlines()) == 1


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()
