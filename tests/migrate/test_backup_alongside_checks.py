"""The verified backup runs alongside the integrity checks, with the seed's outcomes:
a refusing check leaves no backup behind, a failed backup stops the run before any
change, and the checks' findings are those of one connection, in their order."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from aicrm.db import Connection, tools
from aicrm.errors import BackupFailed
from aicrm.migrate import Options, _checks as checks, backup, migrate
from aicrm.migrate._report import Finding, Report
from aicrm.migrate.loader import Check, Migration
from tests.conftest import Database
from tests.support import copy_migrations, schema_dump, table_digests

CHECKS = """-- name: no_at_sign
-- kind: integrity
-- severity: {severity}
-- description: leads whose email has no @
SELECT id FROM leads WHERE email NOT LIKE '%@%'

-- name: web_leads
-- kind: integrity
-- severity: resolvable
-- description: leads from the web
SELECT id FROM leads WHERE source = 'web'

-- name: clients_named_c
-- kind: integrity
-- severity: resolvable
-- description: clients named c
SELECT id FROM clients WHERE name = 'c'

-- name: no_leads_at_all
-- kind: integrity
-- severity: resolvable
-- description: never any row
SELECT id FROM leads WHERE false
"""


def _at_000(db: Database, tmp_path: Path, severity: str = "blocking") -> Path:
    """A database at 000 with data, and a 001 with four integrity checks (one of them
    finds the lead without an @, blocking or not) whose change is visible."""
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email, source) SELECT 'l' || i || '@x.org', 'web' "
        "FROM generate_series(1, 30) i;"
        "INSERT INTO leads (email, source) VALUES ('no-at-sign', 'fair');"
        "INSERT INTO clients (name) SELECT 'c' FROM generate_series(1, 4);"
        "CREATE TABLE unrelated (id int); INSERT INTO unrelated VALUES (1);"
    )
    (folder / "001_change.sql").write_text(
        "-- aicrm:lock leads\n-- step: change\nUPDATE leads SET source = 'changed';\n"
    )
    (folder / "001_change.checks.sql").write_text(CHECKS.format(severity=severity))
    return folder


def _dry_run(db: Database, folder: Path, tmp_path: Path, connections: int) -> Report:
    options = Options(
        migrations_dir=folder,
        backup_dir=tmp_path / "backups",
        check_connections=connections,
        dry_run=True,
    )
    return migrate(options, where=db.target())


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.slow
def test_refusing_check_while_pg_dump_runs_leaves_no_backup_and_no_change(
    db: Database, tmp_path: Path
) -> None:
    folder = _at_000(db, tmp_path)
    backups = tmp_path / "backups"
    before = _files(backups)  # the run to 000's backup
    schema, digests = schema_dump(db), table_digests(db)
    with db.connect() as holder:
        # pg_dump takes ACCESS SHARE on every table it dumps: while this lock is held
        # it cannot finish, so the checks (which never read this table) refuse the run
        # while the backup is still being written.
        holder.execute("LOCK TABLE unrelated IN ACCESS EXCLUSIVE MODE")
        result = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
        assert result.returncode == 3, result.stderr
        assert "no_at_sign: 1" in result.stderr
        # The run ended while pg_dump could not have finished; it is gone, not waiting.
        dumping = holder.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' "
            "AND datname = current_database()"
        ).fetchone()
        assert dumping == (0,)
        holder.rollback()
    report = json.loads(result.stdout)
    assert report["outcome"] == "refused" and report["backup"] is None
    assert [f["count"] for f in report["findings"]] == [1, 30, 4, 0]
    assert _files(backups) == before  # no backup, no partial file
    assert schema_dump(db) == schema and table_digests(db) == digests


@pytest.mark.slow
def test_failing_pg_dump_stops_the_run_before_any_change(db: Database, tmp_path: Path) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    backups = tmp_path / "backups"
    before = _files(backups)
    schema, digests = schema_dump(db), table_digests(db)
    # A pg_dump that answers --version like the real one, then fails half-way through
    # a dump it has started writing.
    fake = tmp_path / "bin"
    fake.mkdir()
    real = tools.find("pg_dump").path
    (fake / "pg_dump").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
        "echo '-- a dump that stops here'\n"
        "echo 'pg_dump: error: could not write to output file: No space left on device' >&2\n"
        "exit 1\n"
    )
    (fake / "pg_dump").chmod(0o755)
    (fake / "psql").symlink_to(tools.find("psql").path)
    result = db.cli(
        "db", "migrate", "--migrations-dir", str(folder), env={"AICRM_PG_BIN": str(fake)}
    )
    assert result.returncode == 2, result.stderr
    assert "pg_dump failed (exit 1)" in result.stderr and "No space left" in result.stderr
    assert "Traceback" not in result.stderr
    assert _files(backups) == before
    assert schema_dump(db) == schema and table_digests(db) == digests
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0


@pytest.mark.slow
def test_dump_without_end_marker_is_never_named_a_backup(db: Database, tmp_path: Path) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    backups = tmp_path / "backups"
    before = _files(backups)
    fake = tmp_path / "bin"
    fake.mkdir()
    real = tools.find("pg_dump").path
    (fake / "pg_dump").write_text(  # exits 0, but the dump is cut short
        f'#!/bin/sh\nif [ "$1" = "--version" ]; then exec "{real}" --version; fi\n'
        "echo 'CREATE TABLE half (id int);'\n"
    )
    (fake / "pg_dump").chmod(0o755)
    (fake / "psql").symlink_to(tools.find("psql").path)
    result = db.cli(
        "db", "migrate", "--migrations-dir", str(folder), env={"AICRM_PG_BIN": str(fake)}
    )
    assert result.returncode == 2, result.stderr
    assert "lacks the end-of-dump marker" in result.stderr
    assert _files(backups) == before
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 0


@pytest.mark.slow
def test_unwritable_backup_folder_stops_the_run_with_one_line(db: Database, tmp_path: Path) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    result = db.cli(
        "db", "migrate", "--migrations-dir", str(folder), env={"BACKUP_DIR": str(not_a_folder)}
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Could not write a backup in" in lines[0]
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 0
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0


class _FailedDump:
    """A backup under way whose pg_dump has already failed."""

    def __init__(self) -> None:
        self.discarded = False

    def failed(self) -> bool:
        return True

    def wait(self) -> backup.Backup:
        raise BackupFailed("pg_dump failed (exit 1): simulated. Nothing was changed.")

    def discard(self) -> None:
        self.discarded = True


def test_failed_backup_stops_the_checks_early(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    dump = _FailedDump()
    monkeypatch.setattr(backup, "start", lambda where, folder: dump)
    ran: list[str] = []
    real_finding = checks.finding

    def finding(conn: Connection, migration: Migration, check: Check) -> Finding:
        ran.append(check.name)
        return real_finding(conn, migration, check)

    monkeypatch.setattr(checks, "finding", finding)
    options = Options(migrations_dir=folder, backup_dir=tmp_path / "backups")
    with pytest.raises(BackupFailed) as failed:
        migrate(options, where=db.target())
    assert ran == []  # the pg_dump had failed: no check was started
    report = failed.value.details["report"]
    assert report.findings == [] and report.steps == [] and report.exit_code == 2
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 0


@pytest.mark.parametrize("connections", [1, 2, 3])
def test_findings_do_not_depend_on_the_number_of_connections(
    db: Database, tmp_path: Path, connections: int
) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    report = _dry_run(db, folder, tmp_path, connections)
    assert [(f.check, f.count) for f in report.findings] == [
        ("no_at_sign", 1),
        ("web_leads", 30),
        ("clients_named_c", 4),
        ("no_leads_at_all", 0),
    ]
    assert report.outcome == "dry run" and report.backup is None
    assert {"prerequisites", "integrity_checks", "before_changes", "changes"} <= set(report.timings)


def test_applied_run_keeps_its_verified_backup_and_reports_the_overlap(
    db: Database, tmp_path: Path
) -> None:
    folder = _at_000(db, tmp_path, severity="resolvable")
    result = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    path = Path(report["backup"]["path"])
    assert backup.is_complete(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob("*.partial"))
    timings = report["timings"]
    assert timings["before_changes"] <= report["seconds"]
    assert timings["integrity_checks"] <= timings["before_changes"]
    assert db.scalar("SELECT count(*) FROM leads WHERE source = 'changed'") == 31


def test_discarding_a_finished_backup_deletes_it(db: Database, tmp_path: Path) -> None:
    running = backup.start(db.target(), tmp_path / "b")
    done = running.wait()
    assert done.path.exists() and backup.is_complete(done.path)
    running.discard()
    assert os.listdir(tmp_path / "b") == []


SETTINGS_CHECK = """-- name: check_settings
-- kind: integrity
-- severity: resolvable
-- description: the settings a check runs under
SELECT current_setting('work_mem') || ' ' || current_setting('max_parallel_workers_per_gather')
       || ' ' || current_setting('transaction_read_only') AS id
"""


@pytest.mark.parametrize("connections", [1, 2])
def test_checks_hash_in_memory_on_serial_read_only_plans(
    db: Database, tmp_path: Path, connections: int
) -> None:
    # At the default 4MB, 001's checks spilled 951 MB of temporary files at 1M leads: a
    # write burst the application's commits waited behind (docs/online-migration.md).
    folder = _at_000(db, tmp_path, severity="resolvable")
    (folder / "001_change.checks.sql").write_text(SETTINGS_CHECK)
    report = _dry_run(db, folder, tmp_path, connections)
    assert [(f.check, f.samples) for f in report.findings] == [
        ("check_settings", [f"{checks.CHECK_WORK_MEM} 0 on"])
    ]
    # SET LOCAL: nothing of it outlives the checks' transactions
    assert db.scalar("SELECT current_setting('work_mem')") != checks.CHECK_WORK_MEM
