"""`triagedesk serve` in a real browser: headless Chromium (Debian's package; Playwright's own
browser download is not reachable here) opens the page with the token and the inbox renders
in its terminal; without the token the page is refused. `.ci/run` installs chromium."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import pytest

from tests.reliability.test_serve import TOKEN, descendants, start_serve, stop

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]


def png_rows(data: bytes) -> list[bytes]:
    """The pixel rows of an 8-bit, non-interlaced RGB/RGBA PNG (what Chromium writes), so the
    test can look at the screenshot without an imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6)
    channels = 3 if color == 2 else 4
    raw, stride = zlib.decompress(chunks), width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(b for j in range(0, stride, channels) for b in line[j : j + 3]))
        prev = line
    return rows


def test_the_inbox_renders_in_chromium_with_the_token_and_is_refused_without(
    tmp_path: Path,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    home = tmp_path / "browser-home"
    home.mkdir()
    served = start_serve(home, env_token=TOKEN)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                refused = browser.new_page()
                response = refused.goto(served.url + "/")
                assert response is not None and response.status == 401
                assert "open the address printed at start" in refused.inner_text("body")
                time.sleep(1.0)
                assert descendants(served.process.pid) == []  # no app for the refused page
                refused.close()

                page = browser.new_page(viewport={"width": 1000, "height": 600})
                screen_text: list[str] = []
                page.on(
                    "websocket",
                    lambda ws: ws.on(
                        "framereceived",
                        lambda frame: screen_text.append(
                            frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
                        ),
                    ),
                )
                page.goto(served.url + f"/?token={TOKEN}")
                assert "token" not in page.url  # the redirect took it out of the address
                cookie = next(c for c in page.context.cookies() if c["name"] == "triagedesk_token")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                # the terminal draws on canvases: wait until the inbox's rows have reached the
                # browser, then until it has drawn them (the screenshot's table has text)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and not all(
                    f"T-000{i}" in "".join(screen_text) for i in range(6)
                ):
                    page.wait_for_timeout(500)
                assert "Inbox" in "".join(screen_text), "the inbox never reached the browser"
                page.wait_for_timeout(1500)
                shot = Path(os.environ.get("TRIAGEDESK_SHOT_DIR", tmp_path)) / "inbox.png"
                page.screenshot(path=str(shot))
                rows = png_rows(shot.read_bytes())
                background = rows[len(rows) // 2][-3:]  # the table's empty lower part

                def inked(row: bytes) -> int:
                    pixels = [row[i : i + 3] for i in range(0, len(row), 3)]
                    return sum(px != background for px in pixels)

                # the six ticket rows in the table's top part carry text; the empty part none
                top = [inked(r) for r in rows[20 : len(rows) // 5]]
                assert sum(1 for n in top if n > 50) > 20
                assert (
                    len(
                        {
                            px
                            for r in rows[::7]
                            for px in (r[i : i + 3] for i in range(0, len(r), 21))
                        }
                    )
                    > 8
                )
            finally:
                browser.close()
    finally:
        stop(served)
