"""Loading the TOML config into frozen pydantic settings, with errors that name file and key.

A missing default file is not an error: the default config (specialist plus a reference API)
works with nothing set. A file that exists is validated whole and strictly, once: every
section, key and value is checked (each backend block against the keys of its `type`), names
that refer to other entries must resolve, and every problem is reported at once, one line
each with its key, with the closest valid key suggested for a typo. A misspelt key silently
ignored is a setting silently not applied: a `max_concurency` that does nothing, an
`[routng]` that routes with the default backend.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUndefined

from tui.core.models import Label, Taxonomy, check_label_name

DEFAULT_CPU_USD_PER_HOUR = 0.04
"""A small cloud vCPU hour (on-demand general-purpose instances list $0.03-0.05 per vCPU)."""


class ConfigError(Exception):
    """The config file is unreadable or invalid.

    The message names the file and the key; with several problems its first line says how
    many and each further line is one `file: key: problem`. `problems` holds those lines."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems) or [message]


class BackendConfig(BaseModel):
    """One `[backends.NAME]` block as the backends read it: every key any built-in type uses.

    A config file's blocks are first checked against the keys of their own type
    (`BACKEND_TYPE_KEYS`, `extra="forbid"`), so a key that the type does not read is an
    error; extra keys reach this model only for plugin types, whose keys are the plugin's
    own, and for llamacpp-local's `n_threads` (read from `model_extra`)."""

    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)

    name: str = ""
    type: str
    model: str | None = None
    base_url: str | None = None
    host: str | None = None
    api_key_env: str | None = None
    keyring_service: str | None = None
    """Optional OS keyring service to read the key from when the variable is unset."""
    model_path: str | None = None
    path: str | None = None
    """Specialist model file; defaults to the data dir's specialist."""
    first: str | None = None
    then: str | None = None
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    input_usd_per_mtok: float | None = Field(default=None, ge=0)
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    cached_input_usd_per_mtok: float | None = Field(default=None, ge=0)
    gpu_usd_per_hour: float | None = Field(default=None, ge=0)
    gpu_parallel_slots: int = Field(default=1, ge=1)
    """Tickets the GPU serves at once; a ticket's GPU cost is its latency share of one slot."""
    cpu_usd_per_hour: float | None = Field(default=None, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1)
    max_retries: int = Field(default=3, ge=0)
    keep_alive: str | int | None = None
    stream: bool = True
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_prompt_chars: int = Field(default=6000, ge=200)
    n_ctx: int = Field(default=2048, ge=128)
    n_gpu_layers: int = 0
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """HTTP backends' transport: aiohttp's (fast) or httpx's own."""

    @model_validator(mode="after")
    def _required_keys(self) -> BackendConfig:
        # Config files get "missing" per key from the type's schema; this covers blocks built
        # in code (benchmarks, tests) that skip it.
        keys = BACKEND_TYPE_KEYS.get(self.type)
        missing = [key for key in keys.required if getattr(self, key) is None] if keys else []
        if missing:
            raise ValueError(f"type {self.type!r} needs key {missing[0]!r}")
        return self

    @property
    def model_name(self) -> str:
        """What to show as the model: the configured one, or the file's stem."""
        if self.model:
            return self.model
        if self.model_path:
            return Path(self.model_path).stem
        return self.type

    @property
    def is_self_hosted(self) -> bool:
        return self.gpu_usd_per_hour is not None


@dataclass(frozen=True, slots=True)
class TypeKeys:
    """The keys one backend type reads, beyond those every backend takes (`COMMON_KEYS`)."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def all(self) -> tuple[str, ...]:
        return ("type", *self.required, *self.optional, *COMMON_KEYS)


COMMON_KEYS: tuple[str, ...] = (
    "timeout_s",
    "max_concurrency",
    "max_retries",
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "gpu_usd_per_hour",
    "gpu_parallel_slots",
    "max_prompt_chars",
)
"""Keys every backend takes (README "Configuration"): limits and prices."""

_HTTP_KEYS = ("base_url", "model", "api_key_env", "keyring_service", "stream", "temperature")

BACKEND_TYPE_KEYS: dict[str, TypeKeys] = {
    "specialist": TypeKeys(optional=("path", "cpu_usd_per_hour")),
    "openai": TypeKeys(("base_url", "model"), (*_HTTP_KEYS, "http_transport")),
    "anthropic": TypeKeys(("model",), (*_HTTP_KEYS, "http_transport")),
    "ollama": TypeKeys(("model",), ("host", "keep_alive", "stream", "temperature")),
    "llamacpp": TypeKeys(("base_url",), (*_HTTP_KEYS, "http_transport")),
    "llamacpp-local": TypeKeys(
        ("model_path",), ("model", "n_ctx", "n_gpu_layers", "n_threads", "temperature")
    ),
    "cascade": TypeKeys(("first", "then", "threshold")),
}
"""What each built-in type (registry.BUILTIN) reads from its block: the backend modules'
`config.<key>` uses. A key outside its type's set does nothing, so it is an error."""

_SCHEMA_ONLY_FIELDS: dict[str, FieldInfo] = {
    "n_threads": FieldInfo.from_field(None, ge=1, description="llama.cpp CPU threads"),
}
_SCHEMA_ONLY_TYPES: dict[str, Any] = {"n_threads": int | None}
"""Keys a backend reads from `model_extra` rather than a BackendConfig field."""


@cache
def _type_schema(type_name: str) -> type[BaseModel]:
    """A strict model of one built-in type's block: exactly its keys, `extra="forbid"`.

    Built from BackendConfig's own field definitions, so defaults and bounds are stated once;
    the type's required keys lose their default, so a missing one is reported per key."""
    keys = BACKEND_TYPE_KEYS[type_name]
    fields: dict[str, Any] = {"name": (str, ""), "type": (str, ...)}
    for key in keys.all():
        if key == "type":
            continue
        if key in BackendConfig.model_fields:
            info = copy.copy(BackendConfig.model_fields[key])
            annotation = info.annotation
        else:
            info, annotation = copy.copy(_SCHEMA_ONLY_FIELDS[key]), _SCHEMA_ONLY_TYPES[key]
        if key in keys.required:
            info.default = PydanticUndefined
        fields[key] = (annotation, info)
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    model: type[BaseModel] = create_model(
        f"{type_name.title().replace('-', '')}BackendKeys", __config__=config, **fields
    )
    return model


def _known_types() -> dict[str, str]:
    from tui.core.registry import available_types

    return available_types()


def _short(text: str, limit: int = 40) -> str:
    """A user-given name for an error line: quoted, escaped, cut to `limit` characters."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(cut, ensure_ascii=True)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or nothing."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _strict_block(value: Any) -> Any:
    """Check a raw backend block against its type before it becomes a BackendConfig.

    A built-in type's block must hold exactly that type's keys, each valid; a plugin type's
    keys are the plugin's own, so only BackendConfig's fields are checked; a type that no
    built-in or installed backend has is an error (it would turn every ticket into an error
    decision). Raises a ValidationError with one entry per problem, so all are reported.
    """
    if not isinstance(value, Mapping):
        return value  # BackendConfig reports "must be a table"
    kind = value.get("type")
    if not isinstance(kind, str):
        return value  # BackendConfig reports the missing or mistyped `type`
    if kind in BACKEND_TYPE_KEYS:
        _type_schema(kind).model_validate(value)
        return value
    known = _known_types()
    if kind not in known:
        listing = ", ".join(sorted(known))
        message = f"unknown backend type {_short(kind)}{_suggest(kind, known)} (known: {listing})"
        error = PydanticCustomError("unknown_backend_type", message)
        raise ValidationError.from_exception_data(
            "BackendConfig", [InitErrorDetails(type=error, loc=("type",), input=kind)]
        )
    return value


class RoutingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    backend: str = "specialist"
    daily_volume: int = Field(default=50_000, ge=0)
    reference_backend: str | None = "gpt-4o-mini"
    low_confidence: float = Field(default=0.6, ge=0, le=1)
    """Below this a prediction counts as low confidence in filters and the inbox."""
    auto_route: bool = False


def _label_name(name: str) -> str:
    """A `[labels]` key must be a valid label as written (the rule of every other door)."""
    checked = check_label_name(name)
    if checked != name:
        raise ValueError("label has surrounding whitespace")
    return name


LabelName = Annotated[str, AfterValidator(_label_name)]


class Settings(BaseModel):
    """The whole config. Built by `load_settings`; the default instance works with no file."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    labels: dict[LabelName, str] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    backends: dict[str, Annotated[BackendConfig, BeforeValidator(_strict_block)]] = Field(
        default_factory=dict
    )
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file these settings came from, for error messages; None for the defaults."""
        return self._source

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Field errors and reference errors together: one run reports every problem.

        The reference checks (names that must resolve, cascade cycles, non-finite numbers
        anywhere, model paths that are folders) read the raw data, so they run even where
        a field is invalid; a location already reported is not reported twice."""
        errors: list[InitErrorDetails] = []
        settings: Settings | None = None
        try:
            settings = handler(data)
        except ValidationError as exc:
            errors = [
                InitErrorDetails(
                    type=PydanticCustomError(e["type"], e["msg"]),
                    loc=tuple(e["loc"]),
                    input=e.get("input"),
                )
                for e in exc.errors()
            ]
        if isinstance(data, Mapping):
            seen = {tuple(e["loc"]) for e in errors}
            for loc, message in _reference_problems(data):
                if loc not in seen:
                    seen.add(loc)
                    error = PydanticCustomError("config_reference", message)
                    errors.append(InitErrorDetails(type=error, loc=loc, input=None))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        assert settings is not None
        return settings

    def taxonomy(self) -> Taxonomy | None:
        """The configured taxonomy, or None when `[labels]` is absent (then the data decides)."""
        if not self.labels:
            return None
        return Taxonomy(labels=tuple(Label(name=k, description=v) for k, v in self.labels.items()))

    def backend(self, name: str) -> BackendConfig:
        try:
            return self.backends[name]
        except KeyError:
            known = ", ".join(self.backends) or "none"
            raise ConfigError(f"unknown backend {name!r} (configured: {known})") from None

    @property
    def reference(self) -> BackendConfig | None:
        ref = self.routing.reference_backend
        return self.backends.get(ref) if ref else None


Loc = tuple[int | str, ...]


def _get(block: Any, key: str) -> Any:
    if isinstance(block, Mapping):
        return block.get(key)
    return getattr(block, key, None)


def _non_finite(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every NaN or infinity anywhere in the raw data, plugin keys included."""
    if isinstance(value, float) and not math.isfinite(value):
        yield loc, f"{value} is not a finite number"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*loc, index))


def _cascade_cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Each cycle among cascades once, as `[a, b, ..., a]` starting from its smallest name."""
    found: dict[tuple[str, ...], list[str]] = {}

    def walk(node: str, trail: list[str]) -> None:
        for target in edges.get(node, []):
            if target in trail:
                cycle = trail[trail.index(target) :]
                start = cycle.index(min(cycle))
                ring = cycle[start:] + cycle[:start]
                found.setdefault(tuple(ring), [*ring, ring[0]])
            elif target in edges:
                walk(target, [*trail, target])

    for node in sorted(edges):
        walk(node, [node])
    return [found[key] for key in sorted(found)]


_MODEL_FILE_KEYS = {"specialist": "path", "llamacpp-local": "model_path"}
"""Built-in types whose key names a model file: a folder there fails only at routing time."""


def _reference_problems(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems no single field shows: names that resolve to no backend, cascade cycles,
    non-finite numbers, and model paths that are folders. Reads raw data, best effort:
    whatever is malformed here is reported by the field validation instead."""
    problems = list(_non_finite(data, ()))
    backends = data.get("backends")
    if not isinstance(backends, Mapping):
        return problems
    names = [str(name) for name in backends]

    def unknown(name: str) -> str:
        listing = ", ".join(_key_path([n]) for n in names) or "none"
        return f"no backend named {_short(name)}{_suggest(name, names)} (configured: {listing})"

    routing = data.get("routing", {})
    if isinstance(routing, Mapping | RoutingConfig):
        given = (
            routing
            if isinstance(routing, Mapping)
            else routing.model_dump(include=routing.model_fields_set)
        )
        active = given.get("backend", RoutingConfig.model_fields["backend"].default)
        if isinstance(active, str) and active not in backends:
            problems.append((("routing", "backend"), unknown(active)))
        # Only a reference the file names must exist: the built-in default one is simply
        # absent from a config that defines its own backends (no counterfactual cost then).
        reference = given.get("reference_backend")
        if isinstance(reference, str) and reference and reference not in backends:
            problems.append((("routing", "reference_backend"), unknown(reference)))
    edges: dict[str, list[str]] = {}
    for name, block in backends.items():
        kind = _get(block, "type")
        if kind == "cascade":
            targets = []
            for key in ("first", "then"):
                target = _get(block, key)
                if not isinstance(target, str):
                    continue
                if target == name:
                    problems.append((("backends", name, key), "a cascade cannot call itself"))
                elif target not in backends:
                    problems.append((("backends", name, key), unknown(target)))
                else:
                    targets.append(target)
            edges[name] = targets
        file_key = _MODEL_FILE_KEYS.get(kind) if isinstance(kind, str) else None
        value = _get(block, file_key) if file_key else None
        if file_key and isinstance(value, str) and value and Path(value).expanduser().is_dir():
            where = ("backends", name, file_key)
            problems.append((where, "is a folder; give the model file in it"))
    cascades = {
        name: [t for t in ts if _get(backends[t], "type") == "cascade"]
        for name, ts in edges.items()
    }
    for cycle in _cascade_cycles(cascades):
        if len(cycle) > 2:  # a cascade calling itself is reported above
            path = " -> ".join(_key_path([n]) for n in cycle)
            problems.append((("backends", cycle[0]), f"cascade cycle {path}: it would never end"))
    return problems


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
    settings = Settings.model_validate(data)
    settings._source = source
    return settings


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(loc: Iterable[int | str]) -> str:
    """A TOML dotted key (`backends.gpt-4o-mini.timeout_s`, `labels.""`) for an error loc."""
    parts = []
    for part in loc:
        if part == "[key]":  # pydantic's marker for "the dict key itself"
            continue
        text = str(part)
        parts.append(text if isinstance(part, int) or _BARE_KEY.fullmatch(text) else _short(text))
    return ".".join(parts) or "(root)"


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
            return f"unknown {what}{_suggest(key, Settings.model_fields)}"
        if loc[0] == "routing":
            return f"unknown key{_suggest(key, RoutingConfig.model_fields)}"
        block_type = _block_type(raw, loc[1]) if loc[0] == "backends" else None
        if block_type in BACKEND_TYPE_KEYS:
            valid = BACKEND_TYPE_KEYS[block_type].all()
            owners = [t for t, keys in BACKEND_TYPE_KEYS.items() if key in keys.all()]
            hint = _suggest(key, valid)
            if not hint and owners:
                hint = f" (a key of type {', '.join(map(repr, owners))})"
            return f"not a key of type {block_type!r}{hint}"
        return "unknown key"
    if kind == "missing":
        if loc[:1] == ("backends",) and len(loc) == 3 and key == "type":
            return (
                f"missing: every backend needs a type (known: {', '.join(sorted(_known_types()))})"
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
        key = _key_path(error["loc"])
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
