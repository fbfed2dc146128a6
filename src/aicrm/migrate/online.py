"""The online mode: a migration applied while the CRM keeps working.

``aicrm db migrate --online`` applies a migration that ships an online form
(``migrations/online/NNN_*.sql``; today 001) in phases of short transactions,
recorded in the state table ``aicrm_online_migration`` so that a run killed at any
point resumes where it stopped:

``expand``
    instant DDL only (new tables, NULL columns, indexes built CONCURRENTLY) and
    the triggers that apply the migration's rules to every row written from now
    on, each statement in its own transaction under a short ``lock_timeout``,
    retried with backoff;
``backfill:<table>``
    the rows written before, in batches of an adaptive size (each batch commits
    with its progress, and takes about ``batch_seconds``), throttled on request;
``contract:constraints`` / ``contract:validate`` / ``contract:indexes``
    the key and the CHECKs added ``NOT VALID`` then validated, the last index
    built ``CONCURRENTLY`` (an invalid one left by an interrupted run is dropped
    first);
``contract:switch``
    one short transaction under ACCESS EXCLUSIVE locks: triggers off, legacy
    keys and columns dropped, views created, the ledger row written and the
    migration's verification checks run: the ledger says the migration is
    applied exactly when the schema is.

The runner's session-level advisory lock is held for the whole run (so CREATE
INDEX CONCURRENTLY never waits for the runner itself). The integrity checks and
the verified backup run before a new online run starts, as in the transactional
mode. ``aicrm db downgrade`` undoes an unfinished run from any phase
(``NNN_abort.sql``). Design and trade-offs: docs/online-migration.md.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from aicrm.db import Connection, Target
from aicrm.errors import LockHeld, MigrationFailed, UsageError
from aicrm.migrate import backup, ledger, loader, prerequisites, snapshot
from aicrm.migrate.loader import Migration, Step
from aicrm.migrate.lock import CLASS_ID
from aicrm.migrate.report import Report, StepTiming
from aicrm.migrate.state import State

T = TypeVar("T")

STATE_TABLE = "aicrm_online_migration"
PHASES = (
    "expand",
    "backfill:leads",
    "backfill:clients",
    "backfill:contacts",
    "contract:constraints",
    "contract:validate",
    "contract:indexes",
    "contract:switch",
)
# For tests only: a comma-separated list of points (``phase:backfill:leads``,
# ``expand:3``, ``batch:leads:2``, ``switch``) where the runner waits on the
# advisory lock (CLASS_ID, PAUSE_OBJECT) that a test holds, so that it can kill the
# runner at a known point. Unset in production: no effect.
PAUSE_ENV = "AICRM_ONLINE_PAUSE_AT"
PAUSE_OBJECT = 2
OWN_TRIGGERS = "migration\\_%\\_online\\_%"

CREATE_STATE = f"""
CREATE TABLE IF NOT EXISTS {STATE_TABLE} (
    version integer PRIMARY KEY,
    name text NOT NULL,
    phase text NOT NULL,
    backfill_after uuid NULL,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_total bigint NULL,
    batch_size integer NULL,
    archive_orphans boolean NOT NULL,
    backup text NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
COMMENT_STATE = f"""
COMMENT ON TABLE {STATE_TABLE} IS
    'aicrm: the phase and progress of an unfinished online migration (aicrm db migrate '
    '--online). Dropped by the run''s last transaction, with the ledger row written.'
"""
SELECT_STATE = """
SELECT version, name, phase, backfill_after, rows_done, rows_total, batch_size,
       archive_orphans, backup, started_at, updated_at
FROM aicrm_online_migration ORDER BY version LIMIT 1
"""
USER_TRIGGERS = """
SELECT c.relname || '.' || g.tgname, g.tgenabled::text
FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)
  AND NOT g.tgisinternal AND g.tgenabled <> 'D' AND g.tgname NOT LIKE %s
ORDER BY 1
"""
INDEX_NAME = re.compile(
    r"CREATE\s+INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+([a-z0-9_]+)", re.IGNORECASE
)


@dataclass
class OnlineSettings:
    """How an online run paces itself. ``batch_seconds``: the time each backfill
    batch aims at (the batch size adapts to it); ``throttle``: a pause after each
    batch (seconds); ``lock_timeout``: the bound on each wait for a table lock
    (seconds; a waiting DDL statement makes the application's queries queue behind
    it, so this is short), retried ``lock_retries`` times with backoff;
    ``row_lock_timeout``: the bound on a batch's wait for rows the application is
    writing; ``ddl_wait``: the bound on the waits of statements that do not block
    the application (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT)."""

    batch_seconds: float = 0.05
    throttle: float = 0.0
    lock_timeout: float = 0.05
    lock_retries: int = 30
    row_lock_timeout: float = 1.0
    ddl_wait: float = 60.0
    first_batch: int = 500
    min_batch: int = 50
    max_batch: int = 50_000


@dataclass(frozen=True)
class RunState:
    """A row of the state table: an unfinished online run."""

    version: int
    name: str
    phase: str
    backfill_after: str | None
    rows_done: int
    rows_total: int | None
    batch_size: int | None
    archive_orphans: bool
    backup: str | None
    started_at: datetime
    updated_at: datetime

    @property
    def label(self) -> str:
        return f"{self.version:03d}_{self.name}"

    def to_dict(self) -> dict[str, object]:
        return {
            "migration": self.label,
            "phase": self.phase,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "started_at": self.started_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "backup": self.backup,
        }

    def describe(self) -> str:
        progress = ""
        if self.phase.startswith("backfill:"):
            total = f"/{self.rows_total:,}" if self.rows_total is not None else ""
            progress = f", {self.rows_done:,}{total} rows done"
        return (
            f"{self.label} applied online, unfinished: phase {self.phase}{progress} "
            f"(last progress {self.updated_at:%Y-%m-%d %H:%M:%S %Z})"
        )


def online_dir() -> Path:
    return loader.default_dir() / "online"


def has_online_form(migration: Migration) -> bool:
    return (online_dir() / f"{migration.version:03d}_expand.sql").exists()


def _steps(version: int, part: str) -> tuple[Step, ...]:
    path = online_dir() / f"{version:03d}_{part}.sql"
    return loader.split_steps(path.read_text("utf-8"), path.name)


def unfinished(conn: Connection) -> RunState | None:
    """The unfinished online run recorded in the database, if any (read-only)."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (STATE_TABLE,)).fetchone()
    if not (row and row[0]):
        return None
    found = conn.execute(SELECT_STATE).fetchone()
    if found is None:
        return None
    values: list[Any] = list(found)
    values[3] = None if values[3] is None else str(values[3])
    return RunState(*values)


# --------------------------------------------------------------------------- run


def run(
    conn: Connection,
    where: Target,
    state: State,
    wanted: int,
    options: Any,
    report: Report,
) -> None:
    """Apply (or resume) a migration online; see the module docstring.

    ``options`` is the runner's :class:`aicrm.migrate.runner.Options`.
    """
    from aicrm.migrate import runner  # the engine's checks, shared with the transactional mode

    settings: OnlineSettings = options.online or OnlineSettings()
    if options.dry_run:
        raise UsageError(
            "--dry-run cannot be combined with --online: an online run commits phase by phase. "
            "Run 'aicrm db migrate --dry-run' (transactional) to see what the migration does; "
            "its findings and changes are the online run's."
        )
    migrations = loader.load(options.migrations_dir)
    current = unfinished(conn)
    before = snapshot.objects(conn)
    if current is None:
        plan = [m for m in state.pending if m.version <= wanted]
        if not plan:
            report.outcome = "nothing to do"
            return
        migration = plan[0]
        if state.version < 0 or not has_online_form(migration):
            raise UsageError(
                f"{migration.label} has no online form (only 001 has one, on a database at "
                "000); run 'aicrm db migrate' without --online."
            )
        report.migrations = [migration.label]
        report.to_version = migration.version
        options.say("checking prerequisites")
        report.prerequisites = prerequisites.check(
            conn, where, tables=list(migration.locks), backup_dir=options.backup_dir
        )
        replica = _quiet_mode(conn, migration)
        options.say(f"integrity checks of {migration.label}")
        runner._integrity(conn, migration, options, report)
        options.say(f"backing up to {options.backup_dir}")
        report.backup = backup.take(where, options.backup_dir)
        with conn.transaction():
            conn.execute(CREATE_STATE)
            conn.execute(COMMENT_STATE)
            if state.shape == "original":
                ledger.record(conn, 0, migrations[0].name, "baseline", 0, "baseline")
                report.baseline_recorded = True
            conn.execute(
                f"INSERT INTO {STATE_TABLE} (version, name, phase, archive_orphans, backup) "  # noqa: S608
                "VALUES (%s, %s, 'expand', %s, %s)",
                (
                    migration.version,
                    migration.name,
                    options.archive_orphans,
                    str(report.backup.path),
                ),
            )
        current = unfinished(conn)
        assert current is not None
    else:
        by_version = {m.version: m for m in migrations}
        if current.version not in by_version:
            raise UsageError(
                f"The unfinished online run is of {current.label}, which is not shipped."
            )
        migration = by_version[current.version]
        report.migrations = [migration.label]
        report.to_version = migration.version
        options.archive_orphans = options.archive_orphans or current.archive_orphans
        options.say(f"resuming {migration.label} at phase {current.phase}")
        replica = _quiet_mode(conn, migration)
        report.outcome = "resumed"
    engine = _Engine(conn, migration, settings, options, report, replica)
    engine.resume(current)
    after = snapshot.objects(conn)
    report.objects_added = sorted(after - before)
    report.objects_dropped = sorted(before - after)
    later = [m.label for m in migrations if migration.version < m.version <= wanted]
    report.outcome = "applied online" + (
        f" (resumed from phase {current.phase})" if report.outcome == "resumed" else ""
    )
    if later:
        report.outcome += f"; still pending: {', '.join(later)} (run 'aicrm db migrate')"


def _quiet_mode(conn: Connection, migration: Migration) -> bool:
    """Whether the backfill can keep user triggers from firing (it sets
    ``session_replication_role = replica`` in its transactions: a superuser, or on
    PostgreSQL 15+ a role granted SET on it). Refuses the online mode when user
    triggers would fire for the backfill's writes."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
        replica = True
    except psycopg.errors.InsufficientPrivilege:
        replica = False
    triggers = conn.execute(USER_TRIGGERS, (list(migration.locks), OWN_TRIGGERS)).fetchall()
    always = [name for name, mode in triggers if mode in ("A", "R")]
    if always:
        raise UsageError(
            f"User trigger(s) {', '.join(always)} fire even in replica mode (ENABLE ALWAYS or "
            "REPLICA): the online backfill cannot keep them from firing. Use the transactional "
            "mode ('aicrm db migrate' without --online), which disables them for its backfill."
        )
    if triggers and not replica:
        raise UsageError(
            f"The online backfill must not fire the user trigger(s) "
            f"{', '.join(name for name, _ in triggers)}, and this role may not set "
            "session_replication_role. Grant it (PostgreSQL 15+: GRANT SET ON PARAMETER "
            "session_replication_role TO …), run as the superuser, or use the transactional mode."
        )
    return replica


class _Engine:
    """Runs the phases of one online migration from a recorded state."""

    def __init__(
        self,
        conn: Connection,
        migration: Migration,
        settings: OnlineSettings,
        options: Any,
        report: Report,
        replica: bool,
    ) -> None:
        self.conn = conn
        self.migration = migration
        self.settings = settings
        self.options = options
        self.report = report
        self.replica = replica

    # -- phases

    def resume(self, current: RunState) -> None:
        phase = current.phase
        while True:
            self.pause(f"phase:{phase}")
            started = time.monotonic()
            if phase == "expand":
                self.ddl_steps("expand")
            elif phase.startswith("backfill:"):
                self.backfill(phase.split(":", 1)[1], current if current.phase == phase else None)
            elif phase == "contract:constraints":
                self.ddl_steps("contract_constraints")
            elif phase == "contract:validate":
                self.ddl_steps("contract_validate", lock_timeout=self.settings.ddl_wait)
            elif phase == "contract:indexes":
                self.ddl_steps("contract_indexes")
            elif phase == "contract:switch":
                self.switch()
                self.timing(f"phase {phase}", started)
                return
            else:
                raise MigrationFailed(f"The online run is at an unknown phase {phase!r}.")
            self.timing(f"phase {phase}", started)
            phase = PHASES[PHASES.index(phase) + 1]
            self.set_phase(phase)

    def set_phase(self, phase: str) -> None:
        def body() -> None:
            self.conn.execute(
                f"UPDATE {STATE_TABLE} SET phase = %s, backfill_after = NULL, "  # noqa: S608
                "rows_done = 0, rows_total = NULL, batch_size = NULL, updated_at = now() "
                "WHERE version = %s",
                (phase, self.migration.version),
            )

        self.short(body, "record the phase")

    def timing(self, what: str, started: float) -> None:
        self.report.steps.append(StepTiming(self.migration.label, what, time.monotonic() - started))

    def ddl_steps(self, part: str, lock_timeout: float | None = None) -> None:
        steps = _steps(self.migration.version, part)
        for number, step in enumerate(steps, 1):
            self.options.say(f"{part} step {number}/{len(steps)}: {step.description}")
            self.pause(f"{part}:{number}")
            started = time.monotonic()
            if INDEX_NAME.search(step.sql):
                self.concurrently(step)
            else:
                self.short(self.executor(step), step.description, lock_timeout)
            self.report.steps.append(
                StepTiming(
                    self.migration.label, f"{part}: {step.description}", time.monotonic() - started
                )
            )

    def executor(self, step: Step) -> Callable[[], object]:
        return lambda: self.conn.execute(step.sql.encode())

    def concurrently(self, step: Step) -> None:
        """CREATE INDEX CONCURRENTLY, outside any transaction; an invalid index of
        that name (left by an interrupted build) is dropped first, and a failed
        build is dropped and retried."""
        match = INDEX_NAME.search(step.sql)
        assert match is not None
        name = match.group(1)
        conn = self.conn
        for attempt in range(1, self.settings.lock_retries + 2):
            row = conn.execute(
                "SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)",
                (name,),
            ).fetchone()
            if row is not None and row[0]:
                return
            try:
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)",
                    (f"{int(self.settings.ddl_wait * 1000)}ms",),
                )
                if row is not None:
                    self.options.say(
                        f"dropping the invalid index {name} left by an interrupted run"
                    )
                    conn.execute(
                        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                    )
                conn.execute(step.sql.encode())
                return
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
                if attempt > self.settings.lock_retries:
                    raise LockHeld(
                        f"Could not build the index {name}: {exc.diag.message_primary}. Run "
                        "again to resume (the invalid index is dropped first)."
                    ) from None
                self.backoff(attempt, f"index {name}")
            finally:
                conn.execute("SELECT set_config('lock_timeout', '0', false)")

    # -- backfill

    def backfill(self, table: str, recorded: RunState | None) -> None:
        conn, settings = self.conn, self.settings
        after = recorded.backfill_after if recorded else None
        done = recorded.rows_done if recorded else 0
        size = (recorded.batch_size if recorded else None) or settings.first_batch
        total = recorded.rows_total if recorded else None
        if total is None:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
            total = int(row[0]) if row else 0
            conn.execute(
                f"UPDATE {STATE_TABLE} SET rows_total = %s WHERE version = %s",  # noqa: S608
                (total, self.migration.version),
            )
        started = time.monotonic()
        done_here = 0
        shown = 0.0
        batch = 0
        while True:
            batch += 1
            batch_started = time.monotonic()

            def body(after: str | None = after, size: int = size, batch: int = batch) -> int:
                conn.execute("SELECT set_config('aicrm.m001_backfill', 'on', true)")
                if self.replica:
                    conn.execute("SELECT set_config('session_replication_role', 'replica', true)")
                if self.options.archive_orphans:
                    conn.execute("SELECT set_config('aicrm.archive_orphans', 'on', true)")
                row = conn.execute(
                    "SELECT last_id::text, done FROM migration_001_backfill(%s, %s, %s)",
                    (table, after, size),
                ).fetchone()
                assert row is not None
                last, count = row[0], int(row[1])
                if count:
                    conn.execute(
                        f"UPDATE {STATE_TABLE} SET backfill_after = %s, "  # noqa: S608
                        "rows_done = rows_done + %s, batch_size = %s, updated_at = now() "
                        "WHERE version = %s",
                        (last, count, size, self.migration.version),
                    )
                self.pause(f"batch:{table}:{batch}")
                self._last = last
                return count

            count = self.short(body, f"backfill batch of {table}", settings.row_lock_timeout)
            if count == 0:
                break
            after = self._last
            done += count
            done_here += count
            elapsed = time.monotonic() - batch_started
            # Adapt: aim at batch_seconds, at most halving or doubling at a time.
            wanted = int(size * settings.batch_seconds / max(elapsed, 0.001))
            size = max(
                settings.min_batch, min(settings.max_batch, size * 2, max(size // 2, wanted))
            )
            now = time.monotonic()
            if now - shown >= 1.0:
                shown = now
                rate = done_here / max(now - started, 0.001)
                left = max(total - done, 0) / rate if rate else 0.0
                percent = 100.0 * done / total if total else 100.0
                self.options.say(
                    f"backfill {table}: {done:,}/{total:,} rows ({percent:.0f}%), "
                    f"{rate:,.0f} rows/s, ~{left:,.0f} s left, batch {size:,}"
                )
            if settings.throttle > 0:
                time.sleep(settings.throttle)

    _last: str | None = None

    # -- the switch

    def switch(self) -> None:
        from aicrm.migrate import runner

        conn, migration = self.conn, self.migration
        steps = _steps(migration.version, "contract_switch")

        def body() -> None:
            locked = time.monotonic()
            tables = [t for t in migration.locks if runner._exists(conn, t)]
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
            for step in steps:
                self.options.say(f"switch: {step.description}")
                conn.execute(step.sql.encode())
            row = conn.execute(
                "SELECT (extract(epoch FROM clock_timestamp() - started_at) * 1000)::integer "  # noqa: S608
                f"FROM {STATE_TABLE} WHERE version = %s",
                (migration.version,),
            ).fetchone()
            duration = int(row[0]) if row else 0
            ledger.record(
                conn, migration.version, migration.name, migration.checksum, duration, "applied"
            )
            conn.execute(f"DROP TABLE {STATE_TABLE}")
            runner._verify(conn, migration, self.report)
            self.pause("switch")
            self.report.lock_held_seconds = max(
                self.report.lock_held_seconds, time.monotonic() - locked
            )

        self.short(body, "the switch")

    # -- short transactions

    def short(self, body: Callable[[], T], what: str, lock_timeout: float | None = None) -> T:
        """Run ``body`` in one transaction under ``lock_timeout`` (default: the
        settings'); on a lock timeout or a deadlock, roll back, back off, retry."""
        timeout = self.settings.lock_timeout if lock_timeout is None else lock_timeout
        for attempt in range(1, self.settings.lock_retries + 2):
            self.report.lock_attempts += 1
            started = time.monotonic()
            try:
                with self.conn.transaction():
                    self.conn.execute(
                        "SELECT set_config('lock_timeout', %s, true)", (f"{int(timeout * 1000)}ms",)
                    )
                    return body()
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
                self.report.lock_wait_seconds += time.monotonic() - started
                if attempt > self.settings.lock_retries:
                    raise LockHeld(
                        f"{what}: could not take its locks within {timeout:g} s after "
                        f"{attempt} attempts ({exc.diag.message_primary}). The online run is "
                        "recorded; run 'aicrm db migrate' again to resume it."
                    ) from None
                self.backoff(attempt, what)
            except psycopg.Error as exc:
                primary = exc.diag.message_primary or str(exc).splitlines()[0]
                raise MigrationFailed(
                    f"Online {self.migration.label}, {what} failed: {primary}. That "
                    "transaction was rolled back; the run is recorded at its last completed "
                    "step: fix the cause and run 'aicrm db migrate' again to resume, or "
                    "'aicrm db downgrade 000' to undo it."
                ) from None
        raise AssertionError("unreachable")

    def backoff(self, attempt: int, what: str) -> None:
        delay = min(self.settings.lock_timeout * 2**attempt, 2.0) * random.uniform(0.5, 1.0)
        self.options.say(f"{what}: lock not available; retry {attempt} in {delay:.2f} s")
        time.sleep(delay)

    def pause(self, point: str) -> None:
        _pause(self.conn, point)


def _pause(conn: Connection, point: str) -> None:
    """For tests: wait at ``point`` while a test holds the pause lock (see PAUSE_ENV)."""
    points = {p.strip() for p in os.environ.get(PAUSE_ENV, "").split(",") if p.strip()}
    if point not in points:
        return
    local = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    conn.execute("SELECT set_config('lock_timeout', '0', %s)", (local,))
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))


# ------------------------------------------------------------------------ undo


def abort(
    conn: Connection,
    where: Target,
    current: RunState,
    options: Any,
    report: Report,
) -> None:
    """Undo an unfinished online run, whatever its phase, in one transaction after a
    verified backup (``aicrm db downgrade``)."""
    settings: OnlineSettings = options.online or OnlineSettings(lock_timeout=options.lock_timeout)
    migrations = {m.version: m for m in loader.load(options.migrations_dir)}
    migration = migrations[current.version]
    report.migrations = [f"{migration.label} (unfinished online run, phase {current.phase})"]
    report.to_version = current.version - 1
    report.prerequisites = prerequisites.check(
        conn,
        where,
        tables=list(migration.locks),
        backup_dir=None if options.dry_run else options.backup_dir,
    )
    if not options.dry_run:
        options.say(f"backing up to {options.backup_dir}")
        report.backup = backup.take(where, options.backup_dir)
    try:
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
        replica = True
    except psycopg.errors.InsufficientPrivilege:
        replica = False
    engine = _Engine(conn, migration, settings, options, report, replica)
    before = snapshot.objects(conn)
    steps = _steps(migration.version, "abort")

    def body() -> None:
        locked = time.monotonic()
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in migration.locks)
            )
        )
        if replica:
            conn.execute("SET LOCAL session_replication_role = replica")
        for step in steps:
            started = time.monotonic()
            options.say(f"undo: {step.description}")
            conn.execute(step.sql.encode())
            report.steps.append(
                StepTiming(migration.label, step.description, time.monotonic() - started)
            )
        conn.execute(f"DROP TABLE {STATE_TABLE}")
        after = snapshot.objects(conn)
        report.objects_added = sorted(after - before)
        report.objects_dropped = sorted(before - after)
        report.lock_held_seconds = time.monotonic() - locked
        if options.dry_run:
            raise psycopg.Rollback()

    engine.short(body, "the undo of the online run", options.lock_timeout)
    report.outcome = "dry run" if options.dry_run else "applied"


__all__ = ["OnlineSettings", "RunState", "abort", "has_online_form", "run", "unfinished"]
