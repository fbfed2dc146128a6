"""With no settings at all, every command finds the same embedded database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from aicrm.db import embedded
from tests.conftest import Database, Server, clean_env, host_port_user, run_cli


@pytest.mark.slow
def test_no_settings_starts_one_embedded_database_found_from_anywhere(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(AICRM_HOME=str(home), BACKUP_DIR=str(tmp_path / "backups"))
    first_dir, second_dir = tmp_path / "a", tmp_path / "b" / "deeper"
    first_dir.mkdir()
    second_dir.mkdir(parents=True)
    try:
        status = run_cli("db", "status", env=env, cwd=first_dir)
        assert status.returncode == 0, status.stderr
        assert "(embedded)" in status.stdout and "/aicrm (embedded)" in status.stdout
        assert "version:  empty" in status.stdout
        assert run_cli("db", "migrate", env=env, cwd=first_dir).returncode == 0

        elsewhere = run_cli("db", "status", "--json", env=env, cwd=second_dir)
        assert json.loads(elsewhere.stdout)["version"] >= 0
        assert (home / "pgdata" / "PG_VERSION").exists()

        stopped = run_cli("db", "stop", env=env, cwd=second_dir)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert embedded.running(home) is None
        # It starts again on demand, with the data kept.
        again = run_cli("db", "status", "--json", env=env, cwd=first_dir)
        assert json.loads(again.stdout)["version"] >= 0
    finally:
        embedded.stop(home)


def test_stop_refuses_when_the_database_is_not_embedded(db: Database) -> None:
    result = db.cli("db", "stop")
    assert result.returncode == 2
    assert "not the embedded server" in result.stderr


def test_db_host_may_be_a_unix_socket_directory(embedded_db: Database) -> None:
    host, port, user = host_port_user(embedded_db.url)
    assert host.startswith("/")
    env = {
        "DATABASE_URL": "",
        "DB_HOST": host,
        "DB_PORT": port,
        "DB_USER": user,
        "DB_NAME": embedded_db.name,
    }
    result = embedded_db.cli("db", "status", env=env)
    assert result.returncode == 0, result.stderr
    assert f"socket {host}:{port}/{embedded_db.name} (DB_*)" in result.stdout


def test_the_embedded_server_runs_postgresql_18(embedded_server: Server) -> None:
    with psycopg.connect(embedded_server.admin) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None and int(row[0]) >= 180000
