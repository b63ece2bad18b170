"""Loading the TOML config into frozen pydantic settings, with errors that name file and key.

A missing file is not an error: the default config (specialist only) works with nothing set.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tui.models import Label, Taxonomy

DEFAULT_CPU_USD_PER_HOUR = 0.04
"""A small cloud vCPU hour (on-demand general-purpose instances list $0.03-0.05 per vCPU)."""


class ConfigError(Exception):
    """The config file is unreadable or invalid; the message names the file and the key."""


class BackendConfig(BaseModel):
    """One `[backends.NAME]` block. Type-specific keys are checked by `_required_keys`."""

    model_config = ConfigDict(frozen=True, extra="allow")

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
    temperature: float = 0.0
    max_prompt_chars: int = Field(default=6000, ge=200)
    n_ctx: int = Field(default=2048, ge=128)
    n_gpu_layers: int = 0
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """HTTP backends' transport: aiohttp's (fast) or httpx's own."""

    @model_validator(mode="after")
    def _required_keys(self) -> BackendConfig:
        needs: dict[str, tuple[str, ...]] = {
            "openai": ("base_url", "model"),
            "anthropic": ("model",),
            "ollama": ("model",),
            "llamacpp": ("base_url",),
            "llamacpp-local": ("model_path",),
            "cascade": ("first", "then", "threshold"),
        }
        missing = [key for key in needs.get(self.type, ()) if getattr(self, key) is None]
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


class RoutingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = "specialist"
    daily_volume: int = Field(default=50_000, ge=0)
    reference_backend: str | None = "gpt-4o-mini"
    low_confidence: float = Field(default=0.6, ge=0, le=1)
    """Below this a prediction counts as low confidence in filters and the inbox."""
    auto_route: bool = False


class Settings(BaseModel):
    """The whole config. Built by `load_settings`; the default instance works with no file."""

    model_config = ConfigDict(frozen=True)

    labels: dict[str, str] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    source: Path | None = None
    """The file these settings came from, for error messages; None for the defaults."""

    @model_validator(mode="after")
    def _references(self) -> Settings:
        if self.routing.backend not in self.backends:
            raise ValueError(f"routing.backend: no backend named {self.routing.backend!r}")
        for name, backend in self.backends.items():
            if backend.type == "cascade":
                for key in ("first", "then"):
                    target = getattr(backend, key)
                    if target not in self.backends:
                        raise ValueError(f"backends.{name}.{key}: no backend named {target!r}")
                    if target == name:
                        raise ValueError(f"backends.{name}.{key}: a cascade cannot call itself")
        return self

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
    backends = raw.get("backends", {})
    if not isinstance(backends, dict):
        raise ValueError("backends: must be a table")
    named = {}
    for name, block in backends.items():
        if not isinstance(block, dict):
            raise ValueError(f"backends.{name}: must be a table")
        named[name] = {**block, "name": name}
    return Settings.model_validate({**raw, "backends": named, "source": source})


def _key_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "source") or "(root)"


def load_settings(path: Path | None, *, required: bool = False) -> Settings:
    """Read and validate a config file.

    Args:
        path: The TOML file; when it does not exist the defaults are used.
        required: Raise instead of falling back when the file is missing (an explicit --config).

    Raises:
        ConfigError: With one line that names the file and the offending key.
    """
    if path is None or not path.exists():
        if required and path is not None:
            raise ConfigError(f"{path}: config file not found")
        return default_settings()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if "backends" not in raw:
        raw["backends"] = DEFAULT_BACKENDS
    elif "specialist" not in raw["backends"] and isinstance(raw["backends"], dict):
        raw["backends"] = {"specialist": {"type": "specialist"}, **raw["backends"]}
    try:
        return _build(raw, path)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = _key_path(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if key == "(root)":
            raise ConfigError(f"{path}: {msg}") from None
        raise ConfigError(f"{path}: {key}: {msg}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
