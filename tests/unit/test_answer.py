"""The answer as pydantic models: the schema sent to servers, and strict parsing."""

from __future__ import annotations

import json

import pytest

from tui.core.backend import BadResponse, InvalidConfidence, LabelNotInTaxonomy
from tui.core.models import Taxonomy
from tui.core.prompt import Answer, AnswerFormat, answer_schema, parse_answer

TAXONOMY = Taxonomy.from_names(["billing", "shipping", "Refunds"])


def test_the_schema_sent_is_byte_for_byte_the_one_written_before() -> None:
    written = {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": list(TAXONOMY.names)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "confidence"],
        "additionalProperties": False,
    }
    assert json.dumps(answer_schema(TAXONOMY)) == json.dumps(written)


def test_each_schema_is_a_fresh_object() -> None:
    first = answer_schema(TAXONOMY)
    first["properties"]["label"]["enum"].append("changed")
    first["required"].append("x")
    assert answer_schema(TAXONOMY)["properties"]["label"]["enum"] == list(TAXONOMY.names)
    assert answer_schema(TAXONOMY)["required"] == ["label", "confidence"]


def test_the_format_model_is_what_the_schema_says() -> None:
    AnswerFormat.model_validate({"label": "billing", "confidence": 0.2})
    for bad in ({"label": "billing"}, {"label": "b", "confidence": 2}, {"label": "b",
                "confidence": 0.5, "extra": 1}):  # fmt: skip
        with pytest.raises(ValueError):
            AnswerFormat.model_validate(bad)


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        ("not json", BadResponse, "answer is not valid JSON: 'not json'"),
        ("[1, 2]", BadResponse, "answer is JSON but not an object"),
        ('{"confidence": 0.5}', BadResponse, "answer has no string 'label'"),
        ('{"label": 7}', BadResponse, "answer has no string 'label'"),
        ('{"label": "hats"}', LabelNotInTaxonomy, "label 'hats' is not in the taxonomy"),
        ('{"label": "billing", "confidence": NaN}', InvalidConfidence, "confidence nan is"),
        ('{"label": "billing", "confidence": true}', InvalidConfidence, "is not a number"),
        ('{"label": "billing", "confidence": -0.1}', InvalidConfidence, "outside [0, 1]"),
        ('{"label": "hats", "confidence": 9}', LabelNotInTaxonomy, "label 'hats'"),
    ],
)
def test_each_bad_answer_raises_its_error_with_the_raw_text(
    raw: str, error: type[BadResponse], text: str
) -> None:
    with pytest.raises(error) as caught:
        parse_answer(raw, TAXONOMY)
    assert type(caught.value) is error
    assert text in str(caught.value)
    assert caught.value.raw_output == raw


def test_a_sloppy_but_clear_answer_is_read() -> None:
    raw = '```json\n{"label": " refunds ", "confidence": 1, "reason": "asks", "x": 1}\n```'
    assert parse_answer(raw, TAXONOMY) == Answer(label="Refunds", confidence=1.0, reason="asks")
    assert parse_answer('{"label": "billing", "reason": 3}', TAXONOMY) == Answer(
        label="billing", confidence=None, reason=None
    )
