"""Where triagedesk keeps its files, as functions so nothing is created at import time.

`TRIAGEDESK_HOME` moves everything under one folder (tests, demos, portable installs);
otherwise the platform's user directories are used.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP_NAME = "triagedesk"


def _home() -> Path | None:
    home = os.environ.get("TRIAGEDESK_HOME")
    return Path(home).expanduser() if home else None


def config_dir() -> Path:
    home = _home()
    return home if home else user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else user_data_path(APP_NAME, appauthor=False)


def models_dir() -> Path:
    return data_dir() / "models"


def default_config_path() -> Path:
    env = os.environ.get("TRIAGEDESK_CONFIG")
    return Path(env).expanduser() if env else config_dir() / "config.toml"


def default_db_path() -> Path:
    env = os.environ.get("TRIAGEDESK_DB")
    return Path(env).expanduser() if env else data_dir() / "triagedesk.db"


def default_specialist_path() -> Path:
    return models_dir() / "specialist.joblib"


def demo_db_path() -> Path:
    return data_dir() / "demo.db"
