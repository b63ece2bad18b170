"""`triagedesk sync` in-process: dry run, one pass, bad names and bad config, one line each."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.servers.helpdesk_server import ZendeskServer, zendesk
from tests.unit.helpdesk_setup import use_hash_backend, write_config
from tui.cli import run


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return run(list(argv), out=out, err=err), out.getvalue(), err.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> ZendeskServer:
    use_hash_backend(monkeypatch)
    monkeypatch.setenv("ZD_TOKEN", "zd-secret-token")
    with zendesk() as srv:
        yield srv


def test_dry_run_writes_nothing_then_once_writes(server: ZendeskServer, tmp_path: Path) -> None:
    server.add(1)
    server.add(2)
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    code, out, err = cli("--db", str(db), "--config", str(config), "sync", "zd", "--dry-run")
    assert code == 0, err
    assert "would write 2 (dry run)" in out and out.count("  would write zd-") == 2
    assert "private note" in out and not server.writes(1) and not server.writes(2)
    assert "zd: pulled" in err and "2 pending" in err
    code, out, err = cli("--db", str(db), "--config", str(config), "sync", "zd")
    assert code == 0, err
    assert "pulled 0 new" in out and "pushed 2" in out
    assert len(server.notes[1]) == 1 and len(server.notes[2]) == 1
    assert "0 pending" in err


def test_bad_names_and_usage_are_one_line(server: ZendeskServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", server.url)
    db = tmp_path / "t.db"
    code, _, err = cli("--db", str(db), "--config", str(config), "sync", "nope")
    assert (code, err) == (2, "triagedesk: error: unknown helpdesk 'nope' (configured: zd)\n")
    code, _, err = cli("--db", str(db), "--config", str(config), "sync", "zd", "--once", "--follow")
    assert code == 2 and "--follow: not allowed with argument --once" in err
    config.write_text(config.read_text().replace("token_env", "tokn_env"))
    code, _, err = cli("--db", str(db), "--config", str(config), "sync", "zd")
    assert code == 2 and "helpdesk.zd.tokn_env: unknown key (did you mean 'token_env'?)" in err


def test_config_rules(server: ZendeskServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", server.url)
    text = config.read_text()
    for old, new, expected in [
        ('email = "bot@acme.test"\n', "", "type 'zendesk' needs email"),
        ('token_env = "ZD_TOKEN"', 'token_env = "ZD TOKEN"', "not an environment variable name"),
        (f'base_url = "{server.url}"', 'base_url = "ftp://x"', "must be an http(s) URL"),
        ('writeback = "apply"', 'writeback = "always"', "helpdesk.zd.writeback"),
        ("[helpdesk.zd]", "[helpdesk.Zendesk]", "a helpdesk name is 1 to 16 lower-case"),
    ]:
        config.write_text(text.replace(old, new))
        code, _, err = cli("--db", str(tmp_path / "t.db"), "--config", str(config), "sync", "zd")
        assert code == 2 and expected in err, err
        assert err.startswith("triagedesk: error: ")


def test_webhooks_needs_a_secret_setting(server: ZendeskServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", server.url)
    code, _, err = cli(
        "--config", str(config), "--db", str(tmp_path / "t.db"), "webhooks", "--port", "0"
    )
    assert code == 2 and "webhook_secret_env" in err
