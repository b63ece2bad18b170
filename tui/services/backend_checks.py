"""`backends --check`: ask every configured backend whether it answers, all at once."""

from __future__ import annotations

import asyncio
from typing import Any

from tui.core.config import Settings
from tui.core.registry import BackendLoadError, UnknownBackendType, create_backend


async def check_backends(settings: Settings) -> list[dict[str, Any]]:
    """One entry per configured backend, in config order: {name, type, model, ok, detail}.

    A check reports, it never raises: a backend that cannot be built, does not answer
    within its timeout (plus 5 s) or fails in any way is `ok: False` with the reason.
    """

    async def one(name: str) -> dict[str, Any]:
        config = settings.backends[name]
        entry: dict[str, Any] = {
            "name": name,
            "type": config.type,
            "model": config.model_name,
            "ok": None,
            "detail": "",
        }
        try:
            backend = create_backend(config, resolve=lambda n: create_backend(settings.backend(n)))
            try:
                health = await asyncio.wait_for(backend.check(), config.timeout_s + 5)
                entry["ok"], entry["detail"] = health.ok, health.detail
            finally:
                await backend.aclose()
        except (UnknownBackendType, BackendLoadError) as exc:
            entry["ok"], entry["detail"] = False, str(exc)
        except TimeoutError:
            entry["ok"], entry["detail"] = False, "no answer within the timeout"
        except Exception as exc:  # a check must report, never crash the listing
            entry["ok"], entry["detail"] = False, f"{type(exc).__name__}: {exc}"
        return entry

    return list(await asyncio.gather(*(one(name) for name in settings.backends)))
