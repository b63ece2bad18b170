"""`triagedesk finetune`: an open model fine-tuned on the team's labels, written as served files.

Only parsing and printing: the work is `tui.core.learning.llm.pipeline.finetune`. Examples come
from `--data` (a labelled JSONL/CSV) or the database's agent labels; progress (each stage,
then step, loss and ETA) goes to stderr, one line each, so that stdout keeps the result alone.
A missing training dependency, base model, converter or usable data is one line, exit 2.

`--progress json` is for programs (the TUI's background job, scripts): stdout carries only
JSON lines (`tui.core.learning.llm.progress` writes them, SPEC lists them), one per stage and
step, then one `done` or one `error` line; the exit status and the stderr line stay the same.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tui.cli.context import BadInput, Context, headless
from tui.cli.usage import (
    Choice,
    Command,
    PathType,
    PositiveNumber,
    Share,
    WholeNumber,
    device_option,
    value_option,
)
from tui.core.config import ConfigError
from tui.core.store import StoreError
from tui.services.evaluation import UnusableData

if TYPE_CHECKING:
    from tui.core.learning.llm.progress import Emitter

METHODS = ("lora", "full")
PROGRESS_FORMATS = ("text", "json")
TRAINING_MODULES = ("torch", "transformers", "peft")
"""Checked before anything else, so that a missing extra fails in a second, not after loading."""
EXPECTED = (BadInput, ConfigError, StoreError, UnusableData)
"""The failures `headless` reports as bad input (exit 2), message as is."""


@click.command(
    name="finetune", cls=Command, help="fine-tune an open model on the labels, served as a GGUF"
)
@value_option("--base", default="gemma3-270m", help="gemma3-270m (default), a GGUF or HF folder")
@value_option("--out", type=PathType(), required=True, help="folder for the model and its files")
@value_option("--data", type=PathType(), help="labelled JSONL/CSV instead of the database")
@device_option("where it trains: auto (default), cpu or cuda")
@value_option("--max-steps", type=WholeNumber(1), help="stop after this many steps")
@value_option("--epochs", type=WholeNumber(1), default=1, help="passes over the data (1)")
@value_option(
    "--method",
    type=Choice(list(METHODS)),
    default="lora",
    metavar="{lora,full}",
    help="lora (default) or a full fine-tune",
)
@value_option(
    "--objective",
    type=Choice(["generate", "classify"]),
    default="generate",
    metavar="{generate,classify}",
    help="generate: write the label's name (default); classify: one reserved token a label",
)
@value_option(
    "--validation",
    type=PathType(),
    help="labelled JSONL/CSV held out to measure on (default: 20 % of the data)",
)
@value_option("--batch-size", type=WholeNumber(1, 4096), default=8, help="tickets a step (8)")
@value_option("--learning-rate", type=PositiveNumber(), help="default 2e-4 for lora, 2e-5 for full")
@value_option(
    "--distill-weight",
    type=Share(),
    default=0.7,
    help="classify: loss share of the data's label_probs (a teacher's distribution; 0.7)",
)
@value_option(
    "--teacher",
    type=PathType(),
    help="classify: an encoder folder (all-mpnet-base-v2) fine-tuned first as the teachers",
)
@value_option("--teacher-seeds", type=WholeNumber(1, 16), default=3, help="teachers (3)")
@value_option("--teacher-epochs", type=WholeNumber(1), default=8, help="each teacher's (8)")
@value_option("--seed", type=WholeNumber(0), default=13, help="training order and split (13)")
@value_option("--converter", type=PathType(), help="llama.cpp folder or llama-cpp-python sdist")
@value_option("--name", help="backend name in backend.toml (finetuned-<out folder>)")
@click.option(
    "--zero-shot/--no-zero-shot",
    default=True,
    help="also measure the untrained base on the held-out tickets (default: yes)",
)
@value_option(
    "--progress",
    type=Choice(list(PROGRESS_FORMATS)),
    default="text",
    metavar="{text,json}",
    help="text on stderr (default) or JSON lines on stdout",
)
@headless
def finetune(ctx: Context, *, progress: str = "text", **options: Any) -> int:
    """With `--progress json`, every way out of the run also leaves its one `error` line."""
    if progress != "json":
        return _finetune(ctx, **options)
    from tui.core.learning.llm.progress import Emitter

    emit = Emitter(ctx.out)
    try:
        return _finetune(ctx, emit=emit, **options)
    except BaseException as exc:
        emit.error(_message(exc), _exit_status(exc))
        raise


def _finetune(
    ctx: Context,
    *,
    base: str,
    out: Path,
    data: Path | None,
    device: str,
    max_steps: int | None,
    epochs: int,
    method: str,
    objective: str = "generate",
    validation: Path | None = None,
    batch_size: int,
    learning_rate: float | None,
    distill_weight: float = 0.7,
    teacher: Path | None = None,
    teacher_seeds: int = 3,
    teacher_epochs: int = 8,
    seed: int = 13,
    converter: Path | None,
    name: str | None,
    zero_shot: bool = True,
    emit: Emitter | None = None,
) -> int:
    from pydantic import ValidationError

    from tui.core.learning.llm import data as llm_data
    from tui.core.learning.llm.errors import FinetuneError, require
    from tui.core.learning.llm.pipeline import FinetuneRequest, export_path
    from tui.core.learning.llm.pipeline import finetune as run_finetune

    try:
        request = FinetuneRequest(
            base=base,
            out=out,
            device=device,
            method=method,  # type: ignore[arg-type]  # Choice checked it
            objective=objective,  # type: ignore[arg-type]  # Choice checked it
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            distill_weight=distill_weight,
            teacher=teacher,
            teacher_seeds=teacher_seeds,
            teacher_epochs=teacher_epochs,
            seed=seed,
            converter=converter,
            name=name,
            zero_shot=zero_shot,
        )
    except ValidationError as exc:
        raise BadInput(f"finetune: {exc.errors()[0]['msg']}") from None
    try:
        if data is not None:
            examples = llm_data.read_labelled(data)
            source = str(data)
        else:
            with ctx.store() as store:
                ctx.warn_unusable_labels(store)
                examples = llm_data.from_store(store)
            source = str(ctx.db_path)
        held_out = None if validation is None else llm_data.read_labelled(validation)
        for module in TRAINING_MODULES:
            require(module)
        report = run_finetune(
            examples,
            ctx.settings.taxonomy(),
            request,
            source=source,
            validation=held_out,
            on_progress=emit.step if emit else lambda step: _progress(ctx, step.line()),
            on_stage=emit.stage if emit else lambda stage: _progress(ctx, f"finetune: {stage}"),
        )
    except FinetuneError as exc:
        raise BadInput(str(exc)) from None
    _record(ctx, out / report.training_set)
    if emit is not None:
        emit.done(out, report)
        return 0
    base_zero = report.zero_shot_accuracy
    base_said = "" if base_zero is None else f" (base zero-shot {base_zero:.1%})"
    f1_said = (
        ""
        if report.validation_macro_f1 is None
        else (f", macro-F1 {report.validation_macro_f1:.3f}")
    )
    taught = (
        f" ({report.distilled_examples} with a teacher's distribution)"
        if report.distilled_examples
        else ""
    )
    ctx.say(
        f"fine-tuned {report.base} ({report.method}, {report.objective}, {report.steps} steps,"
        f" {report.train_seconds:.0f} s on {report.device}) on {report.train_examples} tickets"
        f"{taught},"
        f" {len(report.labels)} labels: validation {report.validation_accuracy:.1%}"
        f"{f1_said}{base_said}"
    )
    if report.teacher_validation_accuracies:
        each = ", ".join(f"{a:.1%}" for a in report.teacher_validation_accuracies)
        ctx.say(
            f"teachers ({report.teacher}): {each} on the validation tickets, together"
            f" {report.teacher_mean_validation_accuracy or 0:.1%}"
        )
    gguf = export_path(out, request.outtype)
    ctx.say(
        f"GGUF {report.gguf_type}: {report.gguf_validation_accuracy:.1%} on"
        f" {report.gguf_validation_examples or report.validation_examples} of the held-back"
        f" tickets, {report.gguf_p50_ms:.0f} ms a ticket"
    )
    ctx.say(f"wrote {gguf} ({report.gguf_bytes / 1_000_000:.1f} MB)")
    for file_name in ("Modelfile", "report.json", "backend.toml"):
        ctx.say(f"wrote {out / file_name}")
    table = shlex.quote(str(out / "backend.toml"))
    ctx.say(
        f"route with it: cat {table} >> {shlex.quote(str(ctx.config_path))}"
        f'  (then [routing] backend = "{report.backend}")'
    )
    return 0


def _record(ctx: Context, path: Path) -> None:
    """Record what the model learnt in the configured database (when there is one), so that
    its accuracy there leaves those labels out; another database records it from `path`
    when its statistics are read. A database that cannot take it is a warning only."""
    from tui.core.store import StoreError
    from tui.core.training_sets import read_training_set

    training = read_training_set(path)
    if training is None or not ctx.db_path.exists():
        return
    try:
        with ctx.store() as store:
            store.record_training(training)
    except StoreError as exc:
        ctx.warn(f"the model's training set is not recorded in the database yet: {exc}")


def _progress(ctx: Context, line: str) -> None:
    print(line, file=ctx.err, flush=True)


def _message(exc: BaseException) -> str:
    """The text of the `triagedesk: error:` line `headless` prints for the same exception."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, EXPECTED):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _exit_status(exc: BaseException) -> int:
    """What `headless` returns for the exception (SPEC's exit statuses)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 2 if isinstance(exc, EXPECTED) else 1
