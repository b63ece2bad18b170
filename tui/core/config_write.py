"""Writing the config file: the settings the program saves for the user (a tuned cascade, and
the active and shadow backends after a promotion).

Every write is validated and atomic, so a failed or invalid one leaves the config as it was.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path

import tomlkit
import tomlkit.exceptions

from tui.core.cascade_tuning import update_cascade_block
from tui.core.config import DEFAULT_BACKENDS, ConfigError, load_settings, read_config_text
from tui.core.safe_files import atomic_writer, private_dir


def write_cascade(path: Path, first: str, then: str, threshold: float) -> Path:
    """Save a tuned threshold in the config's [backends.cascade], validated, atomically.

    The file keeps its permission bits (a new one is 0600: configs can name key sources),
    and a config that is a link (dotfiles) stays one: the file it points to is rewritten.
    A file without [backends] runs on the built-in ones; they are written out beside the
    cascade, so that gaining a [backends] table does not drop them.

    Raises:
        ConfigError: The updated file would not load; the config is left untouched.
    """
    text = read_config_text(path) if path.exists() else ""  # as load_settings reads it (BOM)
    extra = (
        {}
        if "backends" in tomllib.loads(text)
        else {name: block for name, block in DEFAULT_BACKENDS.items() if name != "specialist"}
    )
    values = {"type": "cascade", "first": first, "then": then, "threshold": threshold}
    updated = update_cascade_block(text, values, extra)
    target = path.resolve() if path.is_symlink() else path
    private_dir(target.parent)
    with atomic_writer(target, keep_mode=True) as pending:
        pending.write(updated)
        pending.file.flush()
        try:
            load_settings(Path(pending.temp_path), required=True)
        except ConfigError as exc:  # leaving the block drops the temp file, keeps the config
            raise ConfigError(f"{path}: not updated, the result would be invalid: {exc}") from None
    return path


def write_routing(path: Path, backend: str, shadow: Sequence[str]) -> Path:
    """Set `[routing] backend` and `shadow` in the config (a promotion), validated,
    atomically, keeping the file's mode, links, comments and layout (tomlkit edits the
    document in place: only the two values change).

    Raises:
        ConfigError: The file cannot be parsed or the result would not load; the config is
            left untouched.
    """
    text = read_config_text(path)
    try:
        document = tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    routing = document.get("routing")
    if routing is None:
        routing = tomlkit.table()
        document["routing"] = routing
    routing["backend"] = backend
    routing["shadow"] = list(shadow)
    target = path.resolve() if path.is_symlink() else path
    with atomic_writer(target, keep_mode=True) as pending:
        pending.write(tomlkit.dumps(document))
        pending.file.flush()
        try:
            load_settings(Path(pending.temp_path), required=True)
        except ConfigError as exc:
            raise ConfigError(f"{path}: not updated, the result would be invalid: {exc}") from None
    return path
