"""The migration runner: the seed's ten steps, in its order, for any numbered plan.

prerequisites → integrity checks alongside a verified backup (:mod:`.preflight`) →
changes in one transaction (under a lock_timeout and the run's statement_timeout,
retried with backoff by :mod:`.lock`) → verification inside that same transaction
→ commit (or rollback for a dry-run) → report. Cleanup of temporary data is each
migration's last step; fresh statistics are left to autovacuum.

Every pending migration of a run, and the ledger rows recording them, commit in
one transaction: a run killed at any point leaves the database at the version it
had before. A migration's online form is the same engine's other way to apply it
(:mod:`.online`): requested with ``Options.online``, or resumed when unfinished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from aicrm.db import Connection, Target, connect, target
from aicrm.db.errors import primary_message, translated
from aicrm.db.script import trusted
from aicrm.errors import (
    AicrmError,
    DriftDetected,
    IntegrityRefused,
    LockHeld,
    MigrationFailed,
    UsageError,
)
from aicrm.migrate import (
    _checks as checks,
    _ledger as ledger,
    _lock as lock,
    _online as online,
    _online_state as online_state,
    _preflight as preflight,
    _prerequisites as prerequisites,
    _snapshot as snapshot,
    compat,
    loader,
    status_map,
)
from aicrm.migrate._report import CheckResult, Report, StepTiming
from aicrm.migrate._state import State, inspect
from aicrm.migrate.loader import Migration, Step
from aicrm.migrate.options import OnlineSettings, Options, Progress

APPLICATION = "aicrm migrate"


@contextmanager
def _runner(where: Target, options: Options) -> Iterator[Connection]:
    conn = connect(where, autocommit=True, application_name=APPLICATION)
    try:
        lock.refuse_pooler(conn)
        with lock.runner_lock(where, options.runner_wait, APPLICATION):
            yield conn
    finally:
        conn.close()


@translated()
def migrate(options: Options | None = None, where: Target | None = None) -> Report:
    """Bring the database to ``options.target_version`` (default: the newest).

    Returns the report of what was done (or would be, for a dry-run). Raises an
    :class:`AicrmError` whose ``details['report']`` holds the report so far.
    """
    options = options or Options()
    started = time.monotonic()
    migrations = loader.load(options.migrations_dir)
    where = where or target()
    newest = migrations[-1].version
    wanted = newest if options.target_version is None else options.target_version
    if not 0 <= wanted <= newest:
        raise UsageError(f"There is no migration {wanted:03d}; the newest is {newest:03d}.")
    with _runner(where, options) as conn:
        state = inspect(conn, migrations)
        report = Report("migrate", where.describe(), options.dry_run, state.version, state.version)
        report.statement_timeout = options.statement_timeout
        try:
            _migrate(conn, where, state, wanted, options, report, started)
        except AicrmError as exc:
            _fail(report, exc)
            raise
        finally:
            report.seconds = time.monotonic() - started
    return report


def _fail(report: Report, exc: AicrmError) -> None:
    report.outcome = "refused" if exc.exit_code in (2, 3) else "failed, rolled back"
    report.error = exc.message
    report.exit_code = exc.exit_code
    exc.details["report"] = report


def _migrate(
    conn: Connection,
    where: Target,
    state: State,
    wanted: int,
    options: Options,
    report: Report,
    started: float,
) -> None:
    _refuse_drift(state, options)
    # Dependents of what the plan drops: all found before the backup (compat).
    compat.refuse_early(
        conn,
        [m for m in state.pending if m.version <= wanted],
        compat_window=options.compat_window,
        rebuild=options.rebuild_dependents,
        report=report,
    )
    if options.online is not None or online_state.unfinished(conn) is not None:
        if options.map_status:
            raise UsageError(
                "--map-status cannot be combined with an online run (it applies 001 only); "
                "finish it with 'aicrm db migrate --online', then map with 'aicrm db migrate "
                "--map-status OLD=NEW'."
            )
        online.run(conn, where, state, wanted, options, report)
        return
    if wanted < state.version:
        raise UsageError(
            f"The database is at {state.version:03d}, past {wanted:03d}; use "
            f"'aicrm db downgrade {wanted:03d}' to go back."
        )
    plan = [m for m in state.pending if m.version <= wanted]
    report.to_version = wanted if plan else state.version
    report.migrations = [m.label for m in plan]
    if options.map_status and not plan:
        status_map.prepare(conn, state.version, plan, options.map_status)  # refuses
    if not plan and state.shape != "original":
        report.outcome = "nothing to do"
        return
    status_map.prepare(conn, state.version, plan, options.map_status)  # before any backup
    preflight.run(
        conn,
        where,
        plan,
        options,
        report,
        check_first=state.version >= 0,
        take_backup=not options.dry_run,
    )
    report.timings["before_changes"] = time.monotonic() - started
    mark = time.monotonic()
    try:
        _transaction(conn, state, plan, options, report, _apply_steps)
    except IntegrityRefused:
        # A later migration's checks (run in the transaction) refused: as for the
        # first one's, a refused run leaves no backup behind.
        if report.backup is not None:
            report.backup.path.unlink(missing_ok=True)
            report.backup = None
        raise
    report.timings["changes"] = time.monotonic() - mark
    report.outcome = "dry run" if options.dry_run else "applied"


def _refuse_drift(state: State, options: Options) -> None:
    if state.drift and not options.allow_drift:
        names = ", ".join(f"{d.version:03d}_{d.name}" for d in state.drift)
        raise DriftDetected(
            f"Applied migration(s) {names} changed since they were applied (checksum differs "
            "from the ledger). Restore the original file(s), or pass --allow-drift if the "
            "change is deliberate."
        )


def _tables(plan: list[Migration]) -> list[str]:
    return sorted({table for m in plan for table in m.locks})


# Runs a plan's steps inside the transaction; returns when the first table lock was
# taken (monotonic clock), or None when it took none.
StepRunner = Callable[[Connection, State, list[Migration], Options, Report], float | None]


def _transaction(
    conn: Connection,
    state: State,
    plan: list[Migration],
    options: Options,
    report: Report,
    body: StepRunner,
) -> None:
    """Run ``body`` in one transaction, retrying with backoff on lock timeouts."""
    tables = _tables(plan)

    def attempt() -> None:
        report.lock_attempts += 1
        report.steps.clear()
        lock.settings(
            conn,
            lock_timeout=options.lock_timeout,
            statement_timeout=options.statement_timeout,
            custom={"aicrm.archive_orphans": "on"} if options.archive_orphans else None,
        )
        before = snapshot.objects(conn)
        locked_at = body(conn, state, plan, options, report)
        after = snapshot.objects(conn)
        report.objects_added = sorted(after - before)
        report.objects_dropped = sorted(before - after)
        report.rows_changed = snapshot.row_changes(conn)
        if options.dry_run:
            raise psycopg.Rollback()
        if locked_at is not None:
            report.lock_held_seconds = time.monotonic() - locked_at

    def timed_out(number: int, waited: float, exc: psycopg.Error) -> None:
        report.lock_wait_seconds += waited
        holders = lock.lock_holders(conn, tables)
        if number > options.lock_retries:
            raise LockHeld(
                f"Could not lock {', '.join(tables) or 'the tables'} within "
                f"{options.lock_timeout:g} s after {number} attempts ({holders}). "
                "Nothing was changed; run again when the blocking sessions are done, or "
                "raise --lock-timeout."
            ) from exc
        options.say(f"lock not available ({holders}); retry {number} of {options.lock_retries}")

    def failed(exc: psycopg.Error) -> MigrationFailed:
        step = report.steps[-1].step if report.steps else "start"
        message = primary_message(exc, detail=True)
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return MigrationFailed(
                f"Step '{step}' ran longer than the statement timeout "
                f"({options.statement_timeout:g} s): {message}. The transaction was rolled "
                f"back; the database is unchanged at version {_v(state.version)}. Raise "
                "--statement-timeout (0: no bound), or run when the database is quieter."
            )
        return MigrationFailed(
            f"Step '{step}' failed: {message}. The transaction was rolled back; "
            f"the database is unchanged at version {_v(state.version)}."
        )

    with translated(failed):
        lock.retrying(conn, attempt, lock.Retry(options.lock_retries, 0.5, 8.0, False), timed_out)


def _v(version: int) -> str:
    return "empty" if version < 0 else f"{version:03d}"


def _apply_steps(
    conn: Connection, state: State, plan: list[Migration], options: Options, report: Report
) -> float | None:
    locked_at: float | None = None
    if state.shape == "original":
        ledger.record(
            conn, 0, loader.load(options.migrations_dir)[0].name, "baseline", 0, "baseline"
        )
        report.baseline_recorded = True
    for index, migration in enumerate(plan):
        started = time.monotonic()
        if index > 0 or state.version < 0:
            checks.integrity(conn, migration, report, archive_orphans=options.archive_orphans)
        early = tuple(step for step in migration.steps if step.before_lock)
        every = len(migration.steps)
        _run_steps(conn, migration, early, options, report, 1, every)
        if early:  # for tests: writes that land between the unlocked steps and the locks
            online.pause(conn, f"before-lock:{migration.label}")
            lock.settings(conn, lock_timeout=options.lock_timeout)
        locked_at = _take_locks(conn, migration, report) or locked_at
        window = compat.prepare(
            conn, migration, compat_window=options.compat_window, rebuild=options.rebuild_dependents
        )
        status_map.before_steps(conn, migration, plan, options.map_status, report)
        _run_steps(
            conn, migration, migration.steps[len(early) :], options, report, len(early) + 1, every
        )
        report.compat = window.open(conn, report) if window is not None else report.compat
        ledger.record(
            conn,
            migration.version,
            migration.name,
            migration.checksum,
            int((time.monotonic() - started) * 1000),
            "applied",
        )
        checks.verify(conn, migration, report)
    return locked_at


def _take_locks(conn: Connection, migration: Migration, report: Report) -> float | None:
    if not migration.locks:
        return None
    report.lock_wait_seconds += lock.lock_tables(conn, migration.locks)
    return time.monotonic()


def _run_steps(
    conn: Connection,
    migration: Migration,
    steps: tuple[Step, ...],
    options: Options,
    report: Report,
    first: int = 1,
    total: int | None = None,
) -> None:
    total = total or len(steps)
    for number, step in enumerate(steps, first):
        options.say(f"{migration.label} step {number}/{total}: {step.description}")
        started = time.monotonic()
        report.steps.append(StepTiming(migration.label, step.description, 0.0))
        conn.execute(trusted(step.sql))  # trusted text: the shipped migration file
        report.steps[-1] = StepTiming(migration.label, step.description, time.monotonic() - started)


def verify_checks(conn: Connection, migration: Migration) -> list[CheckResult]:
    """Run a migration's verification checks; each failing row is one failure."""
    return checks.verify_checks(conn, migration)


@translated()
def downgrade(version: int, options: Options | None = None, where: Target | None = None) -> Report:
    """Take the database back to ``version`` with the migrations' down files.

    Backs up first, like :func:`migrate`. Raises :class:`UsageError` when a
    migration on the way has no down file.
    """
    options = options or Options()
    started = time.monotonic()
    migrations = loader.load(options.migrations_dir)
    where = where or target()
    with _runner(where, options) as conn:
        state = inspect(conn, migrations)
        report = Report("downgrade", where.describe(), options.dry_run, state.version, version)
        report.statement_timeout = options.statement_timeout
        try:
            _refuse_drift(state, options)
            compat.refuse_downgrade(conn, version)  # an open window needs 001's columns
            unfinished = online_state.unfinished(conn) if state.shape == "ledger" else None
            if unfinished is not None and version < unfinished.version:
                online.abort(conn, where, unfinished, options, report)
                return report
            if state.shape != "ledger":
                raise UsageError("The database has no aicrm ledger; there is nothing to downgrade.")
            if not 0 <= version <= state.version:
                raise UsageError(
                    f"Cannot downgrade to {version:03d}: the database is at {_v(state.version)} "
                    "and 000 is the lowest version."
                )
            plan = [m for m in reversed(migrations) if version < m.version <= state.version]
            report.migrations = [m.label for m in plan]
            if not plan:
                report.outcome = "nothing to do"
                report.to_version = state.version
                return report
            missing = [m.label for m in plan if m.down_steps is None]
            if missing:
                raise UsageError(
                    f"Migration(s) {', '.join(missing)} have no down file; restore the backup "
                    "taken before them instead (see 'aicrm db restore')."
                )
            preflight.run(
                conn,
                where,
                plan,
                options,
                report,
                check_first=False,
                take_backup=not options.dry_run,
            )
            kept = [m for m in migrations if m.version <= version]
            _transaction(conn, state, plan, options, report, _down_steps(kept))
            report.outcome = "dry run" if options.dry_run else "applied"
        except AicrmError as exc:
            _fail(report, exc)
            raise
        finally:
            report.seconds = time.monotonic() - started
    return report


def _down_steps(kept: list[Migration]) -> StepRunner:
    def run(
        conn: Connection, state: State, plan: list[Migration], options: Options, report: Report
    ) -> float | None:
        locked_at: float | None = None
        for migration in plan:
            locked_at = locked_at or _take_locks(conn, migration, report)
            assert migration.down_steps is not None
            _run_steps(conn, migration, migration.down_steps, options, report)
            ledger.remove(conn, migration.version)
        for migration in kept:
            checks.verify(conn, migration, report)
        return locked_at

    return run


@dataclass(frozen=True)
class Status:
    """Where a database stands: ``version`` is -1 when empty; ``shape`` is ``ledger``,
    ``empty`` or ``original`` (the original schema, not yet recorded)."""

    database: str
    server_version: str
    shape: str
    version: int
    applied: list[ledger.Entry]
    pending: list[str]
    drift: list[str]
    online: dict[str, object] | None = None  # an unfinished online run (aicrm.migrate._online)
    compat: list[dict[str, object]] = field(default_factory=list)  # open windows (compat)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@translated()
def status(where: Target | None = None, migrations_dir: Path | None = None) -> Status:
    """The database's version, applied and pending migrations, and drift (read-only)."""
    migrations = loader.load(migrations_dir)
    where = where or target()
    with connect(where, autocommit=True, application_name="aicrm status") as conn:
        version, _ = prerequisites.server_major(conn)
        state = inspect(conn, migrations)
        run = online_state.unfinished(conn)
        return Status(
            database=where.describe(),
            server_version=version,
            shape=state.shape,
            version=state.version,
            applied=state.applied,
            pending=[m.label for m in state.pending],
            drift=[f"{d.version:03d}_{d.name}" for d in state.drift],
            online=None if run is None else {**run.to_dict(), "text": run.describe()},
            compat=compat.windows(conn),
        )


@translated()
def verify(where: Target | None = None, migrations_dir: Path | None = None) -> list[CheckResult]:
    """Re-run the verification checks of every applied migration (read-only)."""
    migrations = loader.load(migrations_dir)
    where = where or target()
    with connect(where, application_name="aicrm verify") as conn:
        conn.read_only = True
        state = inspect(conn, migrations)
        applied = [m for m in migrations if m.version <= state.version]
        results = [r for m in applied for r in checks.verify_checks(conn, m)]
        conn.rollback()
    return results


__all__ = [
    "OnlineSettings",
    "Options",
    "Progress",
    "Status",
    "downgrade",
    "migrate",
    "status",
    "verify",
    "verify_checks",
]
