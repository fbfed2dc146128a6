"""``aicrm db …``: migrate, status, verify, downgrade, restore, stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from aicrm import config
from aicrm.cli import _output as output
from aicrm.db import embedded, target
from aicrm.errors import AicrmError, UsageError
from aicrm.migrate import Options, Report, backup, compat, runner, status_map
from aicrm.migrate.options import OnlineSettings

app = typer.Typer(
    help="Migrate, inspect, verify and restore the CRM database.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON document for scripts.")]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Run everything for real in a transaction, then roll it back."),
]
BackupDirOpt = Annotated[
    Path | None,
    typer.Option(help="Folder for the backup (default: BACKUP_DIR or ./backups)."),
]
LockTimeoutOpt = Annotated[
    float, typer.Option(min=0.01, help="Seconds to wait for each table lock before retrying.")
]
LockRetriesOpt = Annotated[
    int, typer.Option(min=0, max=20, help="Retries, with backoff, after a lock timeout.")
]
WaitOpt = Annotated[
    float, typer.Option("--wait", min=0.0, help="Seconds to wait for another runner to finish.")
]
StatementTimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="Seconds each of the run's own statements may take (SET LOCAL; 0: no bound).",
    ),
]
AllowDriftOpt = Annotated[
    bool, typer.Option(help="Carry on although an applied migration's file changed.")
]
MigrationsDirOpt = Annotated[
    Path | None,
    typer.Option(hidden=True, help="Use the migrations in this folder (for testing the engine)."),
]


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"'{text}' is not a migration version; use a number such as 001."
        ) from None


def _finish(report: Report, as_json: bool) -> None:
    if as_json:
        output.emit_json(report.to_dict())
    else:
        output.say(report.as_text())


def _run(action: str, as_json: bool, call: object) -> None:
    try:
        report = call()  # type: ignore[operator]
    except AicrmError as exc:
        partial = exc.details.get("report")
        if isinstance(partial, Report):
            _finish(partial, as_json)
        raise
    _finish(report, as_json)


@app.command()
def migrate(
    target_version: Annotated[
        str | None, typer.Option("--target", help="Stop at this version (default: the newest).")
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    allow_drift: AllowDriftOpt = False,
    archive_orphans: Annotated[
        bool,
        typer.Option(help="Archive and clear orphaned references instead of refusing (exit 3)."),
    ] = False,
    map_status: Annotated[
        list[str] | None,
        typer.Option(
            "--map-status",
            metavar="OLD=NEW",
            help="Give open leads with status OLD the status NEW on the way to 008 "
            "(repeatable; docs/custom-statuses.md).",
        ),
    ] = None,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Seconds to wait for each table lock before retrying "
            "(default: 5; with --online 0.05).",
        ),
    ] = None,
    lock_retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=100,
            help="Retries, with backoff, after a lock timeout (default: 3; with --online 30).",
        ),
    ] = None,
    wait: WaitOpt = 10.0,
    statement_timeout: StatementTimeoutOpt = 0.0,
    backup_dir: BackupDirOpt = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Apply 001 online: short transactions and a batched backfill while the CRM "
            "keeps working; resumable (see docs/online-migration.md).",
        ),
    ] = False,
    batch_seconds: Annotated[
        float,
        typer.Option(
            min=0.01, max=5.0, help="With --online: the time each backfill batch aims at."
        ),
    ] = 0.05,
    pause_ratio: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=100.0,
            help="With --online: after each backfill batch, pause this many times as long as "
            "the batch took (default 1: at most half the time busy, which keeps the "
            "application's latency on a loaded server; 0: flat out).",
        ),
    ] = 1.0,
    throttle: Annotated[
        float,
        typer.Option(min=0.0, help="With --online: seconds to pause after each backfill batch."),
    ] = 0.0,
    max_replica_lag: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="With --online: after each backfill batch, wait while a streaming standby "
            "lags more than SECONDS (needs pg_monitor to see them; docs/deployment.md).",
        ),
    ] = None,
    max_wal_rate: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            metavar="MB_PER_S",
            help="With --online: keep the backfill's WAL under MB_PER_S megabytes per second "
            "on average (the application's commits wait for the WAL before them).",
        ),
    ] = None,
    compat_window: Annotated[
        bool,
        typer.Option(
            "--compat-window",
            help="With 001: keep schema aicrm_compat_000, views of leads, clients and contacts "
            "as old code sees them (PostgreSQL 15+; see docs/compat-window.md).",
        ),
    ] = False,
    rebuild_dependents: Annotated[
        bool,
        typer.Option(
            "--rebuild-dependents",
            help="With --compat-window: recreate your views over the dropped columns on the "
            "compatibility views, and point such functions' search_path at them.",
        ),
    ] = False,
    migrations_dir: MigrationsDirOpt = None,
) -> None:
    """Apply pending migrations: checks, verified backup, one transaction, verification.

    With --online, 001 is applied in phases of short transactions (expand, batched
    backfill, contract); a run that was interrupted is resumed by the next migrate.

    Exit codes: 0 applied or nothing to do; 1 failed and rolled back; 2 usage,
    prerequisite, connection or lock error; 3 integrity check refused, or objects use
    the columns the migration drops (the report names each), nothing changed.
    """
    settings = None
    if (max_replica_lag is not None or max_wal_rate is not None) and not online:
        raise UsageError(
            "--max-replica-lag and --max-wal-rate pace the online backfill: add --online (the "
            "transactional mode writes in one transaction, which no throttle can split)."
        )
    if online:
        settings = OnlineSettings(
            batch_seconds=batch_seconds,
            pause_ratio=pause_ratio,
            throttle=throttle,
            max_replica_lag=max_replica_lag,
            max_wal_rate=None if max_wal_rate is None else max_wal_rate * 1_000_000,
        )
        settings.lock_timeout = lock_timeout or settings.lock_timeout
        settings.lock_retries = settings.lock_retries if lock_retries is None else lock_retries
    with output.progress(not as_json) as spinner:
        step = spinner if not online or as_json else output_lines(spinner)
        options = Options(
            target_version=_version(target_version),
            dry_run=dry_run,
            allow_drift=allow_drift,
            archive_orphans=archive_orphans,
            map_status=status_map.parse(map_status or []),
            lock_timeout=5.0 if lock_timeout is None else lock_timeout,
            lock_retries=3 if lock_retries is None else lock_retries,
            runner_wait=wait,
            statement_timeout=statement_timeout,
            backup_dir=backup_dir or config.backup_dir(),
            migrations_dir=migrations_dir,
            progress=step,
            online=settings,
            compat_window=compat_window,
            rebuild_dependents=rebuild_dependents,
        )
        _run("migrate", as_json, lambda: runner.migrate(options))


def output_lines(spinner: Callable[[str], None]) -> Callable[[str], None]:
    """An online run's progress: the spinner on a terminal, else a line on stderr at
    most every two seconds (the backfill's rows done, rate and time left)."""
    if output.stderr.is_terminal:
        return spinner
    last = [0.0]

    def say(text: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 2.0 or not text.startswith("backfill"):
            last[0] = now
            output.stderr.print(f"online: {text}", highlight=False, markup=False)

    return say


@app.command()
def downgrade(
    version: Annotated[str, typer.Argument(help="The version to go back to, e.g. 000.")],
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    allow_drift: AllowDriftOpt = False,
    lock_timeout: LockTimeoutOpt = 5.0,
    lock_retries: LockRetriesOpt = 3,
    wait: WaitOpt = 10.0,
    statement_timeout: StatementTimeoutOpt = 0.0,
    backup_dir: BackupDirOpt = None,
    migrations_dir: MigrationsDirOpt = None,
) -> None:
    """Go back to an earlier version with the migrations' down files (backs up first)."""
    wanted = _version(version)
    assert wanted is not None
    with output.progress(not as_json) as step:
        options = Options(
            dry_run=dry_run,
            allow_drift=allow_drift,
            lock_timeout=lock_timeout,
            lock_retries=lock_retries,
            runner_wait=wait,
            statement_timeout=statement_timeout,
            backup_dir=backup_dir or config.backup_dir(),
            migrations_dir=migrations_dir,
            progress=step,
        )
        _run("downgrade", as_json, lambda: runner.downgrade(wanted, options))


@app.command()
def status(as_json: JsonOpt = False, migrations_dir: MigrationsDirOpt = None) -> None:
    """Show the database used, its version, pending migrations and drift."""
    info = runner.status(migrations_dir=migrations_dir)
    if as_json:
        output.emit_json(info.to_dict())
        return
    lines = [
        f"database: {info.database}",
        f"server:   PostgreSQL {info.server_version}",
        f"version:  {_label(info.version)}"
        + (
            " (original schema, not yet recorded: the next migrate records baseline 000)"
            if info.shape == "original"
            else ""
        ),
    ]
    for entry in info.applied:
        what = "applied" if entry.kind == "applied" else "recorded as baseline"
        lines.append(
            f"  {what} {entry.version:03d}_{entry.name} at "
            f"{entry.applied_at:%Y-%m-%d %H:%M:%S %Z} by {entry.applied_by} in "
            f"{entry.duration_ms} ms"
        )
    lines.append(f"pending:  {', '.join(info.pending) or 'none'}")
    lines.append(f"drift:    {', '.join(info.drift) or 'none'}")
    if info.online is not None:
        lines.append(
            f"online:   {info.online['text']}; 'aicrm db migrate' resumes it, "
            "'aicrm db downgrade 000' undoes it"
        )
    for window in info.compat:
        used = window["used_by"]
        lines.append(
            f"compat:   window {window['schema']} open (old code: "
            f"options=-csearch_path={window['schema']},public); used by "
            + (", ".join(str(u) for u in used) if isinstance(used, list) and used else "nothing")
            + "; 'aicrm db compat close' ends it"
        )
    output.say("\n".join(lines))


def _label(version: int) -> str:
    return "empty" if version < 0 else f"{version:03d}"


@app.command()
def verify(as_json: JsonOpt = False, migrations_dir: MigrationsDirOpt = None) -> None:
    """Re-run the verification checks of every applied migration (exit 0 ok, 1 failed)."""
    where = target()
    results = runner.verify(where, migrations_dir=migrations_dir)
    ok = all(r.ok for r in results)
    if as_json:
        output.emit_json(
            {"database": where.describe(), "ok": ok, "checks": [r.__dict__ for r in results]}
        )
    else:
        output.say(f"database: {where.describe()}")
        for r in results:
            tail = "" if r.ok else f": {', '.join(r.failures[:10])}"
            output.say(f"  {'ok    ' if r.ok else 'FAILED'} {r.migration}: {r.description}{tail}")
    if not ok:
        raise typer.Exit(1)


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A backup_before_migration_*.sql file.")],
    into: Annotated[str, typer.Option("--into", help="Database to restore into (new or empty).")],
) -> None:
    """Restore a backup into a new or empty database on the same server."""
    where = target()
    with output.progress() as step:
        step(f"restoring {file.name} into {into}")
        backup.restore(where, file, into)
    output.say(f"restored {file} into database {into} on {where.describe()}")


@app.command()
def stop() -> None:
    """Stop the embedded PostgreSQL server (it starts again on the next command)."""
    settings = config.resolve()
    if not settings.embedded:
        raise UsageError(
            f"The database comes from {settings.source}, not the embedded server; "
            "there is nothing for aicrm to stop."
        )
    stopped = embedded.stop(settings.home)
    home = embedded.pgdata(settings.home)
    output.say(f"stopped the embedded server in {home}" if stopped else f"not running ({home})")


@app.command()
def grant(
    role: Annotated[str, typer.Argument(help="The role to grant to (it must exist).")],
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            help="read, write or admin: what aicrm's CLI, API and MCP need at that scope.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Grant a role what aicrm needs at a scope (run as the tables' owner; idempotent).

    Exit codes: 0 granted (or held already); 2 unknown role or scope, database not
    migrated, or the connected user may not grant (nothing was granted).
    """
    from aicrm.db import connect, grants

    if scope not in grants.SCOPES:
        raise UsageError(f"'{scope}' is not a scope; use one of {', '.join(grants.SCOPES)}.")
    where = target()
    with connect(where, autocommit=True, application_name="aicrm db grant") as conn:
        done = grants.grant(conn, role, scope)
    if as_json:
        output.emit_json({"role": role, "scope": scope, "privileges": [g.to_dict() for g in done]})
        return
    if not done:
        output.say(f"{role} is a superuser: it holds every privilege; nothing to grant.")
        return
    for g in done:
        output.say(f"{'granted' if g.granted else 'held   '} {g.privilege} on {g.on}")
    granted = sum(g.granted for g in done)
    output.say(
        f"{role}: {granted} privilege(s) granted, {len(done) - granted} held already "
        f"(scope {scope}) on {where.describe()}"
    )


compat_app = typer.Typer(
    help="The compatibility window that keeps old application code working.",
    no_args_is_help=True,
)
app.add_typer(compat_app, name="compat")


@compat_app.command("close")
def compat_close(
    schema: Annotated[
        str | None, typer.Argument(help="The window's schema [default: the one open].")
    ] = None,
) -> None:
    """End the compatibility window: drop its schema and views.

    Refuses (exit 3, nothing changed) while views or functions outside it still use it,
    naming them; exit 2 when no window is open.
    """
    closed = compat.close(target(), schema)
    output.say(f"closed the compatibility window {closed}")
