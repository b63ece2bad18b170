"""Writing the config file: the settings the program saves for the user (a tuned cascade, the
active and shadow backends after a promotion, a fine-tuned model's backend table).

Every write is validated and atomic, so a failed or invalid one leaves the config as it was.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

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
    from tui.core.cascade_tuning import update_cascade_block  # numpy: only when writing

    updated = update_cascade_block(text, values, extra)
    target = path.resolve() if path.is_symlink() else path
    private_dir(target.parent)
    _replace_checked(path, target, updated)
    return path


def write_routing(path: Path, backend: str, shadow: Sequence[str]) -> Path:
    """Set `[routing] backend` and `shadow` in the config (a promotion), validated,
    atomically, keeping the file's mode, links, comments and layout (tomlkit edits the
    document in place: only the two values change).

    Raises:
        ConfigError: The file cannot be parsed or the result would not load; the config is
            left untouched.
    """
    import tomlkit  # loaded when a file is edited, not when the app starts
    import tomlkit.exceptions

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
    _replace_checked(path, target, tomlkit.dumps(document))
    return path


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
Scalar = str | int | float | bool


def free_backend_name(wanted: str, taken: set[str] | frozenset[str]) -> str:
    """`wanted`, or `wanted-2`, `wanted-3`, ... : the first that no configured backend has."""
    if wanted not in taken:
        return wanted
    number = 2
    while f"{wanted}-{number}" in taken:
        number += 1
    return f"{wanted}-{number}"


def append_backend(
    path: Path, name: str, values: Mapping[str, Scalar], *, taken: Iterable[str] = ()
) -> str:
    """Append one `[backends.<name>]` table to the config, validated, atomically.

    A name a configured backend already has (or one in `taken`: the running app's) is not
    overwritten: the table gets the first free `name-N`, which is returned. The file keeps
    its mode and comments (the table is appended as text), a link stays a link, and a file
    without [backends] gets the built-in backends written out too (as `write_cascade`
    does), so they stay configured.

    Raises:
        ConfigError: The config cannot be read, a value is not a plain TOML scalar, or the
            result would not load; the config is left untouched.
    """
    if not _PLAIN_KEY.fullmatch(name):
        raise ConfigError(f"backend name {name!r}: use letters, digits, '-' or '_'")
    text = read_config_text(path) if path.exists() else ""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    configured = set(load_settings(path).backends) if path.exists() else set(DEFAULT_BACKENDS)
    final = free_backend_name(name, configured | set(taken))
    blocks: dict[str, Mapping[str, object]] = {}
    if "backends" not in raw:
        blocks.update((n, b) for n, b in DEFAULT_BACKENDS.items() if n != "specialist")
    blocks[final] = values
    parts = [text.rstrip("\n")] if text.strip() else []
    for block_name, block in blocks.items():
        lines = [f"[backends.{block_name}]"]
        lines += [f"{key} = {_toml_scalar(path, key, value)}" for key, value in block.items()]
        parts.append("\n".join(lines))
    updated = "\n\n".join(parts) + "\n"
    target = path.resolve() if path.is_symlink() else path
    private_dir(target.parent)
    _replace_checked(path, target, updated)
    return final


def _replace_checked(path: Path, target: Path, text: str) -> None:
    """Write `text` over `target` (the config, or the file its link points to) atomically,
    only if it loads: leaving the block on a failure drops the temp file, keeps the config."""
    with atomic_writer(target, keep_mode=True) as pending:
        pending.write(text)
        pending.file.flush()
        try:
            load_settings(Path(pending.temp_path), required=True)
        except ConfigError as exc:
            raise ConfigError(f"{path}: not updated, the result would be invalid: {exc}") from None


def _toml_scalar(path: Path, key: str, value: object) -> str:
    """A TOML literal (a JSON string is a valid TOML basic string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    raise ConfigError(f"{path}: {key}: cannot write a {type(value).__name__} value")
