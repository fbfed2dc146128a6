"""The ledger: which migrations are applied, with the checksum of each file.

It is written in the same transaction as the changes it records, so a migration
and its row commit or vanish together.
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime

from aicrm.db import Connection

TABLE = "aicrm_schema_migrations"

CREATE = """
CREATE TABLE IF NOT EXISTS aicrm_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    kind text NOT NULL DEFAULT 'applied' CHECK (kind IN ('applied', 'baseline')),
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL CHECK (duration_ms >= 0),
    applied_by text NOT NULL
)
"""

SELECT_APPLIED = """
SELECT version, name, checksum, kind, applied_at, duration_ms, applied_by
FROM aicrm_schema_migrations ORDER BY version
"""

INSERT = """
INSERT INTO aicrm_schema_migrations (version, name, checksum, kind, duration_ms, applied_by)
VALUES (%s, %s, %s, %s, %s, %s)
"""

DELETE = "DELETE FROM aicrm_schema_migrations WHERE version = %s"


@dataclass(frozen=True)
class Entry:
    version: int
    name: str
    checksum: str
    kind: str
    applied_at: datetime
    duration_ms: int
    applied_by: str


def exists(conn: Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
    return bool(row and row[0])


def applied(conn: Connection) -> list[Entry] | None:
    """The ledger's rows by version, or None when there is no ledger yet."""
    if not exists(conn):
        return None
    return [Entry(*row) for row in conn.execute(SELECT_APPLIED).fetchall()]


def record(
    conn: Connection, version: int, name: str, checksum: str, duration_ms: int, kind: str
) -> None:
    conn.execute(CREATE)
    conn.execute(INSERT, (version, name, checksum, kind, duration_ms, actor(conn)))


def remove(conn: Connection, version: int) -> None:
    conn.execute(DELETE, (version,))


def actor(conn: Connection) -> str:
    """'os_user@host as db_user': who ran it, from both sides."""
    try:
        os_user = getpass.getuser()
    except Exception:  # no login name in some containers
        os_user = "unknown"
    row = conn.execute("SELECT current_user").fetchone()
    db_user = row[0] if row else "unknown"
    return f"{os_user}@{socket.gethostname()} as {db_user}"
