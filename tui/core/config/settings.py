"""The whole config as frozen pydantic models: `[labels]`, `[routing]` and `[backends.*]`.

Every problem is reported at once: field errors (each backend block against its own type's
`Options`) and the cross-entry checks of `references` together, one entry per location.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tui.core.backend_types import BUILTIN
from tui.core.config.errors import ConfigError, key_path, short, suggest
from tui.core.config.options import BackendConfig
from tui.core.config.references import Loc, reference_problems
from tui.core.helpdesk.config import HelpdeskConfig, HelpdeskName
from tui.core.models import Label, Taxonomy, check_label_name


def known_types() -> dict[str, str]:
    """Every backend type, built in or installed, with its import path."""
    from tui.core.backend_types import available_types

    return available_types()


def _known_type(value: Any) -> Any:
    """Refuse a block whose `type` no built-in or installed backend has: it would turn every
    ticket into an error decision. Anything else malformed is the model's to report."""
    kind = value.get("type") if isinstance(value, Mapping) else None
    if isinstance(kind, str) and kind not in BUILTIN:  # entry points read only for a plugin's type
        known = known_types()
        if kind not in known:
            listing = ", ".join(sorted(known))
            message = f"unknown backend type {short(kind)}{suggest(kind, known)} (known: {listing})"
            error = PydanticCustomError("unknown_backend_type", message)
            raise ValidationError.from_exception_data(
                "BackendConfig", [InitErrorDetails(type=error, loc=("type",), input=kind)]
            )
    return value


BackendBlock = SerializeAsAny[Annotated[BackendConfig, BeforeValidator(_known_type)]]
"""One `[backends.NAME]` block: validated as its type's `Options` (and dumped as such)."""


class RoutingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    backend: str = "specialist"
    daily_volume: int = Field(default=50_000, ge=0)
    reference_backend: str | None = "gpt-4o-mini"
    low_confidence: float = Field(default=0.6, ge=0, le=1)
    """Below this a prediction counts as low confidence in filters and the inbox."""
    auto_route: bool = False
    shadow: tuple[str, ...] = ()
    """Candidate backends that also route every live ticket in the background (shadow
    mode): stored as shadow decisions, never the ticket's decision (`tui.services.shadow`)."""


def check_agent_name(name: str) -> str:
    """An agent's name (`[team] agent`, `--agent`): 1 to 64 printable characters, no
    surrounding whitespace; it goes into label events and the inbox's holder column."""
    if not name.strip() or name != name.strip():
        raise ValueError("must be a name without surrounding whitespace")
    if len(name) > 64 or not name.isprintable():
        raise ValueError("must be at most 64 printable characters")
    return name


class TeamConfig(BaseModel):
    """`[team]`: who this desk's agent is and how long a ticket they open stays theirs."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    agent: Annotated[str, AfterValidator(check_agent_name)] | None = None
    """The agent's name in label events and leases (default: the OS user); `--agent` wins."""
    lease_s: float = Field(default=120.0, ge=5, le=86_400)
    """How long a claimed ticket stays the agent's without renewal: the TUI renews it every
    quarter of this while the ticket is open, so a crashed TUI gives it back after this."""


def shadow_problems(data: Mapping[str, Any], default_backend: str) -> list[tuple[Loc, str]]:
    """What is wrong with `[routing] shadow` in the raw config, one (location, message) each:
    a name no backend has, the active backend itself (it would route every ticket twice and
    compare it with itself), a name listed twice. A list that is not a list of strings is
    the field validation's to report."""
    routing = data.get("routing", {})
    backends = data.get("backends")
    if isinstance(routing, BaseModel):
        routing = routing.model_dump(include=routing.model_fields_set)
    if not isinstance(routing, Mapping) or not isinstance(backends, Mapping):
        return []
    names = routing.get("shadow", ())
    if not isinstance(names, list | tuple):
        return []
    active = routing.get("backend", default_backend)
    configured = [str(n) for n in backends]
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        loc: Loc = ("routing", "shadow", index)
        if not isinstance(name, str):
            continue
        if name not in backends:
            listing = ", ".join(key_path([n]) for n in configured) or "none"
            hint = suggest(name, configured)
            problems.append((loc, f"no backend named {short(name)}{hint} (configured: {listing})"))
        elif name == active:
            problems.append((loc, f"{short(name)} is the active backend; it cannot shadow itself"))
        elif name in seen:
            problems.append((loc, f"{short(name)} is listed twice"))
        seen.add(name)
    return problems


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
    backends: dict[str, BackendBlock] = Field(default_factory=dict)
    helpdesk: dict[HelpdeskName, HelpdeskConfig] = Field(default_factory=dict)
    """`[helpdesk.NAME]`: helpdesks `sync` pulls from and writes back to."""
    team: TeamConfig = Field(default_factory=TeamConfig)
    """`[team]`: the agent's name and lease (team mode, several agents on one database)."""
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
            default = RoutingConfig.model_fields["backend"].default
            problems = reference_problems(data, default) + shadow_problems(data, default)
            for loc, message in problems:
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

    def helpdesk_named(self, name: str) -> HelpdeskConfig:
        try:
            return self.helpdesk[name]
        except KeyError:
            known = ", ".join(self.helpdesk) or "none"
            raise ConfigError(f"unknown helpdesk {name!r} (configured: {known})") from None

    @property
    def reference(self) -> BackendConfig | None:
        ref = self.routing.reference_backend
        return self.backends.get(ref) if ref else None
