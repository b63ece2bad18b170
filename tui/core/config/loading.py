"""Reading the TOML config file into `Settings`, and wording each problem in the file's terms.

A missing default file is not an error: the default config (specialist plus a reference API)
works with nothing set. A file that exists is validated whole and strictly, once, and every
problem is reported at once, one `file: key: problem` line each, with the closest valid key
suggested for a typo. A misspelt key silently ignored is a setting silently not applied: a
`max_concurency` that does nothing, an `[routng]` that routes with the default backend.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tui.core.config.errors import ConfigError, key_path, suggest
from tui.core.config.options import BACKEND_TYPE_KEYS
from tui.core.config.settings import RoutingConfig, Settings, known_types
from tui.core.helpdesk.config import HelpdeskConfig, LabelMapping

DEFAULT_BACKENDS: dict[str, dict[str, Any]] = {
    "specialist": {"type": "specialist"},
    "gpt-4o-mini": {
        "type": "openai",
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
        "input_usd_per_mtok": 0.15,
        "output_usd_per_mtok": 0.60,
        "max_concurrency": 16,
    },
}
"""Backends present when no config file exists: the offline specialist, and a hosted API
whose list prices make every decision's counterfactual cost meaningful."""


def default_settings() -> Settings:
    return _build({"backends": DEFAULT_BACKENDS}, None)


def _build(raw: dict[str, Any], source: Path | None) -> Settings:
    """Settings from a parsed config: each backend block learns its name (its table key)."""
    backends = raw.get("backends")
    data = dict(raw)
    if isinstance(backends, dict):
        data["backends"] = {
            name: {**block, "name": name} if isinstance(block, dict) else block
            for name, block in backends.items()
        }
    helpdesks = raw.get("helpdesk")
    if isinstance(helpdesks, dict):
        data["helpdesk"] = {
            name: {**block, "name": name} if isinstance(block, dict) else block
            for name, block in helpdesks.items()
        }
    settings = Settings.model_validate(data)
    settings._source = source
    return settings


def _block_type(raw: Mapping[str, Any], name: object) -> str | None:
    backends = raw.get("backends")
    block = backends.get(name) if isinstance(backends, Mapping) else None
    kind = block.get("type") if isinstance(block, Mapping) else None
    return kind if isinstance(kind, str) else None


def _describe(error: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    """An error's message in the config's terms: tables, keys, what each type accepts."""
    loc = tuple(error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    key = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        if len(loc) == 1:
            what = "section" if isinstance(raw.get(key), Mapping) else "key"
            return f"unknown {what}{suggest(key, Settings.model_fields)}"
        if loc[0] == "routing":
            return f"unknown key{suggest(key, RoutingConfig.model_fields)}"
        if loc[0] == "helpdesk":
            fields = (
                LabelMapping.model_fields if "labels" in loc[2:-1] else HelpdeskConfig.model_fields
            )
            return f"unknown key{suggest(key, fields)}"
        block_type = _block_type(raw, loc[1]) if loc[0] == "backends" else None
        if block_type in BACKEND_TYPE_KEYS:
            valid = BACKEND_TYPE_KEYS[block_type].all()
            owners = [t for t, keys in BACKEND_TYPE_KEYS.items() if key in keys.all()]
            hint = suggest(key, valid)
            if not hint and owners:
                hint = f" (a key of type {', '.join(map(repr, owners))})"
            return f"not a key of type {block_type!r}{hint}"
        return "unknown key"
    if kind == "missing":
        if loc[:1] == ("backends",) and len(loc) == 3 and key == "type":
            return (
                f"missing: every backend needs a type (known: {', '.join(sorted(known_types()))})"
            )
        block_type = _block_type(raw, loc[1]) if loc[:1] == ("backends",) else None
        return f"missing: type {block_type!r} needs it" if block_type else "missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "must be a table"
    if kind == "finite_number":
        return "must be a finite number (not nan or inf)"
    return message


def format_problems(path: Path | None, exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """One `file: key: problem` line per validation error."""
    where = f"{path}: " if path else ""
    lines = []
    for error in exc.errors():
        key = key_path(error["loc"])
        message = _describe(error, raw)
        lines.append(f"{where}{message}" if key == "(root)" else f"{where}{key}: {message}")
    return lines


def read_config_text(path: Path) -> str:
    """The config file's text. A UTF-8 byte order mark at the start is dropped: Windows
    editors write one, it is invisible, and tomllib would reject it as an "invalid
    statement" at line 1 column 1 without saying what is there.

    Raises:
        ConfigError: The file cannot be read or is not UTF-8.
    """
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_settings(
    path: Path | None, *, required: bool = False, origin: str | None = None
) -> Settings:
    """Read and validate a config file.

    Args:
        path: The TOML file; when it does not exist the defaults are used (unless required).
        required: Raise instead of falling back when the file is missing: the user named it
            (`--config`, `TRIAGEDESK_CONFIG`), so defaults would silently run something else.
        origin: Who named the path (`TRIAGEDESK_CONFIG`), cited when it is not there.

    Raises:
        ConfigError: One line naming the file and the key, or, for several problems, a
            first line saying how many and one line per problem.
    """
    if path is None or not path.exists():
        if required and path is not None:
            cited = f" (from {origin})" if origin and origin != "--config" else ""
            raise ConfigError(f"{path}: config file not found{cited}")
        return default_settings()
    try:
        raw = tomllib.loads(read_config_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if "backends" not in raw:
        raw["backends"] = DEFAULT_BACKENDS
    elif isinstance(raw["backends"], dict) and "specialist" not in raw["backends"]:
        raw["backends"] = {"specialist": {"type": "specialist"}, **raw["backends"]}
    try:
        return _build(raw, path)
    except ValidationError as exc:
        lines = format_problems(path, exc, raw)
        if len(lines) == 1:
            raise ConfigError(lines[0]) from None
        raise ConfigError("\n".join([f"{path}: {len(lines)} problems", *lines]), lines) from None
