"""The web server behind `triagedesk serve`: textual-serve's, with a token guard in front.

textual-serve starts one app process per websocket (each visit its own app), and anyone who
reaches its port may start one: on a shared machine that is anyone who can open the port, and
any web page the user visits can aim at `localhost`. So every request, the page, its static
files and the websocket that would start an app, must carry the access token: `?token=...` on
the first page load, which answers with a redirect to the same page without the token (out of
the address bar, history and Referer) and an HttpOnly, SameSite=Strict cookie that carries it
after. A request without it gets 401, with a wrong one 403, before any handler runs, so no
app process starts. Tokens are compared in constant time; the access log, which would write
each request line with the token of a first page load, is off.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from textual_serve.server import Server

COOKIE = "triagedesk_token"
"""The cookie that carries the token after the first page load."""
SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:]+\](:\d{1,5})?$")
"""A Host header that may be written into the page as the websocket's address."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much was right."""
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def token_guard(token: str) -> Middleware:
    """aiohttp middleware: a request without the token never reaches textual-serve."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.query.get("token")
        if given is None:
            cookie = request.cookies.get(COOKIE)
            if cookie is None:
                return web.Response(
                    status=401, text="triagedesk serve: open the address printed at start\n"
                )
            if not token_matches(cookie, token):
                return web.Response(status=403, text="triagedesk serve: wrong token\n")
            return await handler(request)
        if not token_matches(given, token):
            return web.Response(status=403, text="triagedesk serve: wrong token\n")
        if request.method == "GET" and request.path == "/":
            rest = {k: v for k, v in request.query.items() if k != "token"}
            redirect = web.HTTPSeeOther(str(request.rel_url.with_query(rest)))
            redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
            return redirect
        return await handler(request)  # a non-browser client may give it on each request

    return guard


class TokenServer(Server):
    """textual-serve's server with the token guard in front of every route."""

    def __init__(self, command: str, *, host: str, port: int, token: str) -> None:
        shown = f"[{host}]" if ":" in host else host
        super().__init__(command, host=host, port=port, title="triagedesk")
        self.public_url = f"http://{shown}:{port}"
        self.fallback_url = self.public_url
        self.token = token

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(token_guard(self.token))
        return app

    async def handle_index(self, request: web.Request) -> Any:
        """The page names the websocket's address; it is built from the host the browser
        used, so the cookie set for `localhost` goes with it (the base class would name the
        bound address). The base handler reads `public_url` before its first await."""
        host = request.host
        self.public_url = f"http://{host}" if SAFE_HOST.match(host) else self.fallback_url
        return await super().handle_index(request)

    async def on_startup(self, app: web.Application) -> None:
        """textual-serve prints a banner; the command prints its own line instead."""

    def serve(self, debug: bool = False) -> None:
        self.debug = debug
        web.run_app(
            self._make_app(),
            host=self.host,
            port=self.port,
            access_log=None,  # each request line would hold the token of a first page load
            print=None,
        )
