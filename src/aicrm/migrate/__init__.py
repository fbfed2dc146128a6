"""The migration engine: numbered SQL files, a ledger, checks, backup, runner, report."""

from aicrm.migrate.report import Report
from aicrm.migrate.runner import Options, Status, downgrade, migrate, status, verify

__all__ = ["Options", "Report", "Status", "downgrade", "migrate", "status", "verify"]
