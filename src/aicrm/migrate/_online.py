"""The online mode: a migration applied in phases while the CRM keeps working.

``aicrm db migrate --online`` runs a migration's online form (its phases, declared
in ``online/NNN_name.sql``: see :mod:`aicrm.migrate.loader`) in short transactions,
recording the phase and the backfill's progress in ``aicrm_online_migration``
(:mod:`aicrm.migrate._online_state`) so that a run killed at any point resumes
where it stopped:

* expand and contract phases: each step in its own short transaction under the
  online ``lock_timeout`` (``ddl_wait`` for an unhurried phase), retried with
  backoff; an autocommit step outside any transaction;
* backfill phases: batches of an adaptive size (:mod:`aicrm.migrate._backfill`);
* the switch: one short transaction under ACCESS EXCLUSIVE locks, the ledger row
  and the verification checks in it: the ledger says the migration is applied
  exactly when the schema is.

The prerequisites, the integrity checks and the verified backup come first, as in
the transactional mode (:mod:`aicrm.migrate._preflight`). ``aicrm db downgrade``
undoes an unfinished run from any phase (the form's abort). Locks and retries are
:mod:`aicrm.migrate._lock`'s. Design and trade-offs: docs/online-migration.md.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import psycopg
from psycopg import sql

from aicrm.db import Connection, Target
from aicrm.db.errors import primary_message, translated
from aicrm.db.script import trusted
from aicrm.errors import LockHeld, MigrationFailed, UsageError
from aicrm.migrate import (
    _backfill as backfill,
    _checks as checks,
    _ledger as ledger,
    _lock as lock,
    _online_state as online_state,
    _preflight as preflight,
    _snapshot as snapshot,
    compat,
    loader,
)
from aicrm.migrate._online_state import RunState, unfinished
from aicrm.migrate._report import Report, StepTiming
from aicrm.migrate._state import State
from aicrm.migrate.loader import Migration, OnlineForm, Phase, Step
from aicrm.migrate.options import OnlineSettings, Options

T = TypeVar("T")

# Every statement of the online run on one core: PostgreSQL's parallel workers (a
# count(*) of leads for the backfill's progress, CREATE INDEX CONCURRENTLY's build)
# would take the other cores from the application it runs beside, which is what this
# mode is for. Slower on an idle server; the run holds no lock meanwhile.
SERIAL = {"max_parallel_workers_per_gather": "0", "max_parallel_maintenance_workers": "0"}

# For tests only: a comma-separated list of points (``phase:backfill:leads``,
# ``expand:3``, ``batch:leads:2``, ``switch``) where the runner waits on the
# advisory lock (CLASS_ID, PAUSE_OBJECT) that a test holds, so that it can kill the
# runner at a known point. Unset in production: no effect.
PAUSE_ENV = "AICRM_ONLINE_PAUSE_AT"
PAUSE_OBJECT = 2
PAUSE = "SELECT pg_advisory_lock(%s, %s)"
UNPAUSE = "SELECT pg_advisory_unlock(%s, %s)"
OWN_TRIGGERS = "migration\\_%\\_online\\_%"
USER_TRIGGERS = """
SELECT c.relname || '.' || g.tgname, g.tgenabled::text
FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
WHERE c.oid = ANY (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)
  AND NOT g.tgisinternal AND g.tgenabled <> 'D' AND g.tgname NOT LIKE %s
ORDER BY 1
"""
DURABLE = "SELECT pg_current_xact_id()"
INDEX_VALID = "SELECT i.indisvalid FROM pg_index AS i WHERE i.indexrelid = to_regclass(%s)"
INDEX_NAME = re.compile(r"INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+([a-z0-9_]+)", re.IGNORECASE)


def run(
    conn: Connection, where: Target, state: State, wanted: int, options: Options, report: Report
) -> None:
    """Apply (or resume) a migration online; see the module docstring."""
    settings = options.online or OnlineSettings()
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
        if state.version < 0 or migration.online is None:
            shipped = [m.label for m in migrations if m.online is not None]
            raise UsageError(
                f"{migration.label} has no online form (online/{migration.path.name}; shipped "
                f"for {', '.join(shipped) or 'none'}, on a database past 000); run "
                "'aicrm db migrate' without --online."
            )
        report.migrations = [migration.label]
        report.to_version = migration.version
        replica = _quiet_mode(conn, migration)
        # Gently: the checks on one connection, then the backup, so that the live
        # application keeps the cores; an online run's pre-flight holds no lock.
        preflight.run(
            conn,
            where,
            [migration],
            options,
            report,
            check_first=True,
            take_backup=True,
            gentle=True,
        )
        assert report.backup is not None
        first = migration.online.expanded()[0]
        with conn.transaction():
            lock.settings(conn, statement_timeout=options.statement_timeout)
            if state.shape == "original":
                ledger.record(conn, 0, migrations[0].name, "baseline", 0, "baseline")
                report.baseline_recorded = True
            online_state.create(
                conn,
                migration.version,
                migration.name,
                first,
                options.archive_orphans,
                str(report.backup.path),
                # old code's columns, read before expand adds the new ones
                compat.old_columns(conn) if _opens_window(migration, options) else None,
            )
        current = unfinished(conn)
        assert current is not None
    else:
        by_version = {m.version: m for m in migrations}
        found = by_version.get(current.version)
        if found is None or found.online is None:
            raise UsageError(
                f"The unfinished online run is of {current.label}, whose online form is not "
                "shipped."
            )
        migration = found
        report.migrations = [migration.label]
        report.to_version = migration.version
        options.archive_orphans = options.archive_orphans or current.archive_orphans
        if _opens_window(migration, options) and (
            online_state.compat_columns(conn, migration.version) is None
        ):
            raise UsageError(
                f"The unfinished online run of {migration.label} started without "
                "--compat-window, so it did not record the columns old code sees; a window "
                "cannot be opened at its switch. Nothing was changed. Resume it without "
                "--compat-window, or use the transactional mode for a window."
            )
        options.say(f"resuming {migration.label} at phase {current.phase}")
        replica = _quiet_mode(conn, migration)
        report.outcome = "resumed"
    _Phases(conn, where, migration, settings, options, report, replica).resume(current)
    after = snapshot.objects(conn)
    report.objects_added = sorted(after - before)
    report.objects_dropped = sorted(before - after)
    later = [m.label for m in migrations if migration.version < m.version <= wanted]
    report.outcome = "applied online" + (
        f" (resumed from phase {current.phase})" if report.outcome == "resumed" else ""
    )
    if later:
        report.outcome += f"; still pending: {', '.join(later)} (run 'aicrm db migrate')"


def _opens_window(migration: Migration, options: Options) -> bool:
    return options.compat_window and compat.has_window(migration)


def _quiet_mode(conn: Connection, migration: Migration) -> bool:
    """Whether the backfill can keep user triggers from firing (it sets
    ``session_replication_role = replica`` in its transactions). Refuses the online
    mode when user triggers would fire for the backfill's writes."""
    replica = lock.replica_mode_allowed(conn)
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


class _Phases:
    """Runs the phases of one migration's online form from a recorded state."""

    def __init__(
        self,
        conn: Connection,
        where: Target,
        migration: Migration,
        settings: OnlineSettings,
        options: Options,
        report: Report,
        replica: bool,
    ) -> None:
        assert migration.online is not None
        self.conn = conn
        self.where = where
        self.migration = migration
        self.form: OnlineForm = migration.online
        self.settings = settings
        self.options = options
        self.report = report
        self.replica = replica

    def resume(self, current: RunState) -> None:
        names = self.form.expanded()
        if current.phase not in names:
            raise MigrationFailed(f"The online run is at an unknown phase {current.phase!r}.")
        index = names.index(current.phase)
        while True:
            name = names[index]
            phase = self.form.phase(name)
            self.pause(f"phase:{name}")
            started = time.monotonic()
            if phase.kind == "backfill":
                recorded = current if current.phase == name else None
                backfill.run(self, name.removeprefix("backfill:"), phase.function, recorded)
            elif phase.kind == "switch":
                self.switch(phase)
                self.timing(f"phase {name}", started)
                return
            else:
                self.ddl_steps(phase)
            self.timing(f"phase {name}", started)
            index += 1
            self.record_phase(names[index])

    def record_phase(self, name: str) -> None:
        def body() -> None:
            online_state.set_phase(self.conn, self.migration.version, name)

        self.short(body, "record the phase")

    def timing(self, what: str, started: float) -> None:
        self.report.steps.append(StepTiming(self.migration.label, what, time.monotonic() - started))

    def ddl_steps(self, phase: Phase) -> None:
        timeout = self.settings.ddl_wait if phase.unhurried else None
        for number, step in enumerate(phase.steps, 1):
            self.options.say(f"{phase.part} step {number}/{len(phase.steps)}: {step.description}")
            self.pause(f"{phase.part}:{number}")
            started = time.monotonic()
            if step.autocommit:
                self.autocommit(step)
            else:
                self.short(self.executor(step), step.description, timeout)
            self.report.steps.append(
                StepTiming(
                    self.migration.label,
                    f"{phase.part}: {step.description}",
                    time.monotonic() - started,
                )
            )

    def executor(self, step: Step) -> Callable[[], None]:
        def body() -> None:
            self.conn.execute(trusted(step.sql))  # trusted text: the shipped online form

        return body

    def autocommit(self, step: Step) -> None:
        """An autocommit step, outside any transaction, on a connection of its own
        whose bounds (``ddl_wait`` for locks: such statements do not block the
        application; the run's statement_timeout) are startup options: they end
        with that connection. An invalid index the step builds (left by an
        interrupted ``CREATE INDEX CONCURRENTLY``) is dropped first, and a build
        that timed out on a lock is dropped and retried."""
        match = INDEX_NAME.search(step.sql)
        name = match.group(1) if match else None
        conn = lock.bounded_session(
            self.where,
            "aicrm migrate",
            self.settings.ddl_wait,
            self.options.statement_timeout,
            SERIAL,
        )

        def body() -> None:
            if name is not None:
                row = conn.execute(INDEX_VALID, (name,)).fetchone()
                if row is not None and row[0]:
                    return
                if row is not None:
                    self.options.say(
                        f"dropping the invalid index {name} left by an interrupted run"
                    )
                    conn.execute(
                        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name))
                    )
            conn.execute(trusted(step.sql))

        try:
            with translated(lambda exc: self.failed(step.description, exc)):
                lock.retrying(
                    conn,
                    body,
                    self.retry(),
                    self.on_timeout(step.description, self.settings.ddl_wait),
                    transaction=False,
                )
        finally:
            conn.close()

    def switch(self, phase: Phase) -> None:
        conn, migration = self.conn, self.migration

        def body() -> None:
            locked = time.monotonic()
            lock.lock_tables(conn, migration.locks)
            # The window opens in the switch's transaction, as in the transactional
            # mode: old code sees the old columns until this commit, the window after.
            window = compat.prepare(
                conn,
                migration,
                compat_window=self.options.compat_window,
                rebuild=self.options.rebuild_dependents,
                columns=online_state.compat_columns(conn, migration.version),
            )
            for step in phase.steps:
                self.options.say(f"switch: {step.description}")
                conn.execute(trusted(step.sql))
            if window is not None:
                self.report.compat = window.open(conn, self.report)
            duration = online_state.elapsed_ms(conn, migration.version)
            ledger.record(
                conn, migration.version, migration.name, migration.checksum, duration, "applied"
            )
            online_state.drop(conn)
            checks.verify(conn, migration, self.report)
            self.pause("switch")
            self.report.lock_held_seconds = max(
                self.report.lock_held_seconds, time.monotonic() - locked
            )

        self.short(body, "the switch")
        # The switch committed without waiting for its flush (see short()); the run
        # reports "applied" only once it is durable: a transaction with an id,
        # committed synchronously, flushes the WAL up to and past the switch.
        with conn.transaction():
            conn.execute(DURABLE)

    # -- short transactions

    def retry(self) -> lock.Retry:
        return lock.Retry(self.settings.lock_retries, 2 * self.settings.lock_timeout, 2.0)

    def on_timeout(self, what: str, timeout: float) -> lock.OnTimeout:
        def told(attempt: int, waited: float, exc: psycopg.Error) -> None:
            self.report.lock_attempts += 1
            self.report.lock_wait_seconds += waited
            if attempt > self.settings.lock_retries:
                raise LockHeld(
                    f"{what}: could not take its locks within {timeout:g} s after "
                    f"{attempt} attempts ({exc.diag.message_primary}). The online run is "
                    "recorded; run 'aicrm db migrate' again to resume it."
                ) from None
            self.options.say(f"{what}: lock not available; retry {attempt}")

        return told

    def short(
        self,
        body: Callable[[], T],
        what: str,
        lock_timeout: float | None = None,
        custom: Mapping[str, str] | None = None,
    ) -> T:
        """Run ``body`` in one transaction under ``lock_timeout`` (default: the
        settings') and the run's statement_timeout; on a lock timeout or a deadlock,
        roll back, back off, retry.

        The transaction commits with ``synchronous_commit = off``: PostgreSQL holds a
        transaction's locks until its commit record is flushed, and on a busy disk
        that flush (``IO:WalSync``) can take longer than the work; the application's
        queries queued behind a DDL lock or a batch's row locks would wait for it
        too. A crash can lose only the run's last commits (WAL is written in order,
        so the state row never runs ahead of the work it records), and every step is
        idempotent and resumed from that state."""
        timeout = self.settings.lock_timeout if lock_timeout is None else lock_timeout

        def transaction() -> T:
            self.report.lock_attempts += 1
            lock.settings(
                self.conn,
                lock_timeout=timeout,
                statement_timeout=self.options.statement_timeout,
                custom={"synchronous_commit": "off", **SERIAL, **(custom or {})},
            )
            return body()

        with translated(lambda exc: self.failed(what, exc)):
            return lock.retrying(
                self.conn, transaction, self.retry(), self.on_timeout(what, timeout)
            )

    def failed(self, what: str, exc: psycopg.Error) -> MigrationFailed:
        return MigrationFailed(
            f"Online {self.migration.label}, {what} failed: {primary_message(exc)}. That "
            "transaction was rolled back; the run is recorded at its last completed "
            "step: fix the cause and run 'aicrm db migrate' again to resume, or "
            "'aicrm db downgrade 000' to undo it."
        )

    def pause(self, point: str) -> None:
        pause(self.conn, point)


def pause(conn: Connection, point: str) -> None:
    """For tests: wait at ``point`` while a test holds the pause lock (see PAUSE_ENV)."""
    points = {p.strip() for p in os.environ.get(PAUSE_ENV, "").split(",") if p.strip()}
    if point not in points:
        return
    # Session-level, and released at once: the test takes it again for its next point.
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        lock.settings(conn, lock_timeout=0)
    conn.execute(PAUSE, (lock.CLASS_ID, PAUSE_OBJECT))
    conn.execute(UNPAUSE, (lock.CLASS_ID, PAUSE_OBJECT))


# ------------------------------------------------------------------------ undo


def abort(
    conn: Connection, where: Target, current: RunState, options: Options, report: Report
) -> None:
    """Undo an unfinished online run, whatever its phase, in one transaction after a
    verified backup (``aicrm db downgrade``)."""
    settings = options.online or OnlineSettings(lock_timeout=options.lock_timeout)
    migrations = {m.version: m for m in loader.load(options.migrations_dir)}
    migration = migrations[current.version]
    assert migration.online is not None
    report.migrations = [f"{migration.label} (unfinished online run, phase {current.phase})"]
    report.to_version = current.version - 1
    preflight.run(
        conn,
        where,
        [migration],
        options,
        report,
        check_first=False,
        take_backup=not options.dry_run,
    )
    replica = lock.replica_mode_allowed(conn)
    phases = _Phases(conn, where, migration, settings, options, report, replica)
    before = snapshot.objects(conn)
    steps = migration.online.abort

    def body() -> None:
        locked = time.monotonic()
        lock.lock_tables(conn, migration.locks)
        if replica:
            lock.settings(conn, custom={"session_replication_role": "replica"})
        for step in steps:
            started = time.monotonic()
            options.say(f"undo: {step.description}")
            conn.execute(trusted(step.sql))
            report.steps.append(
                StepTiming(migration.label, step.description, time.monotonic() - started)
            )
        online_state.drop(conn)
        after = snapshot.objects(conn)
        report.objects_added = sorted(after - before)
        report.objects_dropped = sorted(before - after)
        report.lock_held_seconds = time.monotonic() - locked
        if options.dry_run:
            raise psycopg.Rollback()

    phases.short(body, "the undo of the online run", options.lock_timeout)
    report.outcome = "dry run" if options.dry_run else "applied"


__all__ = ["PAUSE_ENV", "PAUSE_OBJECT", "OnlineSettings", "RunState", "abort", "run", "unfinished"]
