"""One runner at a time per database, by a session-level advisory lock.

A transaction-level lock would make ``CREATE INDEX CONCURRENTLY`` (run outside
the migration transaction) wait for the runner's own transaction: Flyway's known
hang. A session lock is held across transactions and released when the session
ends, even if the runner is killed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg

from aicrm.db import Connection
from aicrm.errors import LockHeld

# pg_advisory_lock(int4, int4): 'aicr' as the class, 1 for the migration runner.
CLASS_ID = 0x61696372
OBJECT_ID = 1

HOLDER = """
SELECT a.pid, coalesce(nullif(a.application_name, ''), 'unknown program'), a.usename,
       coalesce(a.client_addr::text, 'local socket'),
       to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
        SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2
"""


@contextmanager
def runner_lock(conn: Connection, wait_seconds: float) -> Iterator[None]:
    """Hold the runner lock for the block; wait up to ``wait_seconds`` for it.

    ``conn`` must be in autocommit mode. Raises :class:`LockHeld` naming the holder.
    """
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait_seconds * 1000)}ms",))
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, OBJECT_ID))
    except psycopg.errors.LockNotAvailable:
        raise LockHeld(
            f"Another migration runner holds this database's migration lock ({holder(conn)}); "
            f"waited {wait_seconds:g} s. Let it finish, or stop it, then run again."
        ) from None
    finally:
        conn.execute("SELECT set_config('lock_timeout', '0', false)")
    try:
        yield
    finally:
        if not conn.closed:
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (CLASS_ID, OBJECT_ID))


def holder(conn: Connection) -> str:
    """Who holds the runner lock, in words."""
    row = conn.execute(HOLDER, (CLASS_ID, OBJECT_ID)).fetchone()
    if row is None:
        return "holder already gone"
    pid, program, user, client, since = row
    return f"held by pid {pid}, {program}, user {user} from {client}, connected since {since}"
