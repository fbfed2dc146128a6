"""The state of an unfinished online run: one row of ``aicrm_online_migration``.

Written in the same transaction as the work it records (a phase's last step, a
backfill batch), so a run killed at any point resumes exactly where it stopped.
The switch drops the table in the transaction that writes the ledger row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from aicrm.db import Connection

TABLE = "aicrm_online_migration"

CREATE = """
CREATE TABLE IF NOT EXISTS aicrm_online_migration (
    version integer PRIMARY KEY,
    name text NOT NULL,
    phase text NOT NULL,
    backfill_after uuid NULL,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_total bigint NULL,
    batch_size integer NULL,
    archive_orphans boolean NOT NULL,
    backup text NULL,
    -- with --compat-window: the columns old code sees, read before expand (compat)
    compat_columns jsonb NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
COMMENT = """
COMMENT ON TABLE aicrm_online_migration IS
    'aicrm: the phase and progress of an unfinished online migration (aicrm db migrate '
    '--online). Dropped by the run''s last transaction, with the ledger row written.'
"""
EXISTS = "SELECT to_regclass('aicrm_online_migration') IS NOT NULL"
SELECT = """
SELECT version, name, phase, backfill_after, rows_done, rows_total, batch_size,
       archive_orphans, backup, started_at, updated_at
FROM aicrm_online_migration ORDER BY version LIMIT 1
"""
INSERT = """
INSERT INTO aicrm_online_migration (version, name, phase, archive_orphans, backup, compat_columns)
VALUES (%s, %s, %s, %s, %s, %s)
"""
# Through to_jsonb: a run started by an aicrm without the column reads as NULL.
COMPAT_COLUMNS = """
SELECT to_jsonb(m) -> 'compat_columns' FROM aicrm_online_migration AS m WHERE version = %s
"""
SET_PHASE = """
UPDATE aicrm_online_migration SET phase = %s, backfill_after = NULL, rows_done = 0,
       rows_total = NULL, batch_size = NULL, updated_at = now()
WHERE version = %s
"""
SET_TOTAL = "UPDATE aicrm_online_migration SET rows_total = %s WHERE version = %s"
RECORD_BATCH = """
UPDATE aicrm_online_migration SET backfill_after = %s, rows_done = rows_done + %s,
       batch_size = %s, updated_at = now()
WHERE version = %s
"""
ELAPSED_MS = """
SELECT (extract(epoch FROM clock_timestamp() - started_at) * 1000)::integer
FROM aicrm_online_migration WHERE version = %s
"""
DROP = "DROP TABLE aicrm_online_migration"


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


def unfinished(conn: Connection) -> RunState | None:
    """The unfinished online run recorded in the database, if any (read-only)."""
    row = conn.execute(EXISTS).fetchone()
    if not (row and row[0]):
        return None
    found = conn.execute(SELECT).fetchone()
    if found is None:
        return None
    values: list[Any] = list(found)
    values[3] = None if values[3] is None else str(values[3])
    return RunState(*values)


def create(
    conn: Connection,
    version: int,
    name: str,
    phase: str,
    archive_orphans: bool,
    backup: str,
    compat_columns: dict[str, list[str]] | None = None,
) -> None:
    """Record a new online run at ``phase`` (inside the caller's transaction)."""
    conn.execute(CREATE)
    conn.execute(COMMENT)
    columns = None if compat_columns is None else Jsonb(compat_columns)
    conn.execute(INSERT, (version, name, phase, archive_orphans, backup, columns))


def compat_columns(conn: Connection, version: int) -> dict[str, list[str]] | None:
    """The columns old code sees, recorded when the run started with --compat-window."""
    row = conn.execute(COMPAT_COLUMNS, (version,)).fetchone()
    return None if row is None or row[0] is None else dict(row[0])


def set_phase(conn: Connection, version: int, phase: str) -> None:
    conn.execute(SET_PHASE, (phase, version))


def set_total(conn: Connection, version: int, total: int) -> None:
    conn.execute(SET_TOTAL, (total, version))


def record_batch(conn: Connection, version: int, last: str | None, done: int, size: int) -> None:
    conn.execute(RECORD_BATCH, (last, done, size, version))


def elapsed_ms(conn: Connection, version: int) -> int:
    row = conn.execute(ELAPSED_MS, (version,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def drop(conn: Connection) -> None:
    conn.execute(DROP)


__all__ = ["RunState", "unfinished"]
