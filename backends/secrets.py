"""API keys: from the environment variable the config names, or the OS keyring.

Keys live only in `SecretStr` values held by backends; they never reach the store, logs,
exports, screens or error text.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import SecretStr

if TYPE_CHECKING:
    from tui.config import BackendConfig


def api_key(config: BackendConfig) -> SecretStr | None:
    """The backend's key, or None when neither the variable nor the keyring has one."""
    if config.api_key_env:
        value = os.environ.get(config.api_key_env)
        if value:
            return SecretStr(value)
    if config.keyring_service:
        try:
            import keyring  # optional extra

            stored = keyring.get_password(config.keyring_service, config.name)
        except Exception:  # no keyring backend on this machine: same as no key
            stored = None
        if stored:
            return SecretStr(stored)
    return None


def redact(text: str, *secrets: SecretStr | None) -> str:
    """Remove every given secret from a text (server error bodies can echo headers back)."""
    for secret in secrets:
        if secret is not None:
            value = secret.get_secret_value()
            if value:
                text = text.replace(value, "[redacted]")
    return text
