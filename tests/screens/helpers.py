"""Shared builders for the Pilot and snapshot tests: a real store on a temporary path, seeded
with deterministic tickets, and a tiny specialist trained on a handful of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tui.core.config import Settings
from tui.core.models import Taxonomy, Ticket
from tui.core.store import Store
from tui.services.routing import Router

LABELS = {
    "billing": "Charges, invoices, refunds of payments",
    "shipping": "Delivery status, tracking, delays, lost parcels",
    "returns": "Sending items back, exchanges",
    "technical": "Website, app and login problems",
}
PHRASES = {
    "billing": [
        "I was charged twice for order {n}",
        "Invoice {n} shows the wrong amount",
        "Refund for payment {n} never arrived",
        "My card was billed again for {n}",
    ],
    "shipping": [
        "Where is my parcel {n}, tracking has not moved",
        "Delivery of order {n} is late by a week",
        "Courier lost package {n}",
        "Tracking number {n} shows no update",
    ],
    "returns": [
        "I want to send back item {n}, it does not fit",
        "How do I exchange order {n} for a bigger size",
        "Return label for order {n} please",
        "Can I return the shoes from order {n}",
    ],
    "technical": [
        "The app crashes when I open order {n}",
        "Cannot log in to my account since update {n}",
        "Checkout page error {n} when paying",
        "Password reset link {n} does not work",
    ],
}
BASE_TIME = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def make_tickets(n: int, *, fail_every: int = 0) -> tuple[list[Ticket], dict[str, str]]:
    """`n` tickets cycling through the labels, with fixed ids and times; returns their truth."""
    tickets, truth = [], {}
    names = list(LABELS)
    for i in range(n):
        label = names[i % len(names)]
        text = PHRASES[label][(i // len(names)) % 4].format(n=1000 + i)
        if fail_every and i % fail_every == fail_every - 1:
            text += " FAIL"
        ticket = Ticket(
            id=f"T-{i:04d}",
            subject=text.split(",")[0][:40],
            text=text,
            customer=f"customer{i}@example.com",
            channel="email",
            received_at=BASE_TIME + timedelta(minutes=i),
        )
        tickets.append(ticket)
        truth[ticket.id] = label
    return tickets, truth


def settings_for(backends: dict[str, dict[str, Any]], **routing: Any) -> Settings:
    """Settings built directly (no config file), so no default backend is added."""
    return Settings.model_validate(
        {
            "labels": LABELS,
            "routing": {"backend": next(iter(backends)), "daily_volume": 10_000, **routing},
            "backends": {name: {**block, "name": name} for name, block in backends.items()},
        }
    )


def train_specialist(path: Path, tickets: list[Ticket], truth: dict[str, str]) -> Path:
    from tui.core.learning.model import SpecialistModel

    model = SpecialistModel.train([t.text for t in tickets], [truth[t.id] for t in tickets])
    model.save(path)
    return path


def build_router(settings: Settings, store: Store) -> Router:
    return Router(settings, settings.taxonomy() or Taxonomy.from_names(list(LABELS)), store)


def seed(store: Store, n: int, *, labelled: int = 0, fail_every: int = 0) -> dict[str, str]:
    """Import `n` tickets, the first `labelled` of them with their true label."""
    tickets, truth = make_tickets(n, fail_every=fail_every)
    labels = {t.id: truth[t.id] for t in tickets[:labelled]}
    store.import_tickets(tickets, labels, source="test")
    return truth


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], bool], *, timeout: float = 10.0
) -> None:
    """Let the app run until `predicate` holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)
