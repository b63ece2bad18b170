"""Cascade threshold tuning: the sweep on synthetic backends, the config edit, and the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tui.cli import run
from tui.core import registry
from tui.core.cascade_tuning import THRESHOLDS, Outcome, table_rows, tune, update_cascade_block
from tui.core.config import load_settings
from tui.core.learning.model import SpecialistModel
from tui.core.models import Decision

ROOT = Path(__file__).resolve().parents[2]
N = 1000


def synthetic(then_accuracy: float = 1.0) -> tuple[list[Outcome], list[Outcome], list[str]]:
    """`first` is free and right exactly when its confidence is at least 0.7; `then` costs
    $1 a ticket and is right on the first `then_accuracy` share of tickets."""
    truth = [f"l{i % 4}" for i in range(N)]
    first = []
    then = []
    for i, label in enumerate(truth):
        confidence = i / N
        first.append(Outcome(label if confidence >= 0.7 else "wrong", confidence, 0.0))
        right = (i * 7919) % N < then_accuracy * N
        then.append(Outcome(label if right else "wrong", 0.99, 1.0))
    return first, then, truth


def test_picks_the_threshold_where_first_stops_being_right() -> None:
    first, then, truth = synthetic()
    result = tune(first, then, truth, target=1.0)
    assert result.reached and result.pick.threshold == 0.7
    assert result.pick.accuracy == 1.0 and result.pick.escalated == 0.7
    assert result.pick.cost_per_1k_usd == pytest.approx(700.0)
    assert [r.threshold for r in result.rows] == list(THRESHOLDS) and len(result.rows) == 101
    assert result.first_only.accuracy == pytest.approx(0.3)
    assert result.then_only.accuracy == 1.0 and result.then_only.cost_per_1k_usd == 1000.0
    # below the target of 1.0, the cheapest threshold that still reaches it wins
    assert tune(first, then, truth, target=0.5).pick.threshold == 0.2
    assert tune(first, then, truth, target=0.0).pick.threshold == 0.0


def test_unreachable_target_picks_the_most_accurate() -> None:
    first, then, truth = synthetic(then_accuracy=0.8)
    result = tune(first, then, truth, target=1.0)
    assert not result.reached and result.pick.threshold == 0.7
    assert result.pick.accuracy == pytest.approx(0.3 + 0.7 * 0.8)
    data = result.to_dict()
    assert data["reached"] is False and data["pick"]["threshold"] == 0.7
    assert len(data["rows"]) == 101


def test_errors_escalate_and_then_errors_are_wrong() -> None:
    def d(backend: str, label: str | None, confidence: float | None, cost: float) -> Decision:
        return Decision(
            ticket_id="t",
            run_id="r",
            backend=backend,
            backend_type="x",
            label=label,
            confidence=confidence,
            error_class=None if label else "Timeout",
            cost_usd=cost,
        )

    first = [d("a", None, None, 0.0), d("a", "x", None, 0.1), d("a", "x", 0.95, 0.1)]
    then = [d("b", "x", 0.9, 1.0), d("b", None, None, 2.0), d("b", "y", 0.9, 1.0)]
    result = tune(first, then, ["x", "x", "x"], target=0.0)
    top = result.rows[-1]  # threshold 1.00: everything escalates
    assert top.escalated == 1.0 and top.accuracy == pytest.approx(1 / 3)
    low = result.rows[0]  # threshold 0.00: only the failed and the confidence-less go on
    assert low.escalated == pytest.approx(2 / 3) and low.accuracy == pytest.approx(2 / 3)
    assert low.cost_per_1k_usd == pytest.approx((0.2 + 3.0) / 3 * 1000)


def test_bad_arguments() -> None:
    first, then, truth = synthetic()
    with pytest.raises(ValueError, match="aligned"):
        tune(first[:-1], then, truth)
    with pytest.raises(ValueError, match="no labelled"):
        tune([], [], [])
    with pytest.raises(ValueError, match="outside"):
        tune(first, then, truth, target=1.5)


def test_table_rows_show_every_tenth_and_the_pick() -> None:
    first, then, truth = synthetic()
    result = tune(first, then, truth, target=0.73)
    shown = [r.threshold for r in table_rows(result)]
    assert result.pick.threshold == 0.43
    assert shown == [0.0, 0.1, 0.2, 0.3, 0.4, 0.43, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def test_config_block_is_created_and_updated_in_place() -> None:
    values = {"type": "cascade", "first": "specialist", "then": "gpt", "threshold": 0.7}
    created = update_cascade_block("", values)
    assert tomllib.loads(created)["backends"]["cascade"] == values
    original = """\
# my config
[labels]
billing = "Charges"   # keep me

[backends.cascade]   # tuned
type = "cascade"
first = "old"  # the cheap one
threshold = 0.5
max_concurrency = 4

[backends.gpt]
type = "openai"
"""
    updated = update_cascade_block(original, values)
    data = tomllib.loads(updated)
    assert data["backends"]["cascade"] == {**values, "max_concurrency": 4}
    assert data["backends"]["gpt"] == {"type": "openai"}
    assert "# my config" in updated and 'billing = "Charges"   # keep me' in updated
    assert 'first = "specialist"  # the cheap one' in updated
    assert updated.index('then = "gpt"') < updated.index("[backends.gpt]")
    extra = update_cascade_block("[labels]\na = 'b'\n", values, {"my model": {"type": "x"}})
    assert tomllib.loads(extra)["backends"]["my model"] == {"type": "x"}


def write_fixture(tmp_path: Path, *, plugin: bool = True) -> tuple[Path, Path]:
    """A labelled file, a strong and a weak specialist trained on it, and a config.

    With `plugin` the config also has a `hash` plugin backend: only valid where the test
    registers that type (an unknown backend type is a config error)."""
    texts = {
        "billing": ["charged twice", "refund my payment", "invoice wrong", "card billed again"],
        "shipping": ["parcel is late", "tracking stuck", "courier lost it", "where is my box"],
        "returns": ["return the shoes", "send item back", "exchange the size", "return label"],
    }
    rows = [(t, label) for label, ts in texts.items() for t in ts]
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"T{i}", "text": t, "label": lab}) + "\n"
            for i, (t, lab) in enumerate(rows * 2)
        )
    )
    strong = SpecialistModel.train([t for t, _ in rows] * 2, [lab for _, lab in rows] * 2)
    strong.save(tmp_path / "strong.joblib")
    weak_rows = [rows[0], rows[4], rows[8], rows[1], rows[5], rows[9]]
    weak = SpecialistModel.train([t for t, _ in weak_rows], [lab for _, lab in weak_rows])
    weak.save(tmp_path / "weak.joblib")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""\
# team config
[routing]
backend = "weak"

[backends.weak]
type = "specialist"
path = "{tmp_path / "weak.joblib"}"

[backends.strong]
type = "specialist"
path = "{tmp_path / "strong.joblib"}"
cpu_usd_per_hour = 400.0
"""
        + ('\n[backends.hashy]\ntype = "hash"\ninput_usd_per_mtok = 10000\n' if plugin else "")
    )
    return data, config


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out=out, err=err)  # bad usage (a number out of range) too
    return code, out.getvalue(), err.getvalue()


def test_cli_in_process_with_a_plugin_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "hash", "tests.unit.plugin_backends:HashBackend")
    data, config = write_fixture(tmp_path)
    code, out, err = run_cli(
        "--config", str(config), "tune-cascade", "--first", "strong", "--then", "hashy",
        "--data", str(data), "--target-accuracy", "0.95", "--json", "--write",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["first"] == "strong" and report["then"] == "hashy" and report["n"] == 24
    assert report["errors"] == {"first": 0, "then": 0} and len(report["rows"]) == 101
    assert report["then_only"]["cost_per_1k_usd"] == pytest.approx(1000.0)
    assert report["written"] == str(config)
    settings = load_settings(config, required=True)
    cascade = settings.backend("cascade")
    assert (cascade.first, cascade.then, cascade.threshold) == (
        "strong",
        "hashy",
        report["pick"]["threshold"],
    )
    assert config.read_text().startswith("# team config\n")
    code, out, _ = run_cli(
        "--config", str(config), "tune-cascade", "--first", "strong", "--then", "hashy",
        "--data", str(data),
    )  # fmt: skip
    assert code == 0 and "<- pick" in out and "threshold" in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--first", "nope", "--then", "strong"], "unknown backend 'nope'"),
        (["--first", "weak", "--then", "weak"], "same backend"),
        (["--first", "weak", "--then", "strong", "--target-accuracy", "2"], "target-accuracy"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Path, extra: list[str], needle: str) -> None:
    data, config = write_fixture(tmp_path, plugin=False)
    code, _, err = run_cli("--config", str(config), "tune-cascade", "--data", str(data), *extra)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_cli_subprocess_two_specialists_from_the_database(
    tmp_path: Path, isolated_home: Path
) -> None:
    data, config = write_fixture(tmp_path, plugin=False)  # no plugin in the subprocess
    env = {**os.environ, "TRIAGEDESK_HOME": str(isolated_home), "PYTHONPATH": str(ROOT)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tui", "--config", str(config), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    held_out = tmp_path / "held-out.jsonl"  # labels neither model trained on
    held_out.write_text(
        "".join(
            json.dumps({"id": f"H{i}", "text": text, "label": label}) + "\n"
            for i, (text, label) in enumerate(
                [
                    ("I was charged twice, refund it", "billing"),
                    ("the invoice total is wrong again", "billing"),
                    ("my parcel tracking has been stuck for days", "shipping"),
                    ("the courier lost my box", "shipping"),
                    ("I want to return these shoes", "returns"),
                    ("please send a return label for the item", "returns"),
                ]
            )
        )
    )
    assert cli("import", str(data), str(held_out)).returncode == 0
    r = cli("tune-cascade", "--first", "weak", "--then", "strong", "--target-accuracy", "1")
    assert r.returncode == 0, r.stderr
    assert "cascade weak -> strong on 6 labelled tickets" in r.stdout
    assert "left out 24 labelled tickets that weak or strong trained on" in r.stderr
    assert "pick: threshold" in r.stdout or "no threshold reaches" in r.stdout
    assert "[backends.cascade]" not in config.read_text()


def test_write_creates_the_config_and_keeps_the_default_backends(
    tmp_path: Path, isolated_home: Path
) -> None:
    from tui.core import paths

    data, _ = write_fixture(tmp_path)
    paths.default_specialist_path().parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "strong.joblib").rename(paths.default_specialist_path())
    (tmp_path / "strong.json").rename(paths.default_specialist_path().with_suffix(".json"))
    code, out, err = run_cli(
        "tune-cascade", "--first", "specialist", "--then", "gpt-4o-mini", "--data", str(data),
        "--write",
    )  # fmt: skip
    assert code == 0, err
    assert "gpt-4o-mini failed on 24 of 24 tickets" in err  # no API key in tests
    config = paths.default_config_path()
    settings = load_settings(config, required=True)
    assert set(settings.backends) == {"specialist", "gpt-4o-mini", "cascade"}
    assert settings.reference is not None and settings.reference.name == "gpt-4o-mini"
    assert f"to [backends.cascade] in {config}" in out
