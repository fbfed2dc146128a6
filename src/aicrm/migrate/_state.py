"""What version a database is at, what is pending, and whether files drifted.

Read-only: nothing here writes. A database without a ledger is either empty
(everything is pending), or holds the original schema (recorded as baseline 000
by the next run), or is refused as unrecognised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aicrm.db import Connection
from aicrm.db.script import trusted
from aicrm.errors import UnrecognisedDatabase
from aicrm.migrate import _ledger as ledger
from aicrm.migrate.loader import Migration

USER_RELATIONS = """
SELECT c.relname FROM pg_class AS c
WHERE c.relnamespace = current_schema()::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relname <> 'aicrm_schema_migrations'
ORDER BY c.relname
"""


@dataclass(frozen=True)
class Drift:
    version: int
    name: str
    recorded: str
    current: str | None  # None: the file is gone


@dataclass
class State:
    """``shape`` is ``ledger``, ``empty`` or ``original`` (baseline to record)."""

    shape: str
    version: int  # -1 when empty
    applied: list[ledger.Entry]
    pending: list[Migration]
    drift: list[Drift] = field(default_factory=list)


def inspect(conn: Connection, migrations: list[Migration]) -> State:
    """Find the database's version and pending migrations.

    Raises :class:`UnrecognisedDatabase` when there is no ledger and the tables
    are neither absent nor the original schema.
    """
    entries = ledger.applied(conn)
    if entries is not None:
        version = max((entry.version for entry in entries), default=-1)
        by_version = {m.version: m for m in migrations}
        drift = []
        for entry in entries:
            migration = by_version.get(entry.version)
            current = migration.checksum if migration else None
            accepted = migration is not None and migration.accepts(entry.checksum)
            if not accepted and entry.kind == "applied":
                drift.append(Drift(entry.version, entry.name, entry.checksum, current))
        pending = [m for m in migrations if m.version > version]
        return State("ledger", version, entries, pending, drift)

    relations = [row[0] for row in conn.execute(USER_RELATIONS).fetchall()]
    if not relations:
        return State("empty", -1, [], list(migrations))
    baseline = migrations[0]
    missing = _baseline_missing(conn, baseline)
    if not missing:
        return State("original", 0, [], [m for m in migrations if m.version > 0])
    shown = ", ".join(relations[:20]) + (" …" if len(relations) > 20 else "")
    raise UnrecognisedDatabase(
        f"The database has no aicrm ledger and is neither empty nor the original CRM "
        f"schema: found {len(relations)} table(s)/view(s) ({shown}) but not "
        f"{', '.join(missing[:10])}. Point aicrm at the CRM's database, or at an empty one."
    )


def _baseline_missing(conn: Connection, baseline: Migration) -> list[str]:
    missing: list[str] = []
    for check in baseline.checks_of("baseline"):
        missing.extend(str(row[0]) for row in conn.execute(trusted(check.sql)).fetchall())
    return missing
