"""The system prompt and version derived once per taxonomy object stay each taxonomy's own."""

from __future__ import annotations

from tui.core.models import Label, Taxonomy
from tui.core.prompt import SYSTEM_TEMPLATE, build_prompt, describe_labels, prompt_version


def _taxonomy(*labels: tuple[str, str]) -> Taxonomy:
    return Taxonomy(labels=tuple(Label(name=n, description=d) for n, d in labels))


def test_each_taxonomy_keeps_its_own_system_prompt_and_version() -> None:
    first = _taxonomy(("billing", "Charges"), ("shipping", "Parcels"))
    second = _taxonomy(("billing", "Invoices and refunds"), ("account", "Logins"))
    equal_to_first = _taxonomy(("billing", "Charges"), ("shipping", "Parcels"))
    for taxonomy in (first, second, first, equal_to_first, second):
        prompt = build_prompt("Where is my parcel?", taxonomy)
        assert prompt.system == SYSTEM_TEMPLATE.format(labels=describe_labels(taxonomy))
        assert prompt.version == prompt_version(taxonomy)
        assert "Where is my parcel?" in prompt.user
    assert build_prompt("x", first).version != build_prompt("x", second).version
    assert build_prompt("x", first).version == build_prompt("x", equal_to_first).version
