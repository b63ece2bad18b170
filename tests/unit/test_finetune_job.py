"""The fine-tune background job: real child processes, from the real CLI failing in a second
(torch blocked, as in CI), through a scripted child (hostile lines, cancel), to a whole run on
the tiny random Gemma 3 (skipped without torch and llama.cpp's converter)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import tickets
from tests.unit.test_llm_finetune import (  # noqa: F401  (fixtures)
    heavy,
    llama_converter,
    tiny_base,
)
from tui.core.learning.llm.errors import FINETUNE_EXTRA
from tui.core.learning.llm.progress import DoneEvent, StepEvent, parse_line
from tui.services.finetune_job import (
    FinetuneJob,
    JobRequest,
    Launcher,
    default_out,
    read_backend_table,
)

SCRIPT = Path(__file__).parents[1] / "data" / "scripted_finetune_child.py"


def _labelled(path: Path, per_label: int = 4) -> Path:
    rows = [{"text": e.text, "label": e.label} for e in tickets(per_label, 3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _blocked_torch(tmp_path: Path) -> dict[str, str]:
    """An environment whose `import torch` fails, whether torch is installed or not."""
    shadow = tmp_path / "no-torch"
    (shadow / "torch").mkdir(parents=True)
    (shadow / "torch" / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
    repo = Path(__file__).parents[2]
    return {"PYTHONPATH": os.pathsep.join([str(shadow), str(repo)])}


def _scripted(mode: str) -> Launcher:
    return Launcher(db=None, config=None, command=(sys.executable, str(SCRIPT), mode))


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, from /proc; None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie (dead, waiting for init to reap it)."""
    found = _stat(pid)
    return found is None or found[0] == "Z"


def _group_gone(pgid: int) -> bool:
    """No running process is left in the group (zombies orphaned to init do not count)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None and found[1] == pgid and found[0] != "Z":
                return False
    return True


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Loading checkpoint shards: 100%",
        '{"event": "step", "step": 1',
        "[1, 2]",
        '{"event": "rocket"}',
        '{"event": "step", "step": "two", "total": 4, "loss": 1, "elapsed_s": 0, "eta_s": 0}',
        '{"event": "step", "step": 1, "total": 0, "loss": 1, "elapsed_s": 0, "eta_s": 0}',
        '{"event": "step", "step": 1, "total": 4, "loss": NaN, "elapsed_s": 0, "eta_s": 0}',
        '{"event": "done", "out": "/x"}',
        '{"event": "stage", "phase": "' + "x" * 70_000 + '"}',
    ],
)
def test_hostile_progress_lines_are_none_never_an_exception(line: str) -> None:
    assert parse_line(line) is None


def test_a_step_line_parses_with_its_figures() -> None:
    line = '{"event":"step","phase":"training","step":3,"total":40,"loss":0.5,"elapsed_s":6,"eta_s":74}'
    event = parse_line(line)
    assert isinstance(event, StepEvent)
    assert (event.step, event.total, event.loss, event.eta_s) == (3, 40, 0.5, 74.0)


async def test_torch_missing_is_the_clis_one_line_and_exit_2(
    isolated_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    request = JobRequest(out=out, data=_labelled(tmp_path / "labelled.jsonl"))
    launcher = Launcher(db=None, config=None, env=_blocked_torch(tmp_path))
    events: list[object] = []
    outcome = await FinetuneJob(request, launcher, on_event=events.append).run()
    assert (outcome.state, outcome.exit_code) == ("failed", 2)
    assert outcome.message == f"torch is not installed; fine-tuning needs {FINETUNE_EXTRA}"
    assert [type(e).__name__ for e in events] == ["ErrorEvent"]
    assert not out.exists()


async def test_a_child_without_json_fails_with_its_error_line(tmp_path: Path) -> None:
    code = "import sys; print('noise'); print('x: error: disk full', file=sys.stderr); sys.exit(3)"
    launcher = Launcher(db=None, config=None, command=(sys.executable, "-c", code))
    outcome = await FinetuneJob(JobRequest(out=tmp_path / "o"), launcher).run()
    assert (outcome.state, outcome.exit_code, outcome.message) == ("failed", 3, "disk full")


async def test_garbage_is_ignored_and_an_error_line_fails_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[object] = []
    noise: list[str] = []
    job = FinetuneJob(JobRequest(out=out), _scripted("fail"), events.append, noise.append)
    outcome = await job.run()
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [(s.step, s.total) for s in steps] == [(1, 40), (2, 40), (3, 40)]
    assert len(noise) == 3  # the not-JSON line, the cut line, the wrong-typed step
    assert (outcome.state, outcome.exit_code) == ("failed", 2)
    assert outcome.message == "the base model went away"
    assert not out.exists(), "a failed run's partial output is removed"


async def test_a_done_line_without_its_files_is_not_done(tmp_path: Path) -> None:
    out = tmp_path / "out"
    outcome = await FinetuneJob(JobRequest(out=out), _scripted("lie")).run()
    assert outcome.state == "failed" and outcome.done is None
    assert not out.exists()


async def test_an_existing_output_folder_is_refused_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    outcome = await FinetuneJob(JobRequest(out=out), _scripted("fail")).run()
    assert outcome.state == "failed" and "already exists" in outcome.message
    assert (out / "mine.txt").read_text() == "keep"


async def test_cancel_kills_the_process_group_and_removes_the_output(tmp_path: Path) -> None:
    import asyncio

    out = tmp_path / "out"
    job = FinetuneJob(JobRequest(out=out), _scripted("hang"))
    task = asyncio.create_task(job.run())
    deadline = time.monotonic() + 30
    while not (isinstance(job.last, StepEvent) and job.last.step == 3):
        assert time.monotonic() < deadline, "the child never got going"
        await asyncio.sleep(0.05)
    pid = job.pid
    assert pid is not None
    grandchild = int((out / "grandchild.pid").read_text())
    await job.cancel()
    outcome = await task
    assert outcome.state == "cancelled" and outcome.done is None
    assert _group_gone(pid)
    assert _gone(grandchild), "the converter-like grandchild went with the group"
    assert not out.exists(), "no half-written model is left behind"


async def test_cancelling_the_awaiting_task_kills_the_child_at_once(tmp_path: Path) -> None:
    import asyncio

    out = tmp_path / "out"
    job = FinetuneJob(JobRequest(out=out), _scripted("hang"))
    task = asyncio.create_task(job.run())
    while not (isinstance(job.last, StepEvent) and job.last.step == 3):
        await asyncio.sleep(0.05)
    pid = job.pid
    assert pid is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if _group_gone(pid):
            break
        await asyncio.sleep(0.05)
    assert _group_gone(pid)
    assert not out.exists()


def test_default_out_is_a_new_folder_per_base_and_time(isolated_home: Path) -> None:
    first = default_out("gemma3-270m", now=0)
    assert first.name == "gemma3-270m-19700101-000000"
    assert default_out("/models/My Base.gguf", now=60).name == "my-base-gguf-19700101-000100"


def test_backend_table_is_checked_before_use(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('# c\n[backends.ft]\ntype = "llamacpp-local"\nn_ctx = 512\n')
    assert read_backend_table(good) == ("ft", {"type": "llamacpp-local", "n_ctx": 512})
    for text in (
        "[backends.a]\ntype='x'\n[backends.b]\ntype='y'\n",
        "[routing]\nbackend='a'\n[backends.a]\ntype='x'\n",
        "[backends.a]\nlist = [1]\n",
        "not toml = = \n",
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ValueError):
            read_backend_table(bad)


async def test_tiny_model_run_reports_progress_and_done(
    isolated_home: Path,
    tiny_base: Path,  # noqa: F811  (the fixture imported above)
    llama_converter: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    request = JobRequest(
        base=str(tiny_base),
        out=out,
        data=_labelled(tmp_path / "labelled.jsonl", per_label=8),
        device="cpu",
        method="full",
        epochs=2,
        max_steps=6,
        name="tiny",
    )
    env = {"TRIAGEDESK_LLAMA_CPP": str(llama_converter)}
    events: list[object] = []
    launcher = Launcher(db=None, config=None, env=env)
    outcome = await FinetuneJob(request, launcher, on_event=events.append).run()
    assert outcome.state == "done", outcome.message
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] and steps[-1].total == 6
    assert outcome.done is not None and outcome.done.steps == 6
    assert isinstance(events[-1], DoneEvent) and outcome.done == events[-1]
    assert outcome.done.backend == "tiny" and Path(outcome.done.out) == out.resolve()
    name, values = read_backend_table(out / "backend.toml")
    assert name == "tiny" and values["type"] == "llamacpp-local"
    assert Path(str(values["model_path"])).is_file()
