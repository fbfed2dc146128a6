"""The migration engine: numbered SQL files, a ledger, checks, backup, runner, report.

One engine, two ways to apply a migration: in one transaction (:mod:`.runner`), or
online in phases (:mod:`.online`, from the migration's online form). Modules:
``loader`` (the file format), ``state`` and ``ledger`` (where a database stands),
``preflight`` (prerequisites, integrity checks and backup), ``checks``, ``lock``
(every lock and retry), ``backfill`` and ``online_state`` (the online mode's
parts), ``report``. See docs/migration-engine.md.
"""

from aicrm.migrate._report import Report
from aicrm.migrate.options import OnlineSettings, Options
from aicrm.migrate.runner import Status, downgrade, migrate, status, verify

__all__ = [
    "OnlineSettings",
    "Options",
    "Report",
    "Status",
    "downgrade",
    "migrate",
    "status",
    "verify",
]
