"""`triagedesk finetune` end to end: base, split, zero-shot, train, validate, merge, GGUF, files.

Everything a user gets lands in one folder: the GGUF, an Ollama `Modelfile`, `report.json`,
`backend.toml` and `training.json` (the tickets it learnt, so that no accuracy counts them).
The merged Hugging Face weights are an intermediate step, kept in a scratch folder inside it
until the GGUF exists and then removed (they are as large again).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tui.core import paths
from tui.core.learning.llm import base, classify, converter, export, label_tokens, teacher, train
from tui.core.learning.llm.converter import OutType
from tui.core.learning.llm.data import Example, Split, answer, make_split
from tui.core.learning.llm.errors import FinetuneError
from tui.core.learning.llm.train import Method, Objective
from tui.core.learning.training import FINETUNE_TRAINING_FILE
from tui.core.models import Taxonomy
from tui.core.safe_files import private_dir
from tui.core.training_sets import TrainingSet, build_training_set, model_id, write_training_set

GGUF_CHECK_EXAMPLES = 300
"""Held-out tickets the written GGUF answers after the conversion. The full validation split
is measured in the training framework already; the check is there to catch a conversion that
lost accuracy, which a few hundred tickets show (on the CPU fallback, 2,000 took minutes)."""

Stage = Callable[[str], None]
"""Told each stage's name as it starts (for a progress display)."""


class FinetuneRequest(BaseModel):
    """What `triagedesk finetune` was asked for, validated once at the boundary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base: str = "gemma3-270m"
    out: Path
    device: str = "auto"
    method: Method = "lora"
    objective: Objective = "generate"
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    distill_weight: float = Field(default=0.7, ge=0, le=1)
    """classify: the loss's share for a teacher's distribution (rows with `label_probs`)."""
    teacher: Path | None = None
    """classify: an encoder folder fine-tuned here as the teachers (`teacher.teach`)."""
    teacher_seeds: int = Field(default=3, ge=1, le=16)
    teacher_epochs: int = Field(default=8, ge=1)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 13
    outtype: OutType = "q8_0"
    converter: Path | None = None
    name: str | None = None
    """Backend name in `backend.toml`; default `finetuned-<out folder>`."""
    cache: Path | None = None
    """Where a known base's GGUF is assembled; default the models folder."""
    zero_shot: bool = True
    """Also measure the base, untrained, on the validation split (for the report)."""
    gguf_check: int = Field(default=GGUF_CHECK_EXAMPLES, ge=1)
    """Held-out tickets the written GGUF answers to confirm the conversion kept accuracy."""
    n_threads: int | None = Field(default=None, ge=1)

    def options(self) -> train.TrainOptions:
        return train.TrainOptions(
            method=self.method,
            objective=self.objective,
            epochs=self.epochs,
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            seed=self.seed,
            distill_weight=self.distill_weight,
        )


class FinetuneReport(BaseModel):
    """`report.json`: what was trained, on what, how long, and how well it answers."""

    base: str
    method: Method
    device: str
    objective: Objective = "generate"
    label_tokens: dict[str, int] | None = None
    """classify: each label's reserved token, which the served model answers."""
    labels: list[str]
    train_examples: int
    validation_examples: int
    dropped: dict[str, int]
    steps: int
    trainable_parameters: int
    train_seconds: float
    final_loss: float
    zero_shot_accuracy: float | None
    """The base, untrained, on the same validation split (free text, greedy)."""
    validation_accuracy: float
    """The trained model in the training framework, greedy free text."""
    validation_macro_f1: float | None = None
    """The same answers' F1 averaged over the labels, each label weighing the same."""
    zero_shot_macro_f1: float | None = None
    gguf: str
    gguf_type: str
    gguf_bytes: int
    gguf_validation_accuracy: float
    """The written GGUF through llama-cpp-python: what a server answers."""
    gguf_validation_examples: int | None = None
    """How many held-out tickets that check answered (the first `gguf_check`)."""
    gguf_p50_ms: float
    backend: str
    total_seconds: float
    adapter: str | None = None
    """The LoRA adapter's folder (peft format), kept beside the GGUF; None for a full run."""
    batch_size: int = 8
    learning_rate: float = 0.0
    model: str = ""
    """The identity the backend's decisions carry (`model` in `backend.toml`)."""
    training_set: str = ""
    """The file beside the GGUF naming the tickets it trained on (`training.json`)."""
    distilled_examples: int = 0
    """Training examples that carried a teacher's distribution (`label_probs`, or the
    teachers' of `--teacher` over the training split and its perturbed copies)."""
    distill_weight: float | None = None
    """The loss's share for those distributions; None when no example had one."""
    teacher: str | None = None
    """The `--teacher` folder's name, when teachers were trained here."""
    teacher_validation_accuracies: list[float] | None = None
    """Each teacher's accuracy on the validation split (tickets no teacher learnt)."""
    teacher_mean_validation_accuracy: float | None = None


def _check_teachers(data: Split, objective: Objective) -> int:
    """How many training examples carry a teacher's distribution, checked before the base
    loads (a minute or more), so a file whose `label_probs` cannot be learnt fails at once.

    Raises:
        FinetuneError: The objective cannot learn them, or one names an unknown label.
    """
    if objective == "classify":
        return classify.check_teachers(data.train, data.taxonomy.names)
    classify.refuse_teachers(data.train)
    return 0


def default_cache() -> Path:
    return paths.models_dir() / "base"


def finetune(
    examples: Sequence[Example],
    taxonomy: Taxonomy | None,
    request: FinetuneRequest,
    *,
    source: str = "",
    validation: Sequence[Example] | None = None,
    on_progress: train.ProgressCallback | None = None,
    on_stage: Stage | None = None,
) -> FinetuneReport:
    """Fine-tune and write the served files into `request.out`; returns what `report.json` says.

    The converter is located before anything slow starts, so a missing one fails in a second.
    `validation`, when given, is the held-out set measured instead of a split of `examples`.

    Raises:
        FinetuneError: Missing dependency, base, converter or data, or a failed step.
    """
    started = time.perf_counter()
    stage = on_stage or (lambda _name: None)
    found_converter = converter.find(request.converter)
    data = make_split(
        examples,
        taxonomy,
        val_fraction=request.val_fraction,
        seed=request.seed,
        source=source,
        validation=validation,
    )
    distilled = _check_teachers(data, request.objective)
    if request.teacher is not None:
        if request.objective != "classify":
            raise FinetuneError("--teacher needs --objective classify")
        if distilled:
            raise FinetuneError("--teacher with label_probs rows: give the teachers one way")
        teacher.check_folder(request.teacher)
    device = train.choose_device(request.device)
    taught = None
    if request.teacher is not None:
        stage("training the teachers")
        options = teacher.TeacherOptions(
            request.teacher, seeds=request.teacher_seeds, epochs=request.teacher_epochs
        )
        taught = teacher.teach(
            data.train, data.validation, data.taxonomy.names, options, device=device, stage=stage
        )
        data = replace(data, train=tuple(taught.examples))
        distilled = len(taught.examples)
    stage("loading the base model")
    loaded = base.load(request.base, request.cache or default_cache(), device)
    zero_shot = zero_shot_f1 = None
    if request.zero_shot:
        stage("measuring the base model (zero-shot)")
        zero_shot, zero_shot_f1 = _validate(loaded.model, loaded.tokenizer, data, device)
        stage(f"base zero-shot: {zero_shot:.1%} (macro-F1 {zero_shot_f1:.3f})")
    tokens = (
        label_tokens.pick(loaded.tokenizer.get_vocab(), data.taxonomy.names)
        if request.objective == "classify"
        else None
    )
    stage("training")
    result = train.train(
        loaded.model,
        loaded.tokenizer,
        data.train,
        request.options(),
        device=device,
        on_progress=on_progress,
        label_tokens=tokens,
    )
    stage("validating")
    accuracy, macro_f1 = _validate(result.model, loaded.tokenizer, data, device, tokens)
    # Said at once, not only in report.json: a later step that fails must not take it along.
    stage(
        f"validated: {accuracy:.1%} (macro-F1 {macro_f1:.3f}) on {len(data.validation)}"
        " held-out tickets"
    )
    out = request.out
    private_dir(out)
    scratch = out / ".merged"
    try:
        stage("merging and saving")
        adapter = export.save_adapter(result.model, out / "adapter")
        merged = export.merge(result.model)
        sentencepiece = _sentencepiece(loaded, scratch)
        export.save(merged, loaded.tokenizer, scratch, sentencepiece)
        stage(f"converting to GGUF ({request.outtype})")
        gguf = export_path(out, request.outtype)
        converter.convert(found_converter, scratch, gguf, request.outtype)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    stage("checking the GGUF on the validation split")
    checked = data.validation[: request.gguf_check]
    gguf_accuracy, p50 = _check_gguf(gguf, checked, request, device, stage, tokens)
    stage(f"GGUF checked: {gguf_accuracy:.1%} on {len(checked)}, p50 {p50:.1f} ms a ticket")
    name = export.backend_name(out, request.name)
    training = training_set(gguf, data, request.base, source)
    write_training_set(out / FINETUNE_TRAINING_FILE, training)
    report = FinetuneReport(
        base=request.base,
        method=request.method,
        device=device,
        objective=request.objective,
        label_tokens=tokens,
        labels=list(data.taxonomy.names),
        train_examples=len(data.train),
        validation_examples=len(data.validation),
        dropped=_dropped(data),
        steps=result.steps,
        trainable_parameters=result.trainable_parameters,
        train_seconds=round(result.seconds, 1),
        final_loss=result.losses[-1],
        zero_shot_accuracy=zero_shot,
        zero_shot_macro_f1=zero_shot_f1,
        validation_accuracy=accuracy,
        validation_macro_f1=macro_f1,
        gguf=gguf.name,
        gguf_type=request.outtype,
        gguf_bytes=gguf.stat().st_size,
        gguf_validation_accuracy=gguf_accuracy,
        gguf_validation_examples=len(checked),
        gguf_p50_ms=round(p50, 1),
        backend=name,
        total_seconds=round(time.perf_counter() - started, 1),
        adapter=None if adapter is None else adapter.name,
        batch_size=request.batch_size,
        learning_rate=request.options().lr(),
        model=training.model,
        training_set=FINETUNE_TRAINING_FILE,
        distilled_examples=distilled,
        distill_weight=request.distill_weight if distilled else None,
        teacher=None if request.teacher is None else request.teacher.name,
        teacher_validation_accuracies=taught.validation_accuracies if taught else None,
        teacher_mean_validation_accuracy=taught.mean_validation_accuracy if taught else None,
    )
    (out / "Modelfile").write_text(export.modelfile(gguf, tokens), encoding="utf-8")
    (out / "backend.toml").write_text(
        export.backend_toml(name, gguf, training.model, tokens), encoding="utf-8"
    )
    (out / "report.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report


def training_set(gguf: Path, data: Split, base_name: str, source: str) -> TrainingSet:
    """What the fine-tuned model learnt: the training split only (the validation split was
    held back, so its labels still count), under the identity its decisions will carry."""
    kind = f"finetuned:{base_name}"
    trained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    texts = [e.text for e in data.train]
    labels = [e.label for e in data.train]
    return build_training_set(
        f"{gguf.stem}@{model_id(kind, texts, labels, trained_at)}",
        kind=kind,
        source=source,
        trained_at=trained_at,
        texts=texts,
        labels=labels,
        ticket_ids=[e.ticket_id for e in data.train],
        label_event_ids=[e.label_event_id for e in data.train],
    )


def export_path(out: Path, outtype: str) -> Path:
    return out / f"model-{outtype}.gguf"


def _check_gguf(
    gguf: Path,
    checked: Sequence[Example],
    request: FinetuneRequest,
    device: str,
    stage: Stage,
    tokens: dict[str, int] | None = None,
) -> tuple[float, float]:
    """The served file's accuracy, in a child process: on the GPU after a CUDA fine-tune,
    and on the CPU when that child dies.

    Why the fallback: on the H200 (2026-12-02) the GPU child died without a word after a CUDA
    fine-tune, while the same file answered on the GPU from a fresh shell; a check that cannot
    run on the GPU must not cost the fine-tune, whose files are already written.
    """
    if device == "cuda":
        try:
            return export.score_gguf_apart(
                gguf, checked, n_threads=request.n_threads, gpu=True, label_tokens=tokens
            )
        except FinetuneError as exc:
            stage(f"{exc}; checking on the CPU instead")
    return export.score_gguf_apart(gguf, checked, n_threads=request.n_threads, label_tokens=tokens)


def _validate(
    model: object, tokenizer: Any, data: Split, device: str, tokens: dict[str, int] | None = None
) -> tuple[float, float]:
    """Accuracy and macro-F1 on the validation split: greedy answers generating no more than
    the longest label, or (classify) the most probable label token."""
    texts = [e.text for e in data.validation]
    gold = [e.label for e in data.validation]
    if tokens is not None:
        chosen = classify.predict(model, tokenizer, texts, tokens, device=device)
        return train.accuracy(chosen, gold), train.macro_f1(chosen, gold)
    longest = max(
        len(tokenizer(answer(name), add_special_tokens=False).input_ids)
        for name in data.taxonomy.names
    )
    answers = train.predict(model, tokenizer, texts, device=device, max_new_tokens=longest + 1)
    return train.accuracy(answers, gold), train.macro_f1(answers, gold)


def _sentencepiece(loaded: base.LoadedBase, scratch: Path) -> Path | None:
    """The base's sentencepiece model: its own file, or one rebuilt from its GGUF."""
    folder = Path(loaded.source).expanduser()
    if folder.is_dir() and (folder / "tokenizer.model").is_file():
        return folder / "tokenizer.model"
    if loaded.gguf is not None:
        return base.write_sentencepiece(loaded.gguf, scratch)
    return None


def _dropped(data: Split) -> dict[str, int]:
    report = data.report
    return {
        "outside_taxonomy": report.out_of_taxonomy_dropped,
        "conflicting_duplicates": report.conflicts_dropped,
        "duplicates": sum(report.duplicates_dropped.values()),
    }
