"""The pure part of helpdesk sync: wire parsing, webhook bodies, write-back plans, the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tui.core.helpdesk import (
    HelpdeskConfig,
    HelpdeskProtocolError,
    PushRequest,
    default_tag,
    plan_push,
    webhook_ticket_id,
)
from tui.core.helpdesk.wire import freshdesk_page, zendesk_page
from tui.core.store import PulledTicket, Store


def _config(**values: object) -> HelpdeskConfig:
    base: dict[str, object] = {
        "name": "zd",
        "type": "zendesk",
        "base_url": "https://a.zendesk.test",
        "email": "bot@a.test",
        "token_env": "ZD_TOKEN",
        "writeback": "apply",
    }
    return HelpdeskConfig.model_validate({**base, **values})


def test_zendesk_page_reads_users_and_drops_deleted() -> None:
    page = zendesk_page(
        {
            "tickets": [
                {
                    "id": 1,
                    "subject": "s",
                    "description": "d",
                    "requester_id": 3,
                    "via": {"channel": "web"},
                    "updated_at": "2026-01-01T00:00:00Z",
                    "tags": ["a"],
                },
                {"id": 2, "status": "deleted", "updated_at": "2026-01-01T00:00:00Z"},
            ],
            "users": [{"id": 3, "email": "c@d.e"}],
            "after_cursor": "abc",
            "end_of_stream": True,
        }
    )
    (ticket,) = page.tickets
    assert (ticket.requester, ticket.channel, ticket.tags) == ("c@d.e", "web", ("a",))
    t = ticket.ticket("zd")
    assert t.id == "zd-1" and t.text == "s\n\nd" and t.meta["helpdesk_id"] == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"tickets": [], "end_of_stream": "maybe"}, "end_of_stream"),
        (
            {"tickets": [{"id": "x", "updated_at": "t"}], "end_of_stream": True},
            "unexpected reply at id",
        ),
        ({"end_of_stream": True}, "tickets"),
    ],
)
def test_malformed_pages_are_one_line(raw: object, message: str) -> None:
    with pytest.raises(HelpdeskProtocolError, match=message) as caught:
        zendesk_page(raw)
    assert "\n" not in str(caught.value)


def test_empty_ticket_is_refused_through_the_ingest_rules() -> None:
    (ticket,) = freshdesk_page(
        [{"id": 9, "subject": "  ", "description_text": "", "updated_at": "2026-01-01T00:00:00Z"}]
    )
    with pytest.raises(HelpdeskProtocolError, match="fd ticket 9: empty text"):
        ticket.ticket("fd")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "zen:event-type:ticket.created", "detail": {"id": "12"}}, 12),
        ({"ticket": {"id": 13}}, 13),
        ({"freshdesk_webhook": {"ticket_id": 14}}, 14),
        ({"ticket_id": "15"}, 15),
    ],
)
def test_webhook_bodies(body: object, expected: int) -> None:
    assert webhook_ticket_id(body) == expected


@pytest.mark.parametrize(
    "body", [[], {"ticket": {"id": True}}, {"id": "-1"}, {"id": "9" * 30}, "x"]
)
def test_webhook_bodies_without_an_id(body: object) -> None:
    with pytest.raises(HelpdeskProtocolError):
        webhook_ticket_id(body)


def _push(**values: object) -> PushRequest:
    base: dict[str, object] = dict(
        push_id=3,
        helpdesk="zd",
        ticket_id="zd-1",
        remote_id=1,
        label="billing",
        previous_label=None,
        correction=False,
        stamp=None,
        resumed=False,
        confidence=0.9,
        backend="gpt",
        backend_type="openai",
        model="m",
        latency_ms=410.0,
        cost_usd=0.0001,
    )
    return PushRequest(**{**base, **values})  # type: ignore[arg-type]


def test_plans() -> None:
    config = _config(
        labels={"billing": {"group_id": 7, "tags": ["money"]}}, label_field=11, confidence_field=12
    )
    plan = plan_push(config, _push())
    assert (plan.group_id, plan.add_tags, plan.remove_tags) == (7, ("money",), ())
    assert plan.custom_fields == {11: "billing", 12: 0.9}
    assert plan.note.endswith("[triagedesk push zd/3]") and "latency 410 ms" in plan.note
    fix = plan_push(
        config, _push(label="shipping", previous_label="billing", correction=True, confidence=None)
    )
    assert fix.add_tags == ("triagedesk_shipping",) and fix.remove_tags == ("money",)
    assert fix.group_id is None and "agent set the label to shipping (was billing)" in fix.note
    note_only = plan_push(config.model_copy(update={"writeback": "note"}), _push())
    assert (note_only.group_id, note_only.add_tags, note_only.custom_fields) == (None, (), {})
    assert default_tag("Billing & Refunds") == "triagedesk_billing_refunds"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"type": "freshdesk", "label_field": 5}, "takes a field name"),
        ({"label_field": "cf_x"}, "takes a field id"),
        ({"token_env": None}, "needs token_env"),
        ({"type": "freshdesk", "page_size": 500}, "at most 100"),
        ({"labels": {"billing": {"tags": ["two words"]}}}, "without spaces"),
    ],
)
def test_config_rules(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _config(**values)


def test_store_pages_are_idempotent_and_corrections_queue(tmp_path: Path) -> None:
    (remote,) = freshdesk_page(
        [{"id": 4, "subject": "s", "description_text": "d", "updated_at": "2026-01-01T00:00:00Z"}]
    )
    when = datetime(2026, 1, 1, tzinfo=UTC)
    with Store(tmp_path / "t.db") as store:
        first = store.store_pull_page("fd", [PulledTicket(remote.ticket("fd"), 4, when)], "c1")
        again = store.store_pull_page("fd", [PulledTicket(remote.ticket("fd"), 4, when)], "c2")
        assert (first.new, again.new, again.updated) == (1, 0, 0)
        assert store.pull_cursor("fd") == "c2"
        store.add_label("fd-4", "billing", agent="a")
        assert store.queue_pushes("fd") == 1 and store.queue_pushes("fd") == 0
        store.add_label("fd-4", "shipping", agent="a")
        assert store.queue_pushes("fd") == 1
        states = [(r.label, r.state) for r in store.push_records("fd")]
        assert states == [("billing", "superseded"), ("shipping", "pending")]
