"""Everything before the first change: prerequisites, integrity checks, backup.

The integrity checks and the backup are both read-only, so they run side by side:
pg_dump starts once the prerequisites pass, while the checks run (on several
connections sharing one snapshot). The order of the outcomes is the seed's: a
refusing check discards the backup (pg_dump stopped, its file deleted), a failed
backup stops the run before any change, and the changes start only after both have
succeeded (docs/backup-alongside-checks.md). The transactional and the online mode
both start here.
"""

from __future__ import annotations

import time

from aicrm.db import Connection, Target
from aicrm.migrate import _checks as checks, _prerequisites as prerequisites, backup
from aicrm.migrate._report import Report
from aicrm.migrate.loader import Migration
from aicrm.migrate.options import Options


def run(
    conn: Connection,
    where: Target,
    plan: list[Migration],
    options: Options,
    report: Report,
    *,
    check_first: bool,
    take_backup: bool,
    gentle: bool = False,
) -> None:
    """Check the prerequisites for ``plan``'s tables, then run the first migration's
    integrity checks (when ``check_first``) alongside the backup (when
    ``take_backup``); ``report.backup`` holds the verified backup on return.

    ``gentle`` (the online mode, whose pre-flight holds no lock, so its length costs
    nothing): the checks on one connection, then the backup, one at a time, so that
    the live application keeps the cores (docs/online-migration.md).

    Raises the refusal or the failure of whichever comes first in the seed's order;
    a refused or failed run leaves no backup behind."""
    options.say("checking prerequisites")
    mark = time.monotonic()
    report.prerequisites = prerequisites.check(
        conn,
        where,
        tables=sorted({table for m in plan for table in m.locks}),
        backup_dir=options.backup_dir if take_backup else None,
    )
    report.timings["prerequisites"] = time.monotonic() - mark
    running = None
    if take_backup and not gentle:
        options.say(f"backing up to {options.backup_dir} (pg_dump, alongside the checks)")
        running = backup.start(where, options.backup_dir)
    try:
        if plan and check_first:
            # The first migration's checks run now, against the database as it is;
            # later ones run inside the transaction, against what came before them.
            options.say(f"integrity checks of {plan[0].label}")
            mark = time.monotonic()
            checks.integrity(
                conn,
                plan[0],
                report,
                archive_orphans=options.archive_orphans,
                where=where,
                connections=1 if gentle else options.check_connections,
                statement_timeout=options.statement_timeout,
                backup_running=running,
            )
            report.timings["integrity_checks"] = time.monotonic() - mark
    except BaseException:
        if running is not None:
            running.discard()  # a refused or failed run leaves no backup behind
        raise
    if take_backup and gentle:
        options.say(f"backing up to {options.backup_dir} (pg_dump, after the checks)")
        running = backup.start(where, options.backup_dir)
    if running is not None:
        mark = time.monotonic()
        report.backup = running.wait()
        report.timings["backup_after_checks"] = time.monotonic() - mark


__all__ = ["run"]
