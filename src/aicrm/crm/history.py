"""Temporal tracking: a record's timeline, and the record as it was at a moment.

The history is written by the database's own triggers (migration 002). Columns it
does not track (ai_* and updated_at, by default) are shown with their current
values in :func:`as_of`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import sql

from aicrm.crm import ids, store
from aicrm.crm.records import Record
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound

R = TypeVar("R", bound=Record)

TIMELINE = """
SELECT id, operation, changed_at, actor, changes FROM crm_history
WHERE table_name = %s AND row_id = %s ORDER BY changed_at, id
"""


@dataclass(frozen=True)
class Entry:
    """One change: for updates, ``changes`` maps each column to ``[old, new]``;
    for inserts and deletes, to the row's values."""

    id: int
    operation: str
    changed_at: datetime
    actor: str
    changes: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "operation": self.operation,
            "changed_at": self.changed_at.isoformat(),
            "actor": self.actor,
            "changes": self.changes,
        }


@translated()
def timeline(conn: Connection, table: str, record_id: str | uuid.UUID) -> list[Entry]:
    """Every recorded change of one record, oldest first (may be empty for records
    older than the history)."""
    key = ids.parse(record_id)
    return [Entry(*row) for row in conn.execute(TIMELINE, (table, key)).fetchall()]


@translated()
def as_of(conn: Connection, cls: type[R], record_id: str | uuid.UUID, moment: datetime) -> R:
    """The record as it was at ``moment``, rebuilt from its current values (or its
    deleted values) by undoing the changes recorded after ``moment``.

    Raises :class:`NotFound` when the record did not exist at that moment.
    """
    key = ids.parse(record_id)
    entries = timeline(conn, cls.TABLE, key)
    current = sql.SQL("SELECT to_jsonb(t) FROM (SELECT {} FROM {} WHERE id = %s) t").format(
        store.columns(cls), sql.Identifier(cls.TABLE)
    )
    row = conn.execute(current, (key,)).fetchone()
    values: dict[str, Any] | None = row[0] if row else None
    if values is None:
        deleted = [e for e in entries if e.operation == "delete"]
        if not deleted:
            raise NotFound(f"No {cls.TABLE[:-1]} has id {key}, now or in its history.")
        values = dict(deleted[-1].changes)
    for entry in reversed(entries):
        if entry.changed_at <= moment:
            break
        if entry.operation == "insert":
            raise NotFound(f"The {cls.TABLE[:-1]} {key} did not exist yet at {moment.isoformat()}.")
        if entry.operation == "update":
            for column, (old, _new) in entry.changes.items():
                values[column] = old
    created = values.get("created_at")
    if created is not None and str(created) > moment.isoformat() and not entries:
        raise NotFound(f"The {cls.TABLE[:-1]} {key} did not exist yet at {moment.isoformat()}.")
    # updated_at is not in the history: it is the time of the last change at or before
    # the moment; a record older than its history keeps its own when that is not later.
    then = [e.changed_at for e in entries if e.changed_at <= moment]
    updated = values.get("updated_at")
    if then:
        values["updated_at"] = then[-1].isoformat()
    elif updated is not None and datetime.fromisoformat(str(updated)) > moment:
        values["updated_at"] = values.get("created_at") or updated
    return _from_json(cls, values)


def _from_json(cls: type[R], values: dict[str, Any]) -> R:
    converted: list[Any] = []
    for column in cls.COLUMNS:
        value = values.get(column)
        if value is not None and (column == "id" or column.endswith("_id")):
            value = uuid.UUID(value)
        elif value is not None and (column.endswith("_at") or column.endswith("_date")):
            value = datetime.fromisoformat(value)
        elif column in ("ai_annotations", "attributes") and value is None:
            value = {}
        converted.append(value)
    record: R = cls.from_row(tuple(converted))
    return record
