"""One timeline of a lead or a client: its activities and its field history together,
newest first, a page at a time (issue #17).

Entries are ordered by their moment (an activity's ``created_at``, a change's
``changed_at``), then kind, then id; the cursor is that triple, so a page never
repeats or skips an entry however the two sources interleave. Each source is read
through its own index (``activities_lead_idx`` / ``activities_client_idx`` and
``crm_history_row_idx``), at most one page of each.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from aicrm.crm import ids, store
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client, Lead, Record
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput

TABLES: dict[str, tuple[type[Record], str]] = {
    "leads": (Lead, "lead_id"),
    "clients": (Client, "client_id"),
}
MAX_PAGE = 500

# {column} is lead_id or client_id. History ids are zero-padded so that their text
# sorts as their numbers do; a uuid's text sorts as the uuid does.
TIMELINE = """
WITH a AS (
    SELECT 'activity'::text AS entry, a.id::text AS key, a.created_at AS at, a.author AS actor,
           to_jsonb(a) AS data
    FROM activities a
    WHERE a.{column} = %(record)s
      AND (%(at)s::timestamptz IS NULL
           OR (a.created_at, 'activity'::text, a.id::text)
              < (%(at)s, %(entry)s::text, %(key)s::text))
    ORDER BY a.created_at DESC, a.id DESC
    LIMIT %(limit)s
), h AS (
    SELECT 'history'::text AS entry, lpad(h.id::text, 20, '0') AS key, h.changed_at AS at,
           h.actor, jsonb_build_object('operation', h.operation, 'changes', h.changes) AS data
    FROM crm_history h
    WHERE h.table_name = %(table)s AND h.row_id = %(record)s
      AND (%(at)s::timestamptz IS NULL
           OR (h.changed_at, 'history'::text, lpad(h.id::text, 20, '0'))
              < (%(at)s, %(entry)s::text, %(key)s::text))
    ORDER BY h.changed_at DESC, h.id DESC
    LIMIT %(limit)s
)
SELECT entry, key, at, actor, data FROM (SELECT * FROM a UNION ALL SELECT * FROM h) t
ORDER BY at DESC, entry DESC, key DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Entry:
    """One entry: ``kind`` 'activity' (``data`` is the activity) or 'history'
    (``data`` holds ``operation`` and ``changes``, as :mod:`aicrm.crm.history`)."""

    kind: str
    id: str
    at: datetime
    actor: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "id": self.id if self.kind == "activity" else int(self.id),
            "at": self.at.isoformat(),
            "actor": self.actor,
        }
        if self.kind == "activity":
            out["activity"] = self.data
        else:
            out["operation"] = self.data["operation"]
            out["changes"] = self.data["changes"]
        return out


@translated()
def timeline(
    conn: Connection,
    table: str,
    record_id: str | uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Entry]:
    """A page of the timeline of a lead or client (``table`` 'leads' or 'clients'),
    newest first. Raises :class:`NotFound` for an unknown record and
    :class:`InvalidInput` for another table, a page size outside 1..500 or a cursor
    aicrm did not produce."""
    if table not in TABLES:
        raise InvalidInput(f"Only leads and clients have a timeline, not {table}.")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"The page size must be between 1 and {MAX_PAGE}.")
    cls, column = TABLES[table]
    key = ids.parse(record_id, f"{table[:-1]} id")
    store.get(conn, cls, key)  # NotFound when there is none
    at, entry, last = _decode(cursor) if cursor else (None, None, None)
    query = sql.SQL(TIMELINE).format(column=sql.Identifier(column))
    params = {
        "record": key, "table": table, "at": at, "entry": entry, "key": last, "limit": limit + 1,
    }  # fmt: skip
    rows = conn.execute(query, params).fetchall()
    items = [Entry(*row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, _encode(items[-1]) if more and items else None)


def _encode(entry: Entry) -> str:
    raw = json.dumps([entry.at.isoformat(), entry.kind, entry.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> tuple[datetime, str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, kind, key = json.loads(base64.urlsafe_b64decode(padded))
        if kind not in ("activity", "history") or not isinstance(key, str):
            raise ValueError(kind)
        return datetime.fromisoformat(at), kind, key
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput(
            "The cursor is not one aicrm produced; pass the next_cursor of a previous page."
        ) from None


__all__ = ["Entry", "timeline"]
