"""httpx plumbing shared by the HTTP backends (OpenAI-compatible, Anthropic, llama.cpp server).

One place builds the client, maps HTTP statuses and transport failures onto the typed errors
of `tui.core.backend`, parses Retry-After and recognises an HTML page where JSON was due, so
every backend fails the same way. Reading a reply within caps (and its server-sent events) is
`backends.http_reading`'s. Nothing here knows a vendor's payloads beyond the common
`{"error": {"message": ...}}` shapes.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from backends import fast_json
from backends.secrets import redact
from tui.core.backend import (
    AuthenticationFailed,
    BackendError,
    BadResponse,
    ConnectionFailed,
    ModelNotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    Timeout,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from backends.aiohttp_transport import PreciseAiohttpTransport
    from tui.core.config import HTTPOptions

MAX_RESPONSE_BYTES = 1_000_000
"""Most bytes read from one reply; a classification answer is a few hundred."""
MAX_ERROR_BYTES = 64_000
"""Most bytes read from an error body: enough for any server's explanation."""
SERVER_TEXT_CHARS = 200
"""How much server text an error message quotes."""
ACCEPT_ENCODING = "gzip, deflate"
"""The codings asked for, and the only ones read: each is inflated in bounded steps."""


class HeaderLookup(Protocol):
    """A reply's headers as the readers use them: `httpx.Headers`, or the aiohttp exchange's
    `ReplyHeaders` (case-insensitive names, repeated headers joined with ", ")."""

    def get(self, key: str, default: Any = None) -> Any: ...


def client_limits(config: HTTPOptions) -> httpx.Limits:
    """The connection pool's bounds: `max_concurrency` connections, all kept alive."""
    return httpx.Limits(
        max_connections=config.max_concurrency,
        max_keepalive_connections=config.max_concurrency,
    )


def aiohttp_transport(config: HTTPOptions) -> PreciseAiohttpTransport | None:
    """aiohttp's transport for httpx, unless `http_transport = "httpx"` or the optional fast
    path is not installed (then httpx's own transport works)."""
    if config.http_transport != "aiohttp":
        return None
    try:
        from backends.aiohttp_transport import PreciseAiohttpTransport
    except ImportError:
        return None
    return PreciseAiohttpTransport(limits=client_limits(config), trust_env=False)


def make_client(
    config: HTTPOptions,
    *,
    headers: dict[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One pooled client per backend instance.

    The transport is aiohttp's (through httpx-aiohttp, `aiohttp_transport`) unless
    `http_transport = "httpx"`: httpcore's connection pool costs several times more CPU per
    request at high concurrency (benchmarks/RESULTS.md). Redirects are never followed, so a
    key sent in a header cannot travel to another host.

    Args:
        config: The backend's options.
        headers: Headers sent with every request, beside Accept-Encoding.
        transport: The transport, when the caller built it (to reach its aiohttp session);
            else `aiohttp_transport(config)`.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.timeout_s),
        limits=client_limits(config),
        transport=transport if transport is not None else aiohttp_transport(config),
        follow_redirects=False,
        headers={"Accept-Encoding": ACCEPT_ENCODING, **(headers or {})},
    )


@functools.lru_cache(maxsize=256)
def join_url(base_url: str, path: str) -> str:
    """Append `path` to the base URL's path, keeping its query (Azure's `?api-version=`).

    Cached: every request of a backend joins the same two strings."""
    parts = urlsplit(base_url)
    joined = parts.path.rstrip("/") + "/" + path.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, joined, parts.query, ""))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Returns:
        Non-negative seconds, or None when the header is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def server_message(body: str) -> str:
    """The human part of an error body: `error.message`, `message` or `detail`, else the text."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        return body.strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])
        if "detail" in data:
            return json.dumps(data["detail"])[:MAX_ERROR_BYTES]
    return body.strip()


def quote_server(text: str, key: SecretStr | None, *, limit: int = SERVER_TEXT_CHARS) -> str:
    """Server text fit for an error message: redacted, on one line, truncated."""
    clean = " ".join(redact(text, key).split())
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def error_for_status(
    status: int,
    body: str,
    headers: HeaderLookup,
    *,
    key: SecretStr | None,
    model: str | None = None,
) -> BackendError:
    """The typed error for a non-2xx reply, quoting the server's own words.

    Args:
        status: The HTTP status.
        body: The (capped) error body as text.
        headers: Reply headers, for Retry-After and Location.
        key: The API key, removed from anything quoted.
        model: The configured model, to tell a missing model from a wrong URL on 404.
    """
    said = quote_server(server_message(body), key) or "(empty body)"
    text = f"HTTP {status}: {said}"
    if status == 429:
        return RateLimited(text, retry_after=parse_retry_after(headers.get("retry-after")))
    if status >= 500:
        return ServerError(text, status=status)
    if status in (401, 403):
        return AuthenticationFailed(text)
    if status == 404 and ("model" in body.lower() or (model and model in body)):
        return ModelNotFound(text)
    if 300 <= status < 400:
        target = quote_server(headers.get("location", "?"), key)
        return RequestRejected(f"HTTP {status}: redirect to {target} not followed")
    return RequestRejected(text)


def transport_error(exc: httpx.HTTPError, key: SecretStr | None) -> BackendError:
    """Map an httpx exception: timeouts to Timeout, everything on the wire to ConnectionFailed."""
    name = type(exc).__name__
    said = quote_server(str(exc), key)
    detail = f"{name}: {said}" if said and said != name else name
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer within the timeout ({detail})")
    if isinstance(exc, httpx.ConnectError):
        return ConnectionFailed(f"connection failed ({detail})")
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailed(f"connection dropped ({detail})")
    return ConnectionFailed(f"HTTP failure ({detail})")


_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def looks_like_html(body: bytes | str) -> bool:
    """Whether a body is markup (a login page, a proxy's error page) rather than JSON/SSE."""
    head = (body.encode("utf-8", "replace") if isinstance(body, str) else body)[:1024]
    return head.lstrip().startswith(b"<")


def not_the_protocol(body: bytes | str, reply: str, key: SecretStr | None) -> BadResponse:
    """The error for a 200 whose body is HTML, naming what was expected (`reply`).

    Args:
        body: The (capped) body, or its first line.
        reply: What was expected, with its article: "an OpenAI-compatible reply".
        key: The API key, removed from anything quoted.
    """
    data = body.encode("utf-8", "replace") if isinstance(body, str) else body
    found = _HTML_TITLE.search(data[:MAX_ERROR_BYTES])
    title = quote_server(found.group(1).decode("utf-8", "replace"), key, limit=80) if found else ""
    detail = f": page title {title!r}" if title else ""
    return BadResponse(f"not {reply} (HTML){detail}", raw_output=None)


def load_json_object(
    body: bytes,
    what: str = "reply",
    *,
    expected: str | None = None,
    key: SecretStr | None = None,
) -> dict[str, Any]:
    """Decode a JSON object body.

    Args:
        body: The capped body.
        what: How error messages name it.
        expected: The protocol's reply with its article ("an OpenAI-compatible reply"), for
            the message when the body is an HTML page.
        key: The API key, removed from anything quoted.

    Raises:
        BadResponse: Not JSON (HTML said as such), or not an object.
    """
    try:
        data = fast_json.loads(body)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, or a 4,300+ digit int
        if expected is not None and looks_like_html(body):
            raise not_the_protocol(body, expected, key) from None
        raise BadResponse(f"{what} is not JSON: {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise BadResponse(f"{what} is JSON but not an object")
    return data


def mentions(text: str, needles: Iterable[str]) -> bool:
    """Whether `text` contains any needle, ignoring case (to recognise server complaints)."""
    folded = text.casefold()
    return any(needle.casefold() in folded for needle in needles)
