"""The click command line in process: argparse's one-line usage errors, the bare command,
`train --device`, and the services the commands moved into (evaluation, config writing)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tui.cli import run
from tui.core.config import ConfigError, load_settings
from tui.core.config_write import write_cascade
from tui.core.learning.curve import held_out_curve
from tui.core.models import Decision
from tui.services.evaluation import UnusableData, eval_report, read_labelled

LABELLED = [
    ("I was charged twice for my order", "billing"),
    ("refund the payment please, wrong amount", "billing"),
    ("my invoice shows the wrong total", "billing"),
    ("where is my parcel, tracking is stuck", "shipping"),
    ("delivery is three days late", "shipping"),
    ("the courier lost my package", "shipping"),
]


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "line"),
    [  # each line exactly as argparse wrote it before the move to click
        (
            ["frobnicate"],
            "triagedesk: error: argument COMMAND: invalid choice: 'frobnicate' (choose from"
            " 'demo', 'import', 'route', 'label', 'train', 'eval', 'tune-cascade', 'export',"
            " 'stats', 'backends', 'finetune', 'promote', 'sync', 'webhooks', 'serve', 'claim', 'release', 'db') (see `triagedesk --help`)",
        ),
        (
            ["--bogus"],
            "triagedesk: error: unrecognized arguments: --bogus (see `triagedesk --help`)",
        ),
        (  # global options go before the command; after it they are unrecognized
            ["route", "--db", "x"],
            "triagedesk: error: unrecognized arguments: --db x (see `triagedesk --help`)",
        ),
        (
            ["route", "--bogus"],
            "triagedesk: error: unrecognized arguments: --bogus (see `triagedesk --help`)",
        ),
        (
            ["label", "a", "b", "c"],
            "triagedesk: error: unrecognized arguments: c (see `triagedesk --help`)",
        ),
        (
            ["--db"],
            "triagedesk: error: argument --db: expected one argument (see `triagedesk --help`)",
        ),
        (
            ["route", "--limit"],
            "triagedesk route: error: argument --limit: expected one argument"
            " (see `triagedesk route --help`)",
        ),
        (
            ["route", "--concurrency", "0"],
            "triagedesk route: error: argument --concurrency: must be from 1 to 4096, got 0"
            " (see `triagedesk route --help`)",
        ),
        (
            ["route", "--all", "--unrouted"],
            "triagedesk route: error: argument --unrouted: not allowed with argument --all"
            " (see `triagedesk route --help`)",
        ),
        (
            ["eval"],
            "triagedesk eval: error: the following arguments are required: --backend, --data"
            " (see `triagedesk eval --help`)",
        ),
        (
            ["label"],
            "triagedesk label: error: the following arguments are required: ticket_id, label"
            " (see `triagedesk label --help`)",
        ),
        (
            ["import"],
            "triagedesk import: error: the following arguments are required: FILE"
            " (see `triagedesk import --help`)",
        ),
        (
            ["import", "--format", "xml", "a.csv"],
            "triagedesk import: error: argument --format: invalid choice: 'xml' (choose from"
            " 'csv', 'jsonl', 'eml', 'mbox') (see `triagedesk import --help`)",
        ),
        (
            ["export", "--format", "csv", "--out", "x", "--seed", "abc"],
            "triagedesk export: error: argument --seed: invalid int value: 'abc'"
            " (see `triagedesk export --help`)",
        ),
        (
            ["train", "--device", "gpu"],
            "triagedesk train: error: argument --device: invalid choice: 'gpu' (choose from"
            " 'auto', 'cpu', 'cuda') (see `triagedesk train --help`)",
        ),
        (  # the default command is reachable only as the bare `triagedesk`
            ["tui"],
            "triagedesk: error: argument COMMAND: invalid choice: 'tui' (choose from"
            " 'demo', 'import', 'route', 'label', 'train', 'eval', 'tune-cascade', 'export',"
            " 'stats', 'backends', 'finetune', 'promote', 'sync', 'webhooks', 'serve', 'claim', 'release', 'db') (see `triagedesk --help`)",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], line: str) -> None:
    code, out, err = cli(*argv)
    assert (code, out, err) == (2, "", line + "\n")


def test_help_lists_the_commands_in_specs_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    text = capsys.readouterr().out
    names = ["demo", "import", "route", "label", "train", "eval", "tune-cascade", "export"]
    names += ["stats", "backends", "finetune", "sync", "webhooks"]
    positions = [text.index(f"\n  {name} ") for name in names]
    assert positions == sorted(positions)
    assert "\n  tui" not in text and "--watch DIR" in text
    assert run(["route", "-h"]) == 0
    assert "tickets in flight, 1 to 4096" in capsys.readouterr().out


def test_bare_command_opens_the_tui_with_the_global_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tui.app

    opened: list[tuple[Path, Path | None, bool]] = []

    def fake_run_app(settings: Any, db: Path, watch: Path | None = None, **kw: Any) -> int:
        opened.append((db, watch, kw["make_folder"]))
        return 0

    monkeypatch.setattr(tui.app, "run_app", fake_run_app)
    assert cli() == (0, "", "")
    assert cli("--db", str(tmp_path / "t.db"), "--watch", str(tmp_path / "in")) == (0, "", "")
    assert opened[0][1:] == (None, True)  # our default database: its folder may be made
    assert opened[1] == (tmp_path / "t.db", tmp_path / "in", False)
    code, _, err = cli("--config", str(tmp_path / "none.toml"))
    assert code == 2 and "none.toml: config file not found" in err and len(opened) == 2


def test_train_passes_the_device_to_the_specialist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tui.core.learning.model import SpecialistModel

    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"L{i}", "text": t, "label": lab}) + "\n"
            for i, (t, lab) in enumerate(LABELLED)
        )
    )
    seen: list[str] = []
    original = SpecialistModel.train.__func__  # type: ignore[attr-defined]

    def spy(cls: type[SpecialistModel], *args: Any, **kwargs: Any) -> SpecialistModel:
        seen.append(kwargs["device"])
        return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(SpecialistModel, "train", classmethod(spy))
    for argv, device in ((["--device", "cpu"], "cpu"), ([], "auto")):
        out = tmp_path / f"model-{device}.joblib"
        code, text, err = cli("train", "--data", str(data), "--out", str(out), *argv)
        assert code == 0, err
        assert "trained tfidf specialist on 6 tickets, 2 labels" in text and out.exists()
        assert seen[-1] == device


def decision(ticket: str, label: str | None, ms: float = 10.0, cost: float = 0.001) -> Decision:
    error = None if label else "BackendTimeout"
    return Decision(
        ticket_id=ticket,
        run_id="eval-x",
        backend="x",
        backend_type="openai",
        label=label,
        total_ms=ms if label else None,
        cost_usd=cost,
        error_class=error,
    )


def test_eval_report_counts_a_failed_ticket_as_wrong() -> None:
    truth = {"a": "billing", "b": "billing", "c": "shipping", "d": "shipping"}
    decisions = [
        decision("a", "billing", 10),
        decision("b", "shipping", 30),
        decision("c", "shipping", 20),
        decision("d", None),
    ]
    report = eval_report("x", decisions, truth)
    assert report["n"] == 4 and report["errors"] == 1
    assert report["accuracy"] == 0.5  # 2 right of 4, the failed one counted wrong
    assert report["latency_ms"] == {"p50": 20.0, "p95": 30.0}
    assert report["cost_usd"] == pytest.approx(0.004)
    assert report["confusions"] == [{"true": "billing", "predicted": "shipping", "count": 1}]
    assert eval_report("x", [], {})["accuracy"] is None


def test_read_labelled_names_the_file_and_row(tmp_path: Path) -> None:
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text('{"id": "a", "text": "hello"}\n')
    with pytest.raises(UnusableData, match="no row carries a label"):
        read_labelled(unlabelled)
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"id": "a", "text": "hello", "label": "x"}\n{oops\n')
    with pytest.raises(UnusableData, match=r"b\.jsonl:2: .*\(1 bad rows\)"):
        read_labelled(bad)


def test_held_out_curve_leaves_out_the_test_texts() -> None:
    from tui.core.learning.model import TrainingError

    examples = [(text, label) for text, label in LABELLED * 3]
    test = [LABELLED[0][0], LABELLED[3][0]]
    points = held_out_curve(examples, test, ["billing", "shipping"])
    assert points and points[-1].n_train == len(examples) - 6  # 3 copies of each test text
    shipping = [text for text, label in LABELLED if label == "shipping"]
    with pytest.raises(TrainingError):  # without the test texts only billing is left
        held_out_curve(examples, shipping, ["shipping"] * 3)


def test_write_cascade_keeps_an_invalid_result_out(tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    config = folder / "c.toml"
    write_cascade(config, "specialist", "gpt-4o-mini", 0.75)
    cascade = load_settings(config, required=True).backend("cascade")
    assert (cascade.first, cascade.then, cascade.threshold) == ("specialist", "gpt-4o-mini", 0.75)
    before = config.read_bytes()
    with pytest.raises(ConfigError, match="not updated, the result would be invalid"):
        write_cascade(config, "specialist", "ghost", 0.5)  # `then` names no backend
    assert config.read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["c.toml"]  # no temp file left
