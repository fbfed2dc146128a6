"""Every lock the engine takes, and every retry of a lock wait: the one place for both.

The runner lock (one runner per database)
    held by a dedicated connection inside an open transaction, by a
    transaction-level advisory lock (``pg_advisory_xact_lock``). A transaction
    pins its server connection even behind a transaction-pooling PgBouncer, so no
    pooler can hand the lock to another client (a session-level advisory lock can:
    it stays on the pooled server connection, and the next runner given that
    connection "re-acquires" it). The transaction takes no transaction id and
    keeps no snapshot between statements, so it neither holds back VACUUM nor
    makes ``CREATE INDEX CONCURRENTLY`` wait for it. If the runner dies, its
    connection closes and the server (or the pooler, which drops a server
    connection whose client left mid-transaction) rolls the transaction back.

Settings
    only transaction-scoped (``set_config(..., true)``): nothing the engine sets
    outlives its transaction on a pooled server connection (:func:`settings`).

Table locks
    ``LOCK TABLE … IN ACCESS EXCLUSIVE MODE`` in a declared order (:func:`lock_tables`).

Retries
    :func:`retrying` runs a transaction body again, with jittered exponential
    backoff, when a lock wait times out or a deadlock is detected.

Poolers
    :func:`behind_pooler` tells a pooler from the server itself: a pooler answers
    the connection with its own cancel key, whose process id is not the server
    process's. The engine refuses to run behind one (pg_dump and the online mode
    need a session); the runner lock holds even so.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aicrm.db import Connection, Target, connect
from aicrm.errors import LockHeld, PrerequisiteFailed

T = TypeVar("T")

# pg_advisory_*lock(int4, int4): 'aicr' as the class, 1 for the migration runner.
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
TAKE_RUNNER_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"
RELEASE_SNAPSHOT = "SELECT 1"
SET_LOCAL = "SELECT set_config(%s, %s, true)"
SET_ONE = "set_config(%s, %s, true)"
SERVER_PID = "SELECT pg_backend_pid(), current_setting('server_version_num')::int"
LOCK_HOLDERS = """
SELECT DISTINCT l.pid, l.mode, l.relation::regclass::text
FROM pg_locks l WHERE l.granted AND l.pid <> pg_backend_pid()
  AND l.relation = ANY(SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
ORDER BY 1
"""
TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
RETRIED = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def settings(
    conn: Connection,
    *,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    custom: Mapping[str, str] | None = None,
) -> None:
    """Set the transaction's own settings (``SET LOCAL``): they end with it.

    ``lock_timeout`` / ``statement_timeout`` in seconds (0: no bound); ``custom``:
    other settings by name (``{"aicrm.archive_orphans": "on"}``).
    Must be called inside a transaction."""
    # A killed runner's statement is noticed and rolled back within a second
    # (PostgreSQL 14+), instead of running on while holding its locks.
    pairs: list[str] = ["client_connection_check_interval", "1s"]
    if lock_timeout is not None:
        pairs += ["lock_timeout", _ms(lock_timeout)]
    if statement_timeout is not None:
        pairs += ["statement_timeout", _ms(statement_timeout)]
    for name, value in (custom or {}).items():
        pairs += [name, value]
    # One round trip for all of them: on a busy machine each costs milliseconds,
    # and a short transaction holds its locks through every one.
    query = sql.SQL("SELECT {}").format(sql.SQL(", ").join([sql.SQL(SET_ONE)] * (len(pairs) // 2)))
    conn.execute(query, pairs)


def behind_pooler(conn: Connection) -> bool:
    """Whether ``conn`` goes through a connection pooler (PgBouncer, RDS Proxy, …).

    The server sends its process id in the cancel key; a pooler sends a key of its
    own, so the id psycopg was given is not the id of the process that answers."""
    row = conn.execute(SERVER_PID).fetchone()
    return row is not None and int(row[0]) != conn.info.backend_pid


def refuse_pooler(conn: Connection) -> None:
    """Raise :class:`PrerequisiteFailed` (exit 2) when ``conn`` goes through a pooler."""
    if behind_pooler(conn):
        raise PrerequisiteFailed(
            "The connection goes through a connection pooler (the server's process id differs "
            "from the one the connection was given). Migrations need a session of their own "
            "(pg_dump, the online mode, CREATE INDEX CONCURRENTLY): connect directly to the "
            "server: point DATABASE_URL at PostgreSQL's own host and port, not the pooler's."
        )


@contextmanager
def runner_lock(where: Target, wait_seconds: float, application: str) -> Iterator[None]:
    """Hold the runner lock for the block; wait up to ``wait_seconds`` for it.

    The lock lives in an open transaction of its own connection (see the module
    docstring). Raises :class:`LockHeld` naming the holder."""
    holder_conn = connect(where, autocommit=False, application_name=f"{application} (runner lock)")
    try:
        try:
            settings(holder_conn, lock_timeout=wait_seconds)
            holder_conn.execute(TAKE_RUNNER_LOCK, (CLASS_ID, OBJECT_ID))
        except psycopg.errors.LockNotAvailable:
            holder_conn.rollback()
            raise LockHeld(
                "Another migration runner holds this database's migration lock "
                f"({holder(holder_conn)}); waited {wait_seconds:g} s. Let it finish, or stop "
                "it, then run again."
            ) from None
        # The transaction stays open, idle, for the whole run: no server setting
        # may end it meanwhile (all three are transaction-scoped here).
        settings(holder_conn, lock_timeout=0, statement_timeout=0)
        holder_conn.execute(SET_LOCAL, ("idle_in_transaction_session_timeout", "0"))
        if holder_conn.info.server_version >= 170000:
            holder_conn.execute(SET_LOCAL, ("transaction_timeout", "0"))
        # The unnamed portal of a statement with parameters keeps its snapshot (and
        # so an xmin) until the next statement: one without parameters releases it,
        # or CREATE INDEX CONCURRENTLY would wait for this idle transaction forever.
        holder_conn.execute(RELEASE_SNAPSHOT)
        yield
    finally:
        with suppress(psycopg.Error):
            holder_conn.rollback()  # releases the lock
        holder_conn.close()


def bounded_session(
    where: Target,
    application: str,
    lock_timeout: float,
    statement_timeout: float,
    custom: Mapping[str, str] | None = None,
) -> Connection:
    """An autocommit connection of its own for statements PostgreSQL refuses in a
    transaction (no ``SET LOCAL`` there): its bounds, and the ``custom`` settings by
    name, are startup options, so they end with the connection, which the caller
    closes."""
    options = conninfo_to_dict(where.conninfo).get("options") or ""
    bounds = f"-c lock_timeout={_ms(lock_timeout)} -c statement_timeout={_ms(statement_timeout)}"
    bounds += "".join(f" -c {name}={value}" for name, value in (custom or {}).items())
    bounded = dataclasses.replace(
        where, conninfo=make_conninfo(where.conninfo, options=f"{options} {bounds}".strip())
    )
    return connect(bounded, autocommit=True, application_name=application)


def holder(conn: Connection) -> str:
    """Who holds the runner lock, in words."""
    row = conn.execute(HOLDER, (CLASS_ID, OBJECT_ID)).fetchone()
    if row is None:
        return "holder already gone"
    pid, program, user, client, since = row
    return f"held by pid {pid}, {program}, user {user} from {client}, connected since {since}"


def exists(conn: Connection, table: str) -> bool:
    row = conn.execute(TABLE_EXISTS, (table,)).fetchone()
    return bool(row and row[0])


def lock_tables(conn: Connection, tables: tuple[str, ...] | list[str]) -> float:
    """ACCESS EXCLUSIVE on the existing ``tables``, in their order, all in one
    statement (no lock upgrade half-way, one order against other lockers).
    Returns the seconds waited."""
    started = time.monotonic()
    present = [t for t in tables if exists(conn, t)]
    if present:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in present)
            )
        )
    waited: float = time.monotonic() - started
    return waited


def lock_holders(conn: Connection, tables: list[str]) -> str:
    """Who holds locks on ``tables``, in words (for a lock timeout's message)."""
    try:
        rows = conn.execute(LOCK_HOLDERS, (tables,)).fetchall()
    except psycopg.Error:
        return "holders unknown"
    if not rows:
        return "the blocking session has finished"
    return "held by " + ", ".join(f"pid {pid} ({mode} on {rel})" for pid, mode, rel in rows)


def replica_mode_allowed(conn: Connection) -> bool:
    """Whether this role may set ``session_replication_role`` (a superuser, or on
    PostgreSQL 15+ a role granted SET on it): tried in a transaction rolled back."""
    try:
        with conn.transaction():
            conn.execute(SET_LOCAL, ("session_replication_role", "replica"))
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


@dataclass
class Retry:
    """How :func:`retrying` paces itself: ``retries`` more attempts after the first,
    waiting ``base`` × 2^attempt seconds (at most ``cap``), jittered when ``jitter``."""

    retries: int
    base: float
    cap: float
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        delay: float = min(self.base * 2.0**attempt, self.cap)
        return delay * random.uniform(0.5, 1.0) if self.jitter else delay


# Told of each lock timeout: (attempt, seconds waited, the exception); raises to stop.
OnTimeout = Callable[[int, float, psycopg.Error], None]


def retrying(
    conn: Connection,
    body: Callable[[], T],
    retry: Retry,
    on_timeout: OnTimeout,
    *,
    transaction: bool = True,
) -> T:
    """Run ``body`` (in a transaction of ``conn`` unless ``transaction=False``);
    when it hits a lock timeout or a deadlock, roll back, tell ``on_timeout`` (which
    raises to give up, typically on the last attempt), back off and run it again."""
    for attempt in range(1, retry.retries + 2):
        started = time.monotonic()
        try:
            if not transaction:
                return body()
            result: T | None = None
            # A body that raises psycopg.Rollback (a dry-run) ends here with None.
            with conn.transaction():
                result = body()
            return result  # None after a deliberate Rollback: a dry run ignores it
        except RETRIED as exc:
            on_timeout(attempt, time.monotonic() - started, exc)
            if attempt > retry.retries:
                raise
            time.sleep(retry.delay(attempt - 1))
    raise AssertionError("unreachable")


__all__ = [
    "CLASS_ID",
    "OBJECT_ID",
    "Retry",
    "behind_pooler",
    "bounded_session",
    "exists",
    "holder",
    "lock_holders",
    "lock_tables",
    "refuse_pooler",
    "replica_mode_allowed",
    "retrying",
    "runner_lock",
    "settings",
]
