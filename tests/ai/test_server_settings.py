"""The embedded server's settings for bulk work (docs/lead-scoring.md, 'Speed')."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from aicrm.db import embedded
from tests.conftest import Server, clean_env, run_cli

SHOWN = "SELECT name, setting, unit, sourcefile FROM pg_settings WHERE name = ANY(%s)"


def _settings(conninfo: str) -> dict[str, tuple[str, str, str]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(SHOWN, (list(embedded.settings()),)).fetchall()
    return {r[0]: (r[1], r[2] or "", r[3] or "") for r in rows}


def test_the_settings_are_bounded() -> None:
    wanted = embedded.settings()
    assert set(wanted) == {"shared_buffers", "wal_buffers", "max_wal_size", "checkpoint_timeout"}
    assert 128 <= int(wanted["shared_buffers"].removesuffix("MB")) <= 1024


def test_a_server_aicrm_started_has_them(server: Server) -> None:
    if server.home is None:
        pytest.skip("the tests run on a server aicrm did not start")
    found = _settings(server.admin)
    assert found["max_wal_size"][:2] == ("8192", "MB")
    assert found["checkpoint_timeout"][:2] == ("1800", "s")
    assert found["wal_buffers"][:2] == ("8192", "8kB")  # 64MB
    assert all(source.endswith("postgresql.auto.conf") for _s, _u, source in found.values())


@pytest.mark.slow
def test_they_are_set_once_and_your_own_are_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    try:
        assert run_cli("db", "status", env=env, cwd=tmp_path).returncode == 0
        admin = embedded.conninfo(home, "postgres")  # running: no restart here
        assert _settings(admin)["wal_buffers"][:2] == ("8192", "8kB")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET max_wal_size = '2GB'")  # yours
            conn.execute("ALTER SYSTEM RESET wal_buffers")  # gone: aicrm sets it again
        assert run_cli("db", "stop", env=env, cwd=tmp_path).returncode == 0
        assert run_cli("db", "status", env=env, cwd=tmp_path).returncode == 0  # starts it again
        found = _settings(embedded.conninfo(home, "postgres"))
        assert found["max_wal_size"][:2] == ("2048", "MB")
        assert found["wal_buffers"][:2] == ("8192", "8kB")  # restarted to take it
    finally:
        embedded.stop(home)
