"""`triagedesk finetune`: usage, the one-line failures (in CI, without torch), and a whole run
on the tiny random Gemma 3 (skipped without the `finetune` extra and llama.cpp's converter)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import tickets
from tests.unit.test_llm_finetune import (  # noqa: F401  (fixtures)
    heavy,
    llama_converter,
    tiny_base,
)
from tui.cli import run
from tui.core.store import Store


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


def _labelled(path: Path, per_label: int = 4) -> Path:
    rows = [{"text": e.text, "label": e.label} for e in tickets(per_label, 3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


HELP = " (see `triagedesk finetune --help`)"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["finetune"], "the following arguments are required: --out"),
        (
            ["finetune", "--out", "d", "--method", "qlora"],
            "argument --method: invalid choice: 'qlora' (choose from 'lora', 'full')",
        ),
        (
            ["finetune", "--out", "d", "--device", "tpu"],
            "argument --device: invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda')",
        ),
        (
            ["finetune", "--out", "d", "--max-steps", "0"],
            "argument --max-steps: must be at least 1, got 0",
        ),
        (
            ["finetune", "--out", "d", "--epochs", "two"],
            "argument --epochs: expected a whole number, got 'two'",
        ),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], message: str) -> None:
    assert cli(*argv) == (2, "", f"triagedesk finetune: error: {message}{HELP}\n")


def test_missing_training_extra_is_one_line_exit_2(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as where the extra is not installed
    data = _labelled(tmp_path / "labelled.jsonl")
    code, out, err = cli("finetune", "--out", str(tmp_path / "out"), "--data", str(data))
    assert (code, out) == (2, "")
    assert err == (
        "triagedesk: error: torch is not installed;"
        " fine-tuning needs pip install torch transformers peft sentencepiece protobuf gguf\n"
    )
    assert not (tmp_path / "out").exists()


def test_bad_data_and_no_agent_labels_are_one_line_exit_2(
    isolated_home: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "my parcel"}\n')
    code, _out, err = cli("finetune", "--out", str(tmp_path / "o"), "--data", str(bad))
    assert (code, err) == (2, f"triagedesk: error: {bad}: row 1 has no label\n")
    db = tmp_path / "empty.db"
    Store(db, create=True).close()
    code, _out, err = cli("--db", str(db), "finetune", "--out", str(tmp_path / "o"))
    assert code == 2 and "no agent-labelled tickets to learn from" in err
    assert err.count("\n") == 1
    code, _out, err = cli("--db", str(tmp_path / "gone.db"), "finetune", "--out", "o")
    assert code == 2 and "no database at" in err and not (tmp_path / "gone.db").exists()


def test_finetune_run_writes_the_files_and_the_table_routes(
    isolated_home: Path,
    tiny_base: Path,  # noqa: F811  (the fixture imported above)
    llama_converter: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import asyncio

    from tui.core.config import load_settings
    from tui.core.models import Taxonomy, Ticket
    from tui.core.registry import create_backend

    out = tmp_path / "out"
    data = _labelled(tmp_path / "labelled.jsonl", per_label=8)
    code, said, err = cli(
        "finetune",
        "--base",
        str(tiny_base),
        "--out",
        str(out),
        "--data",
        str(data),
        "--device",
        "cpu",
        "--method",
        "full",
        "--max-steps",
        "6",
        "--epochs",
        "10",
        "--converter",
        str(llama_converter),
        "--name",
        "tiny",
    )
    assert code == 0, err
    steps = [line for line in err.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == [f"{n}/6" for n in range(1, 7)]
    assert all(" loss " in line and " ETA " in line for line in steps)
    assert "finetune: training" in err and "finetune: converting to GGUF (q8_0)" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "Modelfile",
        "backend.toml",
        "model-q8_0.gguf",
        "report.json",
        "training.json",
    ]
    assert f"wrote {out / 'model-q8_0.gguf'}" in said
    assert f"route with it: cat {out / 'backend.toml'} >> " in said
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 6 and report["training_set"] == "training.json"
    trained = json.loads((out / "training.json").read_text())  # the training split only
    assert trained["model"] == report["model"] and report["model"].startswith("model-q8_0@")
    assert len(trained["examples"]) == report["train_examples"]
    assert f'model = "{report["model"]}"' in (out / "backend.toml").read_text()
    config = tmp_path / "config.toml"
    config.write_text('[routing]\nbackend = "tiny"\n\n' + (out / "backend.toml").read_text())
    settings = load_settings(config)
    assert settings.backends["tiny"].prompt == "finetuned"
    backend = create_backend(settings.backends["tiny"])
    taxonomy = Taxonomy.from_names(["login", "refund", "shipping"])

    async def route() -> str:
        try:
            result = await backend.route(Ticket(id="1", text="my parcel is late"), taxonomy)
        finally:
            await backend.aclose()
        assert result.confidence is not None and 0 < result.confidence <= 1
        assert result.model == report["model"]  # the identity its training set is recorded by
        return result.label

    assert asyncio.run(route()) in taxonomy.names
