"""`append_backend`: a fine-tuned model's table added to the config, validated and atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tui.core.config import ConfigError, load_settings
from tui.core.config_write import append_backend, free_backend_name

TABLE = {"type": "llamacpp-local", "model_path": "/models/ft.gguf", "model": "ft", "n_ctx": 512}


def test_appended_table_loads_and_keeps_comments_and_mode(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '# my desk\n[routing]\nbackend = "specialist"\n\n[backends.specialist]\ntype = "specialist"\n'
    )
    config.chmod(0o640)
    assert append_backend(config, "ft", TABLE) == "ft"
    text = config.read_text()
    assert text.startswith("# my desk\n[routing]")
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    settings = load_settings(config)
    assert settings.backends["ft"].type == "llamacpp-local"
    assert list(settings.backends) == ["specialist", "ft"]


def test_a_name_clash_gets_the_next_free_name(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[backends.ft]\ntype = "specialist"\n[backends.ft-2]\ntype = "specialist"\n')
    assert append_backend(config, "ft", TABLE) == "ft-3"
    settings = load_settings(config)
    assert settings.backends["ft"].type == "specialist"
    assert settings.backends["ft-3"].type == "llamacpp-local"
    assert free_backend_name("x", set()) == "x"


def test_no_file_or_no_backends_table_keeps_the_built_in_backends(tmp_path: Path) -> None:
    new = tmp_path / "sub" / "new.toml"
    assert append_backend(new, "ft", TABLE) == "ft"
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert set(load_settings(new).backends) == {"specialist", "gpt-4o-mini", "ft"}
    labels_only = tmp_path / "labels.toml"
    labels_only.write_text('[labels]\nrefund = "money back"\n')
    append_backend(labels_only, "ft", TABLE)
    settings = load_settings(labels_only)
    assert set(settings.backends) == {"specialist", "gpt-4o-mini", "ft"}
    assert settings.labels == {"refund": "money back"}


def test_an_invalid_result_leaves_the_config_untouched(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    original = '[backends.specialist]\ntype = "specialist"\n'
    config.write_text(original)
    with pytest.raises(ConfigError, match="not updated"):
        append_backend(config, "ft", {"type": "llamacpp-local", "n_ctx": "lots"})
    assert config.read_text() == original
    with pytest.raises(ConfigError, match="backend name"):
        append_backend(config, "a.b", TABLE)
    assert config.read_text() == original
    assert not [p for p in tmp_path.iterdir() if p.name not in ("config.toml", "home")]


def test_a_linked_config_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "config.toml"
    real.parent.mkdir()
    real.write_text('[backends.specialist]\ntype = "specialist"\n')
    link = tmp_path / "config.toml"
    os.symlink(real, link)
    append_backend(link, "ft", TABLE)
    assert link.is_symlink() and "[backends.ft]" in real.read_text()
