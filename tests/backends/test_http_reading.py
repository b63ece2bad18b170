"""The stream helpers every chat backend shares: one event's JSON object, and telling an HTML
page from a cut stream."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from backends.http_reading import FirstLine, SSEEvent, event_object
from tui.core.backend import BadResponse

KEY = SecretStr("sk-secret-123")


def test_event_object_decodes_an_object() -> None:
    assert event_object(SSEEvent("", '{"type": "ping", "n": 1}'), "stream event", KEY) == {
        "type": "ping",
        "n": 1,
    }


def test_event_object_quotes_data_that_is_not_json_redacted_and_cut() -> None:
    data = "oops sk-secret-123 " + "x" * 200
    with pytest.raises(BadResponse) as raised:
        event_object(SSEEvent("", data), "stream chunk", KEY)
    message = str(raised.value)
    assert message.startswith("stream chunk is not JSON: 'oops [redacted] xxx")
    assert "sk-secret-123" not in message
    assert len(message) < 120


@pytest.mark.parametrize("data", ["[1, 2]", '"text"', "7"])
def test_event_object_refuses_json_that_is_not_an_object(data: str) -> None:
    with pytest.raises(BadResponse, match=r"^stream event is not an object$"):
        event_object(SSEEvent("", data), "stream event", None)


def test_event_object_refuses_an_integer_too_long_to_decode() -> None:
    with pytest.raises(BadResponse, match="is not JSON"):
        event_object(SSEEvent("", "1" * 5000), "stream chunk", None)


def test_raise_if_html_names_the_page() -> None:
    first = FirstLine("<html><head><title>Sign in</title></head>")
    with pytest.raises(BadResponse, match=r"^not an example reply \(HTML\): page title 'Sign in'$"):
        first.raise_if_html("an example reply", KEY)


@pytest.mark.parametrize("text", [None, "data: {}", "event: ping"])
def test_raise_if_html_lets_other_streams_pass(text: str | None) -> None:
    FirstLine(text).raise_if_html("an example reply", KEY)
