"""One runner at a time, and bounded waits for table locks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aicrm.migrate._lock import CLASS_ID, OBJECT_ID, bounded_session
from aicrm.migrate._online import SERIAL
from tests.conftest import Database
from tests.support import copy_migrations, wait_for

LOCKING = "-- aicrm:lock leads\n-- step: change leads\nALTER TABLE leads ADD COLUMN extra int;\n"


def _at_000_with_pending(db: Database, tmp_path: Path) -> Path:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    (folder / "001_extra.sql").write_text(LOCKING)
    return folder


def _version(db: Database) -> object:
    return db.scalar("SELECT max(version) FROM aicrm_schema_migrations")


@pytest.mark.slow
def test_second_runner_is_refused_naming_the_holder(db: Database, tmp_path) -> None:
    folder = _at_000_with_pending(db, tmp_path)
    with db.connect(autocommit=True) as holder:
        holder.execute("SET application_name = 'the other runner'")
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, OBJECT_ID))
        pid = holder.info.backend_pid
        result = db.cli("db", "migrate", "--wait", "0.2", "--migrations-dir", str(folder))
    assert result.returncode == 2
    assert f"pid {pid}" in result.stderr and "the other runner" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _version(db) == 0


@pytest.mark.slow
def test_lock_timeout_retries_then_gives_up_naming_the_blocker(db: Database, tmp_path) -> None:
    folder = _at_000_with_pending(db, tmp_path)
    with db.connect() as blocker:
        blocker.execute("LOCK TABLE leads IN ACCESS SHARE MODE")
        pid = blocker.info.backend_pid
        result = db.cli(
            "db",
            "migrate",
            "--lock-timeout",
            "0.05",
            "--lock-retries",
            "1",
            "--migrations-dir",
            str(folder),
        )
        blocker.rollback()
    assert result.returncode == 2
    assert "Could not lock leads" in result.stderr and f"pid {pid}" in result.stderr
    assert "after 2 attempts" in result.stderr
    assert _version(db) == 0
    assert (
        db.scalar("SELECT count(*) FROM information_schema.columns WHERE column_name = 'extra'")
        == 0
    )


def test_runner_waits_for_a_lock_and_reports_the_wait(db: Database, tmp_path) -> None:
    folder = _at_000_with_pending(db, tmp_path)
    with db.connect() as blocker, db.connect(autocommit=True) as watcher:
        blocker.execute("LOCK TABLE leads IN ACCESS SHARE MODE")
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aicrm",
                "db",
                "migrate",
                "--json",
                "--lock-timeout",
                "0.2",
                "--lock-retries",
                "10",
                "--migrations-dir",
                str(folder),
            ],
            env=db.env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def runner_is_waiting() -> bool:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aicrm migrate' "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            return bool(row and row[0])

        wait_for(runner_is_waiting, "the runner to wait for the lock on leads")
        blocker.rollback()
        out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    report = json.loads(out)
    assert report["lock_wait_seconds"] > 0
    assert report["lock_attempts"] >= 1
    assert _version(db) == 1


def test_a_bounded_session_carries_its_settings_and_they_end_with_it(db: Database) -> None:
    """The online mode's autocommit steps (CREATE INDEX CONCURRENTLY) run on a session
    of their own with their bounds and serial plans as startup options: they hold for
    that session only, not for the next connection."""
    conn = bounded_session(db.target(), "aicrm migrate", 2.0, 0.0, SERIAL)
    try:
        assert conn.execute("SHOW lock_timeout").fetchone() == ("2s",)
        assert conn.execute("SHOW max_parallel_maintenance_workers").fetchone() == ("0",)
        assert conn.execute("SHOW max_parallel_workers_per_gather").fetchone() == ("0",)
    finally:
        conn.close()
    with db.connect(autocommit=True) as other:
        assert other.execute("SHOW max_parallel_maintenance_workers").fetchone() != ("0",)
