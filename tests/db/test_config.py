"""Connection settings: first source found wins, and secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicrm.config import backup_dir, resolve
from aicrm.db import redact
from aicrm.errors import UsageError


def test_database_url_wins_over_everything() -> None:
    settings = resolve(
        {
            "DATABASE_URL": "postgresql://u:pw@h:5433/d",
            "DB_HOST": "other",
            "PGHOST": "third",
            "AICRM_HOME": "/tmp/x",
        }
    )
    assert settings.source == "DATABASE_URL"
    assert settings.conninfo == "postgresql://u:pw@h:5433/d"
    assert settings.secrets == ("pw",)


def test_seed_variables_come_next() -> None:
    settings = resolve(
        {
            "DB_HOST": "/var/run/postgresql",
            "DB_PORT": "6543",
            "DB_USER": "crm",
            "DB_NAME": "crm_prod",
            "DB_PASSWORD": "pa ss'word",
            "PGHOST": "ignored",
        }
    )
    assert settings.source == "DB_*"
    params = dict(part.split("=", 1) for part in settings.conninfo.split(" ", 4)[:4])
    assert params["host"] == "/var/run/postgresql" and params["port"] == "6543"
    assert settings.secrets == ("pa ss'word",)


def test_libpq_variables_are_left_to_libpq() -> None:
    settings = resolve({"PGHOST": "db.internal", "PGPASSWORD": "from-env"})
    assert settings.source == "PG*" and settings.conninfo == ""
    assert settings.secrets == ("from-env",)


def test_nothing_set_means_the_embedded_server(tmp_path: Path) -> None:
    settings = resolve({"AICRM_HOME": str(tmp_path)})
    assert settings.embedded and settings.home == tmp_path


def test_a_malformed_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(UsageError) as caught:
        resolve({"DATABASE_URL": "password=hunter2 not valid"})
    assert "hunter2" not in caught.value.message


def test_backup_dir_defaults_to_backups_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert backup_dir({}) == tmp_path / "backups"
    assert backup_dir({"BACKUP_DIR": str(tmp_path / "elsewhere")}) == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "text",
    [
        "failed for postgresql://bob:topsecret@host/db",
        "conninfo host=h password=topsecret user=bob",
        "conninfo password = 'topsecret' user=bob",
        "plain topsecret in a message",
    ],
)
def test_redact_hides_passwords_in_any_form(text: str) -> None:
    assert "topsecret" not in redact(text, ("topsecret",))
