"""`sync --follow` and `webhooks` as processes: they keep working until SIGTERM, then exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.reliability.test_helpdesk_crash import _env, _setup
from tests.servers.helpdesk_server import zendesk
from tui.core.store import Store
from tui.services.helpdesk.webhooks import zendesk_signature

pytestmark = pytest.mark.slow


def _until(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_follow_polls_until_terminated(tmp_path: Path) -> None:
    with zendesk() as server:
        config, db = _setup(tmp_path, server)
        config.write_text(config.read_text() + "poll_interval_s = 0.3\n")
        cmd = [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config)]
        proc = subprocess.Popen(
            [*cmd, "sync", "zd", "--follow"],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _until(lambda: all(server.notes[i] for i in (1, 24)), "the first pass")
            server.add(99, age_s=100, description="refund me please")
            _until(lambda: server.notes.get(99), "the ticket added later")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "pulled 24 new" in out and "pulled 1 new" in out
        assert all(len(notes) == 1 for notes in server.notes.values())


def test_webhooks_process_routes_a_signed_event(tmp_path: Path) -> None:
    with zendesk() as server:
        config, db = _setup(tmp_path, server)
        config.write_text(config.read_text() + 'webhook_secret_env = "ZD_HOOK"\n')
        env = {**_env(tmp_path), "ZD_HOOK": "hook-secret"}
        cmd = [sys.executable, "-m", "tui", "--db", str(db), "--config", str(config)]
        proc = subprocess.Popen(
            [*cmd, "webhooks", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            body = json.dumps({"ticket": {"id": 7}}).encode()
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            headers = {
                "X-Zendesk-Webhook-Signature": zendesk_signature(b"hook-secret", stamp, body),
                "X-Zendesk-Webhook-Signature-Timestamp": stamp,
            }
            assert httpx.post(url, content=body, headers=headers).status_code == 202
            _until(lambda: server.notes[7], "the write-back")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        with Store(db) as store:
            assert store.ticket_count() == 1 and store.latest_decision("zd-7") is not None
