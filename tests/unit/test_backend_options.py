"""Each backend type's pydantic Options: dispatch on `type`, the backends' own declaration,
and plugin types that declare Options (or do not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field, ValidationError

from tui.core import registry
from tui.core.config import (
    BUILTIN_OPTIONS,
    BackendConfig,
    CascadeOptions,
    ConfigError,
    LlamaCppLocalOptions,
    OpenAIOptions,
    SpecialistOptions,
    load_settings,
)
from tui.core.config.options import HTTPOptions


class KeyedOptions(BackendConfig):
    """A plugin's own Options: one required key, one bounded key, nothing else."""

    model_config = {"extra": "forbid"}
    region: str
    batch: int = Field(default=4, ge=1)


class KeyedBackend:
    type = "keyed"
    Options = KeyedOptions

    def __init__(self, config: KeyedOptions, *, resolve: Any = None) -> None:
        self.config = config


@pytest.mark.parametrize("type_name", sorted(registry.BUILTIN))
def test_each_builtin_backend_declares_the_options_the_config_validates_with(
    type_name: str,
) -> None:
    cls = registry.load_backend_class(type_name)
    assert cls.Options is BUILTIN_OPTIONS[type_name]
    assert registry.options_class(type_name) is BUILTIN_OPTIONS[type_name]


def test_validating_through_the_base_gives_the_types_model() -> None:
    block = {"type": "openai", "base_url": "http://x/v1", "model": "m", "name": "gpt"}
    for built in (BackendConfig.model_validate(block), BackendConfig(**block)):
        assert type(built) is OpenAIOptions
        assert isinstance(built, HTTPOptions)
        assert built.stream is True and built.http_transport == "aiohttp"
        assert built.model_name == "m"
    with pytest.raises(ValidationError, match="base_url"):
        BackendConfig.model_validate({"type": "openai", "model": "m"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        BackendConfig.model_validate({"type": "cascade", "first": "a", "then": "b",
                                      "threshold": 0.5, "host": "h"})  # fmt: skip


def test_model_name_per_type() -> None:
    assert SpecialistOptions(type="specialist").model_name == "specialist"
    gguf = LlamaCppLocalOptions(type="llamacpp-local", model_path="/m/qwen-0.5b.gguf")
    assert gguf.model_name == "qwen-0.5b"
    assert CascadeOptions(type="cascade", first="a", then="b", threshold=0.5).model_name == (
        "cascade"
    )
    plugin = BackendConfig(type="not-installed", model="mine")
    assert type(plugin) is BackendConfig and plugin.model_name == "mine"


def test_a_plugin_with_options_is_validated_by_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILTIN, "keyed", f"{__name__}:KeyedBackend")
    path = tmp_path / "config.toml"
    path.write_text('[backends.k]\ntype = "keyed"\nregion = "eu"\ntimeout_s = 5\n')
    config = load_settings(path, required=True).backend("k")
    assert isinstance(config, KeyedOptions)
    assert (config.region, config.batch, config.timeout_s) == ("eu", 4, 5)
    path.write_text('[backends.k]\ntype = "keyed"\nregon = "eu"\nbatch = 0\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, required=True)
    assert sorted(line.split(": ")[1] for line in caught.value.problems) == [
        "backends.k.batch",
        "backends.k.region",
        "backends.k.regon",
    ]


def test_a_plugin_that_fails_to_load_keeps_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its failure is reported when it is used (as before), never when the config loads."""
    monkeypatch.setitem(registry.BUILTIN, "broken", "tests.unit.no_such_module:Backend")
    path = tmp_path / "config.toml"
    path.write_text('[backends.b]\ntype = "broken"\nanything = 1\n')
    config = load_settings(path, required=True).backend("b")
    assert type(config) is BackendConfig and config.model_extra == {"anything": 1}
    with pytest.raises(registry.BackendLoadError):
        registry.create_backend(config)
