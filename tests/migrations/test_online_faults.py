"""Faults outside the runner: an invalid index left by an interrupted CREATE INDEX
CONCURRENTLY, and a PostgreSQL restart in the middle of the backfill."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aicrm.db import embedded
from aicrm.migrate._lock import CLASS_ID
from aicrm.migrate._online import PAUSE_ENV, PAUSE_OBJECT
from tests.conftest import Database, Server, clean_env, create_database
from tests.migrations.test_online_helpers import (
    aicrm,
    drop_twin,
    end_state,
    kill_at,
    migrate,
    runner_waiting_at_pause,
    twin,
)
from tests.migrations.test_online_resume import legacy
from tests.support import wait_for

INDEX_VALID = (
    "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass('leads_is_converted_idx')"
)
INDEX_OID = "SELECT to_regclass('leads_is_converted_idx')::oid"


def leave_invalid_index(db: Database) -> int:
    """Start the contract's CREATE INDEX CONCURRENTLY by hand and make it fail half-way
    (a writer holds leads open; the build times out waiting for it): PostgreSQL keeps
    the index, marked invalid, as after a killed build."""
    with psycopg.connect(db.url) as writer, psycopg.connect(db.url, autocommit=True) as builder:
        writer.execute("UPDATE leads SET status = status WHERE false")
        writer.execute("LOCK TABLE leads IN ROW EXCLUSIVE MODE")
        builder.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            builder.execute(
                "CREATE INDEX CONCURRENTLY leads_is_converted_idx ON leads (is_converted)"
            )
        writer.rollback()
    assert db.scalar(INDEX_VALID) is False
    return int(db.scalar(INDEX_OID))


@pytest.mark.slow
def test_invalid_index_left_by_an_interrupted_run_is_rebuilt(db: Database) -> None:
    legacy(db)
    reference = twin(db, "tx")
    try:
        assert kill_at(db, "phase:contract:indexes", "--target", "001", "--archive-orphans") == (
            "contract:indexes"
        )
        invalid = leave_invalid_index(db)
        done = migrate(db, "--target", "001")
        assert db.scalar(INDEX_VALID) is True
        assert int(db.scalar(INDEX_OID)) != invalid  # dropped and built again
        migrate(reference, "--target", "001", "--archive-orphans")
        assert end_state(db) == end_state(reference)
        assert "resumed" in done.stdout
    finally:
        drop_twin(reference)


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A dedicated embedded server, which the test may stop and start. Not under
    pytest's basetemp: a root pytest session makes /tmp/pytest-of-root 0700, which
    locks out the server's own (non-root) user (as in tests/conftest.py)."""
    home = Path(tempfile.mkdtemp(prefix="aicrm-online-restart-"))
    try:
        yield Server(embedded.conninfo(home, dbname="postgres"), home, 18)
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def _database(server: Server, workdir: Path) -> Database:
    name = create_database(server, f"aicrm_t_{uuid.uuid4().hex[:12]}")
    (workdir / "home").mkdir(parents=True)
    url = server.conninfo(name)
    env = clean_env(
        DATABASE_URL=url, AICRM_HOME=str(workdir / "home"), BACKUP_DIR=str(workdir / "backups")
    )
    return Database(name, url, server, workdir, env)


@pytest.mark.slow
def test_postgres_restart_in_the_middle_of_the_backfill(own_server: Server, tmp_path: Path) -> None:
    assert own_server.home is not None
    db = _database(own_server, tmp_path / "db")
    legacy(db)
    reference = twin(db, "tx")
    with psycopg.connect(db.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
        proc = aicrm(
            db,
            "db",
            "migrate",
            "--online",
            "--target",
            "001",
            "--archive-orphans",
            env={PAUSE_ENV: "batch:leads:2"},
        )
        wait_for(lambda: runner_waiting_at_pause(db) or proc.poll() is not None, "batch 2")
        assert proc.poll() is None, proc.communicate()
        embedded.stop(own_server.home)  # the holder's session and the runner's go with it
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, out
    # Start it again from another process (pgserver keeps a handle per process).
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from aicrm.db import embedded; "
            "embedded.conninfo(pathlib.Path(sys.argv[1]), dbname='postgres')",
            str(own_server.home),
        ],
        check=True,
        timeout=120,
        env=clean_env(),
    )
    assert db.scalar("SELECT phase FROM aicrm_online_migration") == "backfill:leads"
    assert db.scalar("SELECT rows_done FROM aicrm_online_migration") > 0  # batch 1 committed
    migrate(db, "--target", "001")
    migrate(reference, "--target", "001", "--archive-orphans")
    assert end_state(db) == end_state(reference)
    drop_twin(reference)
