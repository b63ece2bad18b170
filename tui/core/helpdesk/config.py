"""`[helpdesk.NAME]`: one helpdesk to pull tickets from and push routing decisions back to.

Strict like every other block (unknown keys refused, with the closest key suggested by the
loader). No secret is ever written here: the config names where the token lives
(`token_env`, or the OS keyring under `keyring_service`), so a config file can be shared
and committed without leaking an API token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from tui.core.models import check_label_name

HelpdeskType = Literal["zendesk", "freshdesk"]
Writeback = Literal["off", "note", "apply"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,15}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _helpdesk_name(name: str) -> str:
    """The table name prefixes every ticket id (`zd-12345`), so it must be short and plain."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            "a helpdesk name is 1 to 16 lower-case letters, digits or '_', starting with a letter"
        )
    return name


def _env_name(name: str | None) -> str | None:
    if name is not None and not _ENV.fullmatch(name):
        raise ValueError("not an environment variable name")
    return name


def _label(name: str) -> str:
    if check_label_name(name) != name:
        raise ValueError("label has surrounding whitespace")
    return name


def _tag(tag: str) -> str:
    """Zendesk and Freshdesk tags hold no spaces (Zendesk splits on them)."""
    if not tag or len(tag) > 80 or any(c.isspace() or not c.isprintable() for c in tag):
        raise ValueError("a tag is 1 to 80 printable characters without spaces")
    return tag


HelpdeskName = Annotated[str, AfterValidator(_helpdesk_name)]
EnvName = Annotated[str | None, AfterValidator(_env_name)]
Tag = Annotated[str, AfterValidator(_tag)]


class LabelMapping(BaseModel):
    """`[helpdesk.NAME.labels.LABEL]`: where a ticket routed to LABEL goes in the helpdesk."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group_id: int | None = Field(default=None, ge=1)
    tags: tuple[Tag, ...] | None = None
    """Tags added (never replacing the agents'); absent: `triagedesk_<label>`."""


class HelpdeskConfig(BaseModel):
    """One `[helpdesk.NAME]` table."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = ""
    """The table's key, set by the loader."""
    type: HelpdeskType
    base_url: str
    email: str | None = None
    """Zendesk API-token auth is `{email}/token:{token}`; Freshdesk does not use it."""
    token_env: EnvName = None
    keyring_service: str | None = None
    """Keyring service holding the token under the user name `helpdesk.NAME`."""
    writeback: Writeback = "note"
    poll_interval_s: float = Field(default=60.0, gt=0, le=86_400)
    requests_per_minute: int = Field(default=200, ge=1, le=100_000)
    """Ceiling on requests sent, below the plan's own limit, so triagedesk leaves room for
    the team's other integrations."""
    max_retries: int = Field(default=5, ge=0, le=20)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    page_size: int | None = Field(default=None, ge=1, le=1000)
    """Tickets per pulled page; absent: the most the helpdesk serves (Zendesk 1000,
    Freshdesk 100)."""
    start_time: datetime | None = None
    """Where the first pull starts; absent: 7 days before it."""
    label_field: int | str | None = None
    """Custom field that receives the label: a Zendesk field id, a Freshdesk `cf_` name."""
    confidence_field: int | str | None = None
    webhook_secret_env: EnvName = None
    """Zendesk: the webhook's signing secret; Freshdesk: the shared secret header's value."""
    labels: dict[Annotated[str, AfterValidator(_label)], LabelMapping] = Field(default_factory=dict)

    @field_validator("start_time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """A TOML date-time without an offset is UTC, as helpdesks' own times are."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", self.base_url):
            raise ValueError(f"base_url {self.base_url!r}: must be an http(s) URL")
        if self.token_env is None and self.keyring_service is None:
            raise ValueError("needs token_env (or keyring_service): where the API token is")
        if self.type == "zendesk" and not self.email:
            raise ValueError("type 'zendesk' needs email (API token auth is email/token)")
        if self.type == "freshdesk" and self.page_size is not None and self.page_size > 100:
            raise ValueError("page_size: Freshdesk serves at most 100 tickets a page")
        kind = int if self.type == "zendesk" else str
        for key in ("label_field", "confidence_field"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, kind):
                what = "a field id (integer)" if kind is int else "a field name ('cf_...')"
                raise ValueError(f"{key}: type {self.type!r} takes {what}")
        return self

    @property
    def root(self) -> str:
        return self.base_url.rstrip("/")

    def tags_for(self, label: str) -> tuple[str, ...]:
        mapping = self.labels.get(label)
        if mapping is not None and mapping.tags is not None:
            return mapping.tags
        return (default_tag(label),)

    def group_for(self, label: str) -> int | None:
        mapping = self.labels.get(label)
        return mapping.group_id if mapping is not None else None

    @property
    def secret_variables(self) -> str:
        """Where the token comes from, for error lines: names only, never a value."""
        places = [p for p in (self.token_env, self.keyring_service and "the keyring") if p]
        return " or ".join(places)


def default_tag(label: str) -> str:
    """`triagedesk_<label>`, lower case, anything but letters and digits as `_`."""
    return "triagedesk_" + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def ticket_id(helpdesk: str, remote_id: int | str) -> str:
    """The triagedesk id of a helpdesk ticket: `zd-12345` for ticket 12345 of `[helpdesk.zd]`."""
    return f"{helpdesk}-{remote_id}"
