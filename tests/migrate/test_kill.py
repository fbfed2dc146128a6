"""SIGKILL of the runner in the middle of the changes leaves the previous version."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import Database
from tests.support import copy_migrations, schema_dump, table_digests, wait_for

PAUSE_KEY = 424242

# 001 changes schema and data, then waits on an advisory lock the test holds:
# the test kills the runner while it sits there, mid-transaction.
PAUSING = """-- aicrm:lock leads, clients
-- step: change the schema and the data
ALTER TABLE leads ADD COLUMN half_done int;
UPDATE leads SET status = 'changed', half_done = 1;
DELETE FROM clients;
-- step: wait for the test
SELECT pg_advisory_xact_lock(424242);
-- step: finish
CREATE TABLE finished (id int);
"""


@pytest.mark.slow
def test_sigkill_mid_change_leaves_previous_version_and_rerun_succeeds(
    db: Database, tmp_path
) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email) SELECT 'k' || i || '@x.org' FROM generate_series(1, 100) i;"
        "INSERT INTO clients (name) VALUES ('kept');"
    )
    (folder / "001_pausing.sql").write_text(PAUSING)
    schema, digests = schema_dump(db), table_digests(db)

    with db.connect(autocommit=True) as test_conn:
        test_conn.execute("SELECT pg_advisory_lock(%s)", (PAUSE_KEY,))
        runner = subprocess.Popen(
            [sys.executable, "-m", "aicrm", "db", "migrate", "--migrations-dir", str(folder)],
            env=db.env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def paused() -> bool:
            row = test_conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aicrm migrate' "
                "AND wait_event_type = 'Lock' AND query LIKE '%%pg_advisory_xact_lock%%'"
            ).fetchone()
            return bool(row and row[0])

        wait_for(paused, "the runner to reach the middle of the changes")
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)

        def backend_gone() -> bool:
            row = test_conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aicrm migrate'"
            ).fetchone()
            return bool(row and row[0] == 0)

        # The server notices the dead client (client_connection_check_interval) and
        # rolls its transaction back, releasing the runner's locks.
        wait_for(backend_gone, "the killed runner's transaction to be rolled back")
        test_conn.execute("SELECT pg_advisory_unlock(%s)", (PAUSE_KEY,))

    assert runner.returncode == -signal.SIGKILL
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    assert schema_dump(db) == schema
    assert table_digests(db) == digests

    rerun = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert rerun.returncode == 0, rerun.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
    assert db.scalar("SELECT count(*) FROM leads WHERE half_done = 1") == 100
