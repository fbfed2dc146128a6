"""Lead statuses as data (migration 008, docs/custom-statuses.md): list, add, remove.

Each status has a category: ``open`` (the lead is being worked on), ``converted``
(only ``converted``, set by conversion) or ``lost`` (it left the funnel), and a
position that orders the funnel. The database enforces them (``leads.status``
references ``lead_statuses``); the checks here only give friendlier messages.
Before 008 the six defaults are the statuses, and :func:`list_statuses` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import Conflict, InvalidInput, NotFound, UsageError

DEFAULTS: tuple[tuple[str, str], ...] = (
    ("new", "open"),
    ("contacted", "open"),
    ("qualified", "open"),
    ("converted", "converted"),
    ("unqualified", "lost"),
    ("lost", "lost"),
)
CATEGORIES = ("open", "converted", "lost")
FIELD = {"field": "status"}  # the API names the field in its problem document
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

HAS_TABLE = "SELECT to_regclass('lead_statuses') IS NOT NULL"
LIST = "SELECT name, category, position, NULL FROM lead_statuses ORDER BY position"
LIST_COUNTED = """
SELECT s.name, s.category, s.position, coalesce(n.leads, 0)
FROM lead_statuses s
LEFT JOIN (SELECT status, count(*) AS leads FROM leads GROUP BY status) AS n ON n.status = s.name
ORDER BY s.position
"""
ONE = "SELECT name, category, position FROM lead_statuses WHERE name = %s"
LAST_OF = "SELECT max(position) FROM lead_statuses WHERE category = %s"
INSERT = "INSERT INTO lead_statuses (name, category, position) VALUES (%s, %s, %s)"
# Renumber in steps of ten, in the current order: one UPDATE (the position's
# uniqueness is checked at the end of the statement: DEFERRABLE).
RENUMBER = """
UPDATE lead_statuses s SET position = r.n * 10
FROM (SELECT name, row_number() OVER (ORDER BY position, name) AS n FROM lead_statuses) AS r
WHERE r.name = s.name AND s.position <> r.n * 10
"""
MOVE_LEADS = "UPDATE leads SET status = %s, updated_at = now() WHERE status = %s"
DELETE = "DELETE FROM lead_statuses WHERE name = %s"


@dataclass(frozen=True)
class Status:
    """A lead status: its category, its place in the funnel, and how many leads have it
    (``leads`` is None when not counted)."""

    name: str
    category: str
    position: int
    leads: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "category": self.category,
            "position": self.position,
            "leads": self.leads,
        }


@translated()
def has_table(conn: Connection) -> bool:
    """Whether the database keeps statuses as data (migration 008 applied)."""
    row = conn.execute(HAS_TABLE).fetchone()
    return bool(row and row[0])


@translated()
def list_statuses(conn: Connection, *, count: bool = False) -> list[Status]:
    """Every status in the funnel's order (the six defaults before 008); with
    ``count``, how many leads have each."""
    if not has_table(conn):
        return [Status(name, category, (i + 1) * 10) for i, (name, category) in enumerate(DEFAULTS)]
    rows = conn.execute(LIST_COUNTED if count else LIST).fetchall()
    return [
        Status(str(r[0]), str(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows
    ]


@translated()
def names(conn: Connection, *categories: str) -> list[str]:
    """The statuses of the given categories (all when none), in the funnel's order."""
    return [s.name for s in list_statuses(conn) if not categories or s.category in categories]


@translated()
def check_settable(conn: Connection, status: str) -> None:
    """Refuse a status a lead cannot be given directly: unknown ones, and
    ``converted`` (conversion sets it). Raises :class:`InvalidInput`."""
    if status == "converted":
        raise InvalidInput(
            "A lead's status becomes 'converted' only by converting it "
            "('aicrm leads convert'); it cannot be set directly.",
            details=FIELD,
        )
    known = names(conn, "open", "lost")
    if status not in known:
        raise InvalidInput(
            f"'{status}' is not a lead status; use one of {', '.join(known)} (or add it: "
            f"'aicrm statuses add {status} --category open').",
            details=FIELD,
        )


@translated()
def check_known(conn: Connection, status: str) -> None:
    """Refuse an unknown status (for filters). Raises :class:`InvalidInput`."""
    known = names(conn)
    if status not in known:
        raise InvalidInput(
            f"'{status}' is not a lead status; use one of {', '.join(known)}.", details=FIELD
        )


def _require_table(conn: Connection) -> None:
    if not has_table(conn):
        raise UsageError(
            "This database keeps the six default statuses only (before migration 008); run "
            "'aicrm db migrate' first."
        )


def _get(conn: Connection, name: str) -> Status:
    row = conn.execute(ONE, (name,)).fetchone()
    if row is None:
        raise NotFound(f"There is no status '{name}'; see 'aicrm statuses list'.")
    return Status(str(row[0]), str(row[1]), int(row[2]))


@translated()
def add_status(
    conn: Connection, name: str, category: str = "open", after: str | None = None
) -> Status:
    """Add a status of ``category`` (open or lost), placed after ``after`` (default:
    the last of its category). Call inside a transaction. Raises
    :class:`InvalidInput` for a bad name or category, :class:`Conflict` when it
    exists, :class:`NotFound` for an unknown ``after``."""
    _require_table(conn)
    if not NAME.match(name):
        raise InvalidInput(
            f"'{name}' is not a status name: use lower-case letters, digits and _, starting "
            "with a letter, at most 40 characters (e.g. demo_scheduled)."
        )
    if category not in ("open", "lost"):
        raise InvalidInput(
            f"A new status's category is open or lost, not '{category}' ('converted' is the "
            "one status of its category, set by conversion)."
        )
    if conn.execute(ONE, (name,)).fetchone() is not None:
        raise Conflict(f"The status '{name}' exists already; see 'aicrm statuses list'.")
    if after is not None:
        position = _get(conn, after).position
    else:
        row = conn.execute(LAST_OF, (category,)).fetchone()
        position = int(row[0]) if row and row[0] is not None else 0
    conn.execute(INSERT, (name, category, position * 10 + 5))  # beyond all, then renumbered
    conn.execute("UPDATE lead_statuses SET position = position * 10 WHERE name <> %s", (name,))
    conn.execute(RENUMBER)
    return _get(conn, name)


@translated()
def remove_status(conn: Connection, name: str, into: str) -> int:
    """Move the leads of status ``name`` to ``into`` and remove ``name``; returns how
    many leads moved (the history records each). aicrm's six statuses stay. Call
    inside a transaction. Raises :class:`InvalidInput` or :class:`NotFound`."""
    _require_table(conn)
    if name in dict(DEFAULTS):
        raise InvalidInput(
            f"'{name}' is one of aicrm's own statuses ({', '.join(dict(DEFAULTS))}) and stays."
        )
    _get(conn, name)
    if into == name:
        raise InvalidInput(f"Move the leads of '{name}' into another status, not into itself.")
    check_settable(conn, into)
    moved = conn.execute(MOVE_LEADS, (into, name)).rowcount
    conn.execute(DELETE, (name,))
    conn.execute(RENUMBER)
    return moved


__all__ = [
    "CATEGORIES",
    "DEFAULTS",
    "Status",
    "add_status",
    "check_known",
    "check_settable",
    "has_table",
    "list_statuses",
    "names",
    "remove_status",
]
