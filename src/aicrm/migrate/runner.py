"""The migration runner: the seed's ten steps, in its order, for any numbered plan.

prerequisites → integrity checks → verified backup → changes in one transaction
(under a lock_timeout, retried with backoff) → verification inside that same
transaction → commit (or rollback for a dry-run) → report. Cleanup of temporary
data is each migration's last step; fresh statistics are left to autovacuum.

The integrity checks and the backup are both read-only, so they run side by side:
pg_dump starts once the prerequisites pass, while the checks run on two connections
sharing one snapshot. The order of the outcomes is the seed's: a refusing check
discards the backup (pg_dump stopped, its file deleted), a failed backup stops the
run before any change, and the changes start only after both have succeeded
(docs/backup-alongside-checks.md).

Every pending migration of a run, and the ledger rows recording them, commit in
one transaction: a run killed at any point leaves the database at the version
it had before.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from aicrm import config
from aicrm.db import Connection, Target, connect, target
from aicrm.errors import (
    AicrmError,
    DriftDetected,
    IntegrityRefused,
    LockHeld,
    MigrationFailed,
    UsageError,
    VerificationFailed,
)
from aicrm.migrate import backup, ledger, loader, online, prerequisites, snapshot, status_map
from aicrm.migrate.loader import Check, Migration, Step
from aicrm.migrate.lock import runner_lock
from aicrm.migrate.report import SAMPLE_SIZE, CheckResult, Finding, Report, StepTiming
from aicrm.migrate.state import State, inspect

Progress = Callable[[str], None]

LOCK_HOLDERS = """
SELECT DISTINCT l.pid, l.mode, l.relation::regclass::text
FROM pg_locks l WHERE l.granted AND l.pid <> pg_backend_pid()
  AND l.relation = ANY(SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)
ORDER BY 1
"""


@dataclass
class Options:
    """How to run. ``lock_timeout`` bounds each wait for a table lock (seconds);
    ``lock_retries`` is how many more attempts follow a lock timeout, with backoff;
    ``runner_wait`` bounds the wait for another runner to finish."""

    target_version: int | None = None
    dry_run: bool = False
    allow_drift: bool = False
    archive_orphans: bool = False
    # --map-status OLD=NEW: open leads' statuses mapped on the way to 008 (status_map)
    map_status: dict[str, str] = field(default_factory=dict)
    lock_timeout: float = 5.0
    lock_retries: int = 3
    runner_wait: float = 10.0
    # Connections the first migration's integrity checks run on, side by side, before
    # the transaction (1: one after the other on the runner's own connection).
    check_connections: int = 2
    backup_dir: Path = field(default_factory=config.backup_dir)
    migrations_dir: Path | None = None
    progress: Progress | None = None
    # The online mode (aicrm.migrate.online): set to run online; an unfinished
    # online run is resumed whatever this says.
    online: online.OnlineSettings | None = None

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


def _session(where: Target, application: str) -> Connection:
    conn = connect(where, autocommit=True, application_name=application)
    # PostgreSQL 14+: notice a killed runner mid-statement and roll back at once,
    # instead of holding its locks until the statement ends.
    with suppress(psycopg.Error):
        conn.execute("SET client_connection_check_interval = '1s'")
    return conn


@contextmanager
def _runner(where: Target, options: Options) -> Iterator[Connection]:
    conn = _session(where, "aicrm migrate")
    try:
        with runner_lock(conn, options.runner_wait):
            yield conn
    finally:
        conn.close()


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
    # --- online mode: a requested online run, or an unfinished one to resume -------
    if options.online is not None or online.unfinished(conn) is not None:
        if options.map_status:
            raise UsageError(
                "--map-status cannot be combined with an online run (it applies 001 only); "
                "finish it with 'aicrm db migrate --online', then map with 'aicrm db migrate "
                "--map-status OLD=NEW'."
            )
        online.run(conn, where, state, wanted, options, report)
        return
    # ---------------------------------------------------------------------------------
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
    options.say("checking prerequisites")
    mark = time.monotonic()
    report.prerequisites = prerequisites.check(
        conn,
        where,
        tables=_tables(plan),
        backup_dir=None if options.dry_run else options.backup_dir,
    )
    report.timings["prerequisites"] = time.monotonic() - mark
    status_map.prepare(conn, state.version, plan, options.map_status)  # before any backup
    # The backup and the first migration's integrity checks, side by side (both only
    # read); the changes start once both have succeeded.
    running = None
    if not options.dry_run:
        options.say(f"backing up to {options.backup_dir} (pg_dump, alongside the checks)")
        running = backup.start(where, options.backup_dir)
    try:
        if plan and state.version >= 0:
            # The first migration's checks run now, against the database as it is;
            # later ones run inside the transaction, against what came before them.
            options.say(f"integrity checks of {plan[0].label}")
            mark = time.monotonic()
            _integrity(conn, plan[0], options, report, where=where, backup_running=running)
            report.timings["integrity_checks"] = time.monotonic() - mark
    except BaseException:
        if running is not None:
            running.discard()  # a refused or failed run leaves no backup behind
        raise
    if running is not None:
        mark = time.monotonic()
        report.backup = running.wait()
        report.timings["backup_after_checks"] = time.monotonic() - mark
    report.timings["before_changes"] = time.monotonic() - started
    mark = time.monotonic()
    try:
        _transaction(conn, state, plan, options, report, _apply_steps)
    except IntegrityRefused:
        # A later migration's checks (run in the transaction) refused: as for the
        # first one's, a refused run leaves no backup behind.
        if running is not None:
            running.discard()
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


def _integrity(
    conn: Connection,
    migration: Migration,
    options: Options,
    report: Report,
    *,
    where: Target | None = None,
    backup_running: backup.Running | None = None,
) -> None:
    """Run ``migration``'s integrity checks; refuse on blocking findings.

    With ``where`` (before the transaction, never inside it) the checks run on up to
    ``options.check_connections`` connections at once, sharing one snapshot. With
    ``backup_running``, a pg_dump that fails stops the checks early: its error is
    the run's (raised by the caller's wait for the backup)."""
    checks = migration.checks_of("integrity")
    if where is not None and options.check_connections > 1 and len(checks) > 1:
        found = _concurrent_findings(conn, where, migration, checks, options, backup_running)
        if found is None:
            return  # pg_dump failed: the caller's wait for the backup raises its error
        findings = found
    else:
        findings = [_finding(conn, migration, check) for check in checks]
    report.findings.extend(findings)
    blocking = [f for f in findings if f.severity == "blocking" and f.count]
    if blocking and not options.archive_orphans:
        summary = ", ".join(f"{f.check}: {f.count}" for f in blocking)
        raise IntegrityRefused(
            f"Integrity check refused {migration.label}: {summary}. Nothing was changed. Fix "
            "these rows (the report lists samples and the query for each), or rerun with "
            "--archive-orphans to archive and clear them."
        )


def _concurrent_findings(
    conn: Connection,
    where: Target,
    migration: Migration,
    checks: tuple[Check, ...],
    options: Options,
    backup_running: backup.Running | None,
) -> list[Finding] | None:
    """The checks' findings, in their declared order, computed by the runner's own
    connection and helper connections, each taking the next check not yet taken.

    All of them read one snapshot (REPEATABLE READ, READ ONLY, the runner's exported
    snapshot), so the counts describe one state of the database, as if they ran in
    one query. Returns None when ``backup_running`` failed meanwhile (the remaining
    checks are not run)."""
    helpers: list[Connection] = []
    for _ in range(options.check_connections - 1):
        try:
            helpers.append(connect(where, autocommit=True, application_name="aicrm migrate"))
        except AicrmError:
            break  # no room for another connection: fewer connections, same checks
    if not helpers:
        return [_finding(conn, migration, check) for check in checks]
    findings: list[Finding | None] = [None] * len(checks)
    pending: list[tuple[int, Check]] = []
    taken = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(session: Connection) -> None:
        while not stop.is_set():
            if backup_running is not None and backup_running.failed():
                stop.set()
                return
            with taken:
                if not pending:
                    return
                index, check = pending.pop(0)
            try:
                findings[index] = _finding(session, migration, check)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                return

    def helper(session: Connection, snapshot_id: str) -> None:
        try:
            with session.transaction():
                _read_only_snapshot(session, snapshot_id)
                work(session)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    try:
        with conn.transaction():
            _read_only_snapshot(conn, None)
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            # The costliest first (the planner's estimates): the connections then
            # finish close together instead of one running the longest check last.
            costs = [_estimated_cost(conn, check) for check in checks]
            pending.extend(sorted(enumerate(checks), key=lambda item: -costs[item[0]]))
            threads = [
                threading.Thread(
                    target=helper, args=(h, str(row[0])), name="aicrm-checks", daemon=True
                )
                for h in helpers
            ]
            for thread in threads:
                thread.start()
            try:
                work(conn)
            finally:
                if stop.is_set():
                    # Only the helpers are cancelled: a cancel that arrived late on
                    # the runner's connection could hit the migration's transaction.
                    for h in helpers:
                        with suppress(psycopg.Error):
                            h.cancel_safe(timeout=5)
                # The exported snapshot lives as long as this transaction: the
                # helpers must have imported it (and finished) before it ends.
                for thread in threads:
                    thread.join()
            # Ours are the cancellations above; any other error is the run's.
            real = [e for e in errors if not isinstance(e, psycopg.errors.QueryCanceled)]
            if real:
                raise real[0]
            if errors and not (backup_running is not None and backup_running.failed()):
                raise errors[0]
    finally:
        for h in helpers:
            h.close()
    if any(f is None for f in findings):
        return None  # stopped early as pg_dump failed: the caller raises its error
    # All done: a refusal still comes before a failed backup, as in the seed's order.
    return [f for f in findings if f is not None]


def _read_only_snapshot(conn: Connection, snapshot_id: str | None) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if snapshot_id is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    # The connections are the parallelism: serial plans, so that the checks and
    # pg_dump (beside them) share the cores instead of queueing for them.
    conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")


def _estimated_cost(conn: Connection, check: Check) -> float:
    plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) {}").format(sql.SQL(check.sql))  # the shipped checks
    ).fetchone()
    try:
        return float(plan[0][0]["Plan"]["Total Cost"]) if plan else 0.0
    except (LookupError, TypeError, ValueError):
        return 0.0


def _finding(conn: Connection, migration: Migration, check: Check) -> Finding:
    query = sql.SQL(check.sql)  # trusted text: the shipped migration's own checks file
    # One pass: the samples and, beside each, the total count over the whole result.
    rows = conn.execute(
        sql.SQL("SELECT q.*, count(*) OVER () FROM ({}) AS q LIMIT {}").format(
            query, sql.Literal(SAMPLE_SIZE)
        )
    ).fetchall()
    return Finding(
        migration.label,
        check.name,
        check.severity,
        check.description,
        int(rows[0][-1]) if rows else 0,
        [str(row[0]) for row in rows],
        check.sql,
    )


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
    attempts = options.lock_retries + 1
    for attempt in range(1, attempts + 1):
        report.lock_attempts = attempt
        report.steps.clear()
        attempt_started = time.monotonic()
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (f"{int(options.lock_timeout * 1000)}ms",),
                )
                if options.archive_orphans:
                    conn.execute("SELECT set_config('aicrm.archive_orphans', 'on', true)")
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
            return
        except psycopg.errors.LockNotAvailable as exc:
            report.lock_wait_seconds += time.monotonic() - attempt_started
            holders = _lock_holders(conn, _tables(plan))
            if attempt == attempts:
                raise LockHeld(
                    f"Could not lock {', '.join(_tables(plan)) or 'the tables'} within "
                    f"{options.lock_timeout:g} s after {attempts} attempts ({holders}). "
                    "Nothing was changed; run again when the blocking sessions are done, or "
                    "raise --lock-timeout."
                ) from exc
            options.say(f"lock not available ({holders}); retry {attempt} of {attempts - 1}")
            time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
        except psycopg.Error as exc:
            step = report.steps[-1].step if report.steps else "start"
            raise MigrationFailed(
                f"Step '{step}' failed: {_pg_message(exc)}. The transaction was rolled back; "
                f"the database is unchanged at version {_v(state.version)}."
            ) from None


def _lock_holders(conn: Connection, tables: list[str]) -> str:
    try:
        rows = conn.execute(LOCK_HOLDERS, (tables,)).fetchall()
    except psycopg.Error:
        return "holders unknown"
    if not rows:
        return "the blocking session has finished"
    return "held by " + ", ".join(f"pid {pid} ({mode} on {rel})" for pid, mode, rel in rows)


def _pg_message(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary or str(exc).splitlines()[0]
    return primary + (f" ({exc.diag.message_detail})" if exc.diag.message_detail else "")


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
            _integrity(conn, migration, options, report)
        locked_at = _take_locks(conn, migration, report) or locked_at
        status_map.before_steps(conn, migration, plan, options.map_status, report)
        _run_steps(conn, migration, migration.steps, options, report)
        ledger.record(
            conn,
            migration.version,
            migration.name,
            migration.checksum,
            int((time.monotonic() - started) * 1000),
            "applied",
        )
        _verify(conn, migration, report)
    return locked_at


def _take_locks(conn: Connection, migration: Migration, report: Report) -> float | None:
    if not migration.locks:
        return None
    started = time.monotonic()
    # Locks come in the migration's declared order, all at once: no lock upgrades
    # half-way through, and a consistent order against other lockers.
    tables = [t for t in migration.locks if _exists(conn, t)]
    if tables:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )
    report.lock_wait_seconds += time.monotonic() - started
    return time.monotonic()


def _exists(conn: Connection, table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


def _run_steps(
    conn: Connection,
    migration: Migration,
    steps: tuple[Step, ...],
    options: Options,
    report: Report,
) -> None:
    for number, step in enumerate(steps, 1):
        options.say(f"{migration.label} step {number}/{len(steps)}: {step.description}")
        started = time.monotonic()
        report.steps.append(StepTiming(migration.label, step.description, 0.0))
        conn.execute(step.sql.encode())
        report.steps[-1] = StepTiming(migration.label, step.description, time.monotonic() - started)


def _verify(conn: Connection, migration: Migration, report: Report) -> None:
    results = verify_checks(conn, migration)
    report.verification.extend(results)
    failed = [r for r in results if not r.ok]
    if failed:
        raise VerificationFailed(
            f"Verification of {migration.label} failed: "
            + "; ".join(f"{r.description}: {', '.join(r.failures[:3])}" for r in failed)
            + ". The transaction was rolled back; nothing was changed."
        )


def verify_checks(conn: Connection, migration: Migration) -> list[CheckResult]:
    """Run a migration's verification checks; each failing row is one failure."""
    results = []
    for check in migration.checks_of("verify"):
        rows = conn.execute(check.sql.encode()).fetchall()
        failures = [", ".join(str(value) for value in row) for row in rows]
        results.append(
            CheckResult(migration.label, check.name, check.description, not rows, failures)
        )
    return results


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
        try:
            _refuse_drift(state, options)
            # --- online mode: an unfinished online run is undone from its phase -----
            unfinished = online.unfinished(conn) if state.shape == "ledger" else None
            if unfinished is not None and version < unfinished.version:
                online.abort(conn, where, unfinished, options, report)
                return report
            # -------------------------------------------------------------------------
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
            report.prerequisites = prerequisites.check(
                conn,
                where,
                tables=_tables(plan),
                backup_dir=None if options.dry_run else options.backup_dir,
            )
            if not options.dry_run:
                options.say(f"backing up to {options.backup_dir}")
                report.backup = backup.take(where, options.backup_dir)
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
            _verify(conn, migration, report)
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
    online: dict[str, object] | None = None  # an unfinished online run (aicrm.migrate.online)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def status(where: Target | None = None, migrations_dir: Path | None = None) -> Status:
    """The database's version, applied and pending migrations, and drift (read-only)."""
    migrations = loader.load(migrations_dir)
    where = where or target()
    with connect(where, autocommit=True, application_name="aicrm status") as conn:
        version, _ = prerequisites.server_major(conn)
        state = inspect(conn, migrations)
        return Status(
            database=where.describe(),
            server_version=version,
            shape=state.shape,
            version=state.version,
            applied=state.applied,
            pending=[m.label for m in state.pending],
            drift=[f"{d.version:03d}_{d.name}" for d in state.drift],
            online=_online_state(conn),
        )


def _online_state(conn: Connection) -> dict[str, object] | None:
    run = online.unfinished(conn)
    return None if run is None else {**run.to_dict(), "text": run.describe()}


def verify(where: Target | None = None, migrations_dir: Path | None = None) -> list[CheckResult]:
    """Re-run the verification checks of every applied migration (read-only)."""
    migrations = loader.load(migrations_dir)
    where = where or target()
    with connect(where, application_name="aicrm verify") as conn:
        conn.read_only = True
        state = inspect(conn, migrations)
        applied = [m for m in migrations if m.version <= state.version]
        results = [r for m in applied for r in verify_checks(conn, m)]
        conn.rollback()
    return results


__all__ = ["Options", "Status", "downgrade", "migrate", "status", "verify"]
