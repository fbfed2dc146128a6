"""Empty database to head, the ledger, re-runs, targets, status and verify."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.conftest import Database
from tests.support import MIGRATIONS, copy_migrations


def test_empty_database_goes_to_head_and_ledger_records_it(db: Database) -> None:
    result = db.cli("db", "migrate")
    assert result.returncode == 0, result.stderr
    rows = db.execute(
        "SELECT version, name, checksum, kind, duration_ms, applied_by "
        "FROM aicrm_schema_migrations ORDER BY version"
    )
    newest = max(int(p.name[:3]) for p in MIGRATIONS.glob("[0-9][0-9][0-9]_*.sql"))
    assert [r[0] for r in rows] == list(range(newest + 1))
    version, name, checksum, kind, duration_ms, applied_by = rows[0]
    assert (version, name, kind) == (0, "original_schema", "applied")
    expected = hashlib.sha256((MIGRATIONS / "000_original_schema.sql").read_bytes()).hexdigest()
    assert checksum == expected
    assert isinstance(duration_ms, int) and duration_ms >= 0
    assert " as postgres" in str(applied_by) or " as " in str(applied_by)
    assert db.scalar("SELECT to_regclass('leads') IS NOT NULL") is True


@pytest.mark.slow
def test_second_run_has_nothing_to_do(db: Database) -> None:
    assert db.cli("db", "migrate").returncode == 0
    again = db.cli("db", "migrate", "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["outcome"] == "nothing to do"
    assert report["backup"] is None


def test_target_stops_at_the_version_asked(db: Database, tmp_path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_extra.sql").write_text("-- step: add a table\nCREATE TABLE extra (id int);\n")
    done = db.cli("db", "migrate", "--target", "000", "--migrations-dir", str(folder))
    assert done.returncode == 0, done.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    assert db.scalar("SELECT to_regclass('extra') IS NULL") is True


def test_unknown_target_is_a_usage_error(db: Database) -> None:
    result = db.cli("db", "migrate", "--target", "999")
    assert result.returncode == 2
    assert "There is no migration 999" in result.stderr
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True


def test_target_that_is_not_a_number_is_a_usage_error(db: Database) -> None:
    result = db.cli("db", "migrate", "--target", "latest")
    assert result.returncode == 2
    assert "is not a migration version" in result.stderr


@pytest.mark.slow
def test_status_names_the_database_and_pending_work(db: Database) -> None:
    before = db.cli("db", "status", "--json")
    assert before.returncode == 0, before.stderr
    info = json.loads(before.stdout)
    assert info["version"] == -1 and info["shape"] == "empty"
    assert info["pending"][0] == "000_original_schema"
    assert db.name in info["database"]
    text = db.cli("db", "status")
    assert f"/{db.name} (DATABASE_URL)" in text.stdout
    db.cli("db", "migrate")
    after = json.loads(db.cli("db", "status", "--json").stdout)
    assert after["pending"] == [] and after["drift"] == []
    assert after["applied"][0]["version"] == 0


@pytest.mark.slow
def test_verify_passes_after_migrate_and_fails_when_broken(db: Database) -> None:
    assert db.cli("db", "migrate", "--target", "000").returncode == 0
    ok = db.cli("db", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok" in ok.stdout
    db.execute("DROP TABLE contacts")
    broken = db.cli("db", "verify", "--json")
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert report["ok"] is False
    assert any("contacts" in failure for c in report["checks"] for failure in c["failures"])


@pytest.mark.slow
def test_downgrade_below_000_and_without_ledger_are_refused(db: Database) -> None:
    none = db.cli("db", "downgrade", "000")
    assert none.returncode == 2
    assert "no aicrm ledger" in none.stderr
    assert db.cli("db", "migrate", "--target", "000").returncode == 0
    below = db.cli("db", "downgrade", "-1")
    assert below.returncode == 2


def test_downgrade_without_a_down_file_is_refused(db: Database, tmp_path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_extra.sql").write_text("-- step: add\nCREATE TABLE extra (id int);\n")
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    result = db.cli("db", "downgrade", "000", "--migrations-dir", str(folder))
    assert result.returncode == 2
    assert "no down file" in result.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1


@pytest.mark.slow
def test_downgrade_runs_the_down_file_after_a_backup(db: Database, tmp_path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_extra.sql").write_text("-- step: add\nCREATE TABLE extra (id int);\n")
    (folder / "001_extra.down.sql").write_text("-- step: drop\nDROP TABLE extra;\n")
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    result = db.cli("db", "downgrade", "000", "--json", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["to_version"] == 0 and report["backup"]["path"].endswith(".sql")
    assert db.scalar("SELECT to_regclass('extra') IS NULL") is True
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
