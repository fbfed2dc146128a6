"""An online form's backfill phase: the rows written before expand, in batches.

Each batch is one short transaction: the form's batch function
(``FUNCTION(table, after, size)`` returning ``(last_id, done)``) migrates the next
``size`` rows after ``after``, and the state table records the progress in the same
transaction, so a killed run resumes after the last committed batch. The batch
size adapts so that a batch takes about ``batch_seconds`` (at most halving or
doubling at a time); the transaction setting ``aicrm.backfill`` tells the form's
triggers to stand aside, and ``session_replication_role = replica`` (when allowed)
keeps user triggers from firing.

After each batch the backfill pauses ``pause_ratio`` times as long as the batch's
transaction took (plus ``throttle`` seconds): at the default 1 it works at most half
the time. Flat out, its backend keeps a CPU busy and its WAL keeps the disk
flushing, and on a loaded machine the application's commits then wait behind a
slow WAL flush or for a CPU (docs/online-migration.md, "The machine's own floor").
A slower machine makes the batches' transactions longer and so the pauses too.

With ``max_replica_lag`` the backfill waits after each batch (between its
transactions, never inside one) while a streaming standby lags more than that, so
that it never outruns the replicas by more than the bound. With ``max_wal_rate`` it
pauses after a batch for as long as the WAL it has written since it started
(``pg_current_wal_insert_lsn()``, the whole server's, so the bound is conservative) exceeds
that many bytes per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from psycopg import sql

from aicrm.db import Connection, hidden_replicas, replication_lag, wait_for_replicas
from aicrm.migrate import _online_state as online_state
from aicrm.migrate._online_state import RunState
from aicrm.migrate._report import Report
from aicrm.migrate.loader import Migration
from aicrm.migrate.options import OnlineSettings, Options

T = TypeVar("T")

BATCH = "SELECT last_id::text, done FROM {}(%s, %s, %s)"
WAL_PAUSE_MAX = 1.0  # seconds: the longest pause for the WAL rate after one batch
# The insert position, not the write position: with synchronous_commit off (as on some
# managed servers) a commit leaves its WAL in the buffers, and the write position lags.
WAL_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
WAIT_SLICE = 5.0  # seconds: while waiting for the replicas, a progress line this often
HIDDEN = (
    "the throttle could not see the progress of {count} standby(s): this login lacks "
    "pg_monitor, so the backfill did not wait for them. Grant it (GRANT pg_monitor TO "
    "<login>) to throttle on their lag."
)


class Phases(Protocol):
    """What a backfill needs of the online run (aicrm.migrate._online)."""

    conn: Connection
    migration: Migration
    settings: OnlineSettings
    options: Options
    replica: bool
    report: Report

    def short(
        self,
        body: Callable[[], T],
        what: str,
        lock_timeout: float | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> T: ...

    def pause(self, point: str) -> None: ...


def run(phases: Phases, table: str, function: str, recorded: RunState | None) -> None:
    """Backfill ``table`` with ``function`` from the ``recorded`` progress (None: from
    the start)."""
    conn, settings, options = phases.conn, phases.settings, phases.options
    phases.report.pause_ratio = settings.pause_ratio
    version = phases.migration.version
    after = recorded.backfill_after if recorded else None
    done = recorded.rows_done if recorded else 0
    size = (recorded.batch_size if recorded else None) or settings.first_batch
    total = recorded.rows_total if recorded else None
    if total is None:

        def count_rows() -> int:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            found = int(row[0]) if row else 0
            online_state.set_total(conn, version, found)
            return found

        total = phases.short(count_rows, f"count the rows of {table}", settings.row_lock_timeout)
    query = sql.SQL(BATCH).format(sql.Identifier(function))
    started = time.monotonic()
    done_here = 0
    shown = 0.0
    batch = 0
    last: list[str | None] = [after]
    spent = [0.0]  # the batch statement's own time
    custom = {"aicrm.backfill": "on"}
    if phases.replica:
        custom["session_replication_role"] = "replica"
    if options.archive_orphans:
        custom["aicrm.archive_orphans"] = "on"
    wal_start = wal_position(conn) if settings.max_wal_rate else 0
    while True:
        batch += 1

        def body(after: str | None = after, size: int = size, batch: int = batch) -> int:
            mark = time.monotonic()
            row = conn.execute(query, (table, after, size)).fetchone()
            spent[0] = time.monotonic() - mark
            assert row is not None
            count = int(row[1])
            if count:
                online_state.record_batch(conn, version, row[0], count, size)
            phases.pause(f"batch:{table}:{batch}")
            last[0] = row[0]
            return count

        mark = time.monotonic()
        count = phases.short(body, f"backfill batch of {table}", settings.row_lock_timeout, custom)
        took = time.monotonic() - mark
        if count == 0:
            break
        after = last[0]
        done += count
        done_here += count
        # Adapt on the batch statement's own time, not the transaction's: on a busy
        # machine the round trips around it cost more than the rows, and shrinking
        # the batch for them would slow the backfill without shortening any lock.
        elapsed = spent[0]
        wanted = int(size * settings.batch_seconds / max(elapsed, 0.001))
        size = max(settings.min_batch, min(settings.max_batch, size * 2, max(size // 2, wanted)))
        now = time.monotonic()
        if now - shown >= 1.0:
            shown = now
            rate = done_here / max(now - started, 0.001)
            left = max(total - done, 0) / rate if rate else 0.0
            percent = 100.0 * done / total if total else 100.0
            options.say(
                f"backfill {table}: {done:,}/{total:,} rows ({percent:.0f}%), "
                f"{rate:,.0f} rows/s, ~{left:,.0f} s left, batch {size:,}"
            )
        keep_behind_replicas(phases, table)
        pace = settings.pause_ratio * took + settings.throttle
        if pace > 0:
            phases.report.pace_seconds += pace
            time.sleep(pace)
        if settings.max_wal_rate:
            written = wal_position(conn) - wal_start
            behind = written / settings.max_wal_rate - (time.monotonic() - started)
            if behind > 0:
                # At most a second at a time: the position is the whole server's, and a
                # burst of the application's own WAL must not stall the backfill long.
                pause = min(behind, WAL_PAUSE_MAX)
                phases.report.wal_wait_seconds += pause
                time.sleep(pause)


def wal_position(conn: Connection) -> int:
    """The server's WAL insert position, in bytes (outside any transaction)."""
    row = conn.execute(WAL_POSITION).fetchone()
    return int(row[0]) if row else 0


def keep_behind_replicas(phases: Phases, table: str) -> None:
    """Between two batches: while a standby lags more than ``max_replica_lag``,
    wait (saying so); record the longest lag seen and the time waited in the report.
    Waits as long as it takes: a standby whose replay is stopped holds the backfill,
    which an operator may interrupt (the run resumes) or let go on with a larger
    bound. A login that cannot see the standbys' progress is noted once."""
    bound = phases.settings.max_replica_lag
    if bound is None:
        return
    conn, report = phases.conn, phases.report
    report.replica_lag_bound = bound
    lag = replication_lag(conn)
    if lag is None:
        if report.replica_note is None and (count := hidden_replicas(conn)):
            report.replica_note = HIDDEN.format(count=count)
            phases.options.say(report.replica_note)
        return
    report.replica_lag_max = max(report.replica_lag_max or 0.0, lag)
    if lag <= bound:
        return
    report.replica_waits += 1
    started = time.monotonic()
    while lag is not None and lag > bound:
        phases.options.say(
            f"waiting for the replicas before the next batch of {table}: lag {lag:.1f} s, "
            f"more than --max-replica-lag {bound:g} s; waited "
            f"{time.monotonic() - started:.0f} s (interrupting is safe: 'aicrm db migrate "
            f"--online --max-replica-lag {bound:g}' resumes with the throttle)"
        )
        lag = wait_for_replicas(conn, bound, timeout=WAIT_SLICE)
        if lag is not None:
            report.replica_lag_max = max(report.replica_lag_max, lag)
    waited = time.monotonic() - started
    report.replica_wait_seconds += waited
    phases.options.say(f"waiting for the replicas: caught up after {waited:.1f} s, going on")


__all__ = ["keep_behind_replicas", "run"]
