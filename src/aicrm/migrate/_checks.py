"""A migration's checks: integrity findings before its changes, verification after.

Integrity checks only read. Before the run's transaction they run on up to
``connections`` connections at once, sharing one exported snapshot (the counts
describe one state of the database); inside it, on the runner's connection.
:func:`integrity` is the integrity phase: every finding is collected, then the run
refuses on blocking ones, before any change (and, as the runner calls it, while the
backup is still being taken, so a refused run leaves no backup behind).
"""

from __future__ import annotations

import threading
from contextlib import suppress

import psycopg
from psycopg import sql

from aicrm.db import Connection, Target, connect
from aicrm.db.script import trusted
from aicrm.errors import AicrmError, IntegrityRefused, VerificationFailed
from aicrm.migrate import _lock as lock
from aicrm.migrate._report import SAMPLE_SIZE, CheckResult, Finding, Report
from aicrm.migrate.backup import Running
from aicrm.migrate.loader import Check, Migration

EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
READ_ONLY_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Per sort or hash of each check, on each of the checks' connections, for this
# transaction only: the few checks of a migration, not a server-wide setting.
CHECK_WORK_MEM = "64MB"


def integrity(
    conn: Connection,
    migration: Migration,
    report: Report,
    *,
    archive_orphans: bool,
    where: Target | None = None,
    connections: int = 1,
    statement_timeout: float = 0.0,
    backup_running: Running | None = None,
) -> None:
    """Run ``migration``'s integrity checks, add the findings to ``report``, and
    raise :class:`IntegrityRefused` on blocking ones (unless ``archive_orphans``).

    With ``where`` (before the transaction, never inside it) the checks run on up to
    ``connections`` connections at once, sharing one snapshot. With
    ``backup_running``, a pg_dump that fails stops the checks early: its error is
    the run's (raised by the caller's wait for the backup)."""
    checks = migration.checks_of("integrity")
    if where is not None and len(checks) > 1:
        found = _concurrent_findings(
            conn, where, migration, checks, connections, statement_timeout, backup_running
        )
        if found is None:
            return  # pg_dump failed: the caller's wait for the backup raises its error
        findings = found
    elif where is not None:
        with conn.transaction():
            _read_only_snapshot(conn, None, statement_timeout)
            findings = [finding(conn, migration, check) for check in checks]
    else:
        findings = [finding(conn, migration, check) for check in checks]
    report.findings.extend(findings)
    blocking = [f for f in findings if f.severity == "blocking" and f.count]
    if blocking and not archive_orphans:
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
    connections: int,
    statement_timeout: float,
    backup_running: Running | None,
) -> list[Finding] | None:
    """The checks' findings, in their declared order, computed by the runner's own
    connection and helper connections, each taking the next check not yet taken.

    All of them read one snapshot (REPEATABLE READ, READ ONLY, the runner's exported
    snapshot), so the counts describe one state of the database, as if they ran in
    one query. Returns None when ``backup_running`` failed meanwhile (the remaining
    checks are not run)."""
    helpers: list[Connection] = []
    for _ in range(connections - 1):
        try:
            helpers.append(connect(where, autocommit=True, application_name="aicrm migrate"))
        except AicrmError:
            break  # no room for another connection: fewer connections, same checks
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
                findings[index] = finding(session, migration, check)
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                return

    def helper(session: Connection, snapshot_id: str) -> None:
        try:
            with session.transaction():
                _read_only_snapshot(session, snapshot_id, statement_timeout)
                work(session)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    try:
        with conn.transaction():
            _read_only_snapshot(conn, None, statement_timeout)
            row = conn.execute(EXPORT_SNAPSHOT).fetchone()
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


def _read_only_snapshot(conn: Connection, snapshot_id: str | None, timeout: float) -> None:
    conn.execute(READ_ONLY_SNAPSHOT)
    if snapshot_id is not None:
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_id)))
    # The connections are the parallelism: serial plans, so that the checks and
    # pg_dump (beside them) share the cores instead of queueing for them. And room to
    # hash in memory: at 1M leads the checks' joins spilled 951 MB of temporary files
    # at the default 4MB, a burst of writes that every WAL fsync, so every commit of
    # the live application, waited behind (docs/online-migration.md).
    lock.settings(
        conn,
        statement_timeout=timeout,
        custom={"max_parallel_workers_per_gather": "0", "work_mem": CHECK_WORK_MEM},
    )


def _estimated_cost(conn: Connection, check: Check) -> float:
    plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) {}").format(trusted(check.sql))  # the shipped checks
    ).fetchone()
    try:
        return float(plan[0][0]["Plan"]["Total Cost"]) if plan else 0.0
    except (LookupError, TypeError, ValueError):
        return 0.0


def finding(conn: Connection, migration: Migration, check: Check) -> Finding:
    """One integrity check's finding: its count and up to SAMPLE_SIZE sample ids."""
    query = trusted(check.sql)  # trusted text: the shipped migration's own checks file
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


def verify(conn: Connection, migration: Migration, report: Report) -> None:
    """Run ``migration``'s verification checks into ``report``; raise
    :class:`VerificationFailed` (the caller's transaction rolls back) on a failure."""
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
        rows = conn.execute(trusted(check.sql)).fetchall()  # the shipped checks file
        failures = [", ".join(str(value) for value in row) for row in rows]
        results.append(
            CheckResult(migration.label, check.name, check.description, not rows, failures)
        )
    return results


__all__ = ["finding", "integrity", "verify", "verify_checks"]
