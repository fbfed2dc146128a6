"""Verified backups, the seed's psql rollback command, and `aicrm db restore`."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from aicrm.db import tools
from tests.conftest import Database, create_database, drop_database, host_port_user
from tests.support import copy_migrations, table_digests


def _legacy_with_data(db: Database, tmp_path: Path) -> Path:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email, source) SELECT 'l' || i || '@x.org', 'web' "
        "FROM generate_series(1, 50) i;"
        "INSERT INTO clients (name, converted_from_lead_id) SELECT 'c', id FROM leads LIMIT 5;"
        "UPDATE leads l SET client_id = c.id FROM clients c WHERE c.converted_from_lead_id = l.id;"
    )
    (folder / "001_change.sql").write_text(
        "-- aicrm:lock leads\n-- step: change\nUPDATE leads SET source = 'changed';\n"
    )
    return folder


def _take_backup(db: Database, folder: Path) -> Path:
    result = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout)["backup"]["path"])


@pytest.mark.slow
def test_backup_is_complete_private_and_named_as_the_seed_says(db: Database, tmp_path) -> None:
    folder = _legacy_with_data(db, tmp_path)
    path = _take_backup(db, folder)
    assert path.parent == tmp_path / "backups"
    assert path.name.startswith("backup_before_migration_") and path.suffix == ".sql"
    # Two runs in the same second get a counter rather than overwrite each other.
    assert re.fullmatch(r"backup_before_migration_\d{8}_\d{6}(_\d+)?\.sql", path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "-- PostgreSQL database dump complete" in text
    assert "COPY public.leads" in text


@pytest.mark.slow
def test_seed_rollback_command_restores_the_backup(db: Database, tmp_path) -> None:
    folder = _legacy_with_data(db, tmp_path)
    before = table_digests(db)
    path = _take_backup(db, folder)
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 50

    restored = create_database(db.server)
    try:
        host, port, user = host_port_user(db.url)
        psql = tools.find("psql").path
        # Exactly the seed's command, with the variables it names.
        result = subprocess.run(
            ["bash", "-c", f'"{psql}" -h $DB_HOST -p $DB_PORT -U $DB_USER -d $DB_NAME < "$FILE"'],
            env={
                **db.env,
                "DB_HOST": host,
                "DB_PORT": port,
                "DB_USER": user,
                "DB_NAME": restored,
                "FILE": str(path),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        copy = Database(restored, db.server.conninfo(restored), db.server, tmp_path, db.env)
        assert table_digests(copy) == before
    finally:
        drop_database(db.server, restored)


@pytest.mark.slow
def test_restore_into_a_new_database_and_refuse_a_non_empty_one(db: Database, tmp_path) -> None:
    folder = _legacy_with_data(db, tmp_path)
    before = table_digests(db)
    path = _take_backup(db, folder)
    name = f"{db.name}_restored"
    try:
        first = db.cli("db", "restore", str(path), "--into", name)
        assert first.returncode == 0, first.stderr
        assert f"into database {name}" in first.stdout
        copy = Database(name, db.server.conninfo(name), db.server, tmp_path, db.env)
        assert table_digests(copy) == before

        again = db.cli("db", "restore", str(path), "--into", name)
        assert again.returncode == 2
        assert "is not empty" in again.stderr
        assert table_digests(copy) == before
    finally:
        drop_database(db.server, name)


@pytest.mark.slow
def test_restore_refuses_an_incomplete_backup(db: Database, tmp_path) -> None:
    folder = _legacy_with_data(db, tmp_path)
    path = _take_backup(db, folder)
    truncated = tmp_path / "truncated.sql"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    name = f"{db.name}_partial"
    result = db.cli("db", "restore", str(truncated), "--into", name)
    assert result.returncode == 2
    assert "end-of-dump marker" in result.stderr
    assert db.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == 0


@pytest.mark.slow
def test_failed_restore_leaves_no_database_behind(db: Database, tmp_path) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text(
        "CREATE TABLE t (id int);\nTHIS IS NOT SQL;\n-- PostgreSQL database dump complete\n"
    )
    name = f"{db.name}_broken"
    result = db.cli("db", "restore", str(broken), "--into", name)
    assert result.returncode == 2
    assert "failed and was undone" in result.stderr
    assert db.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)) == 0


def test_restore_of_a_missing_file_is_a_usage_error(db: Database, tmp_path) -> None:
    result = db.cli("db", "restore", str(tmp_path / "nope.sql"), "--into", "whatever")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
