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

# A page of TIMELINE as the API sends it, built by PostgreSQL (aicrm.api._timelines): the
# JSON of Entry.to_dict() for each of the first %(size)s rows (TIMELINE runs with limit
# size + 1) and the next_cursor _encode() writes, as one UTF-8 document that Python
# passes on unparsed. {timeline} is TIMELINE, formatted. A moment is written as
# Python's isoformat() writes it (fraction only when there is one, always six digits):
# PostgreSQL's own JSON form trims trailing zeros, and the cursor must not change.
# encode() wraps base64 every 76 characters: the newlines go with the padding.
PAGE_JSON = """
SELECT convert_to(json_build_object(
    'items', coalesce(json_agg(p.item ORDER BY p.n) FILTER (WHERE p.n <= %(size)s), '[]'),
    'next_cursor', CASE WHEN count(*) > %(size)s THEN rtrim(translate(encode(convert_to(
        max('["' || p.iso || '", "' || p.entry || '", "' || p.key || '"]')
            FILTER (WHERE p.n = %(size)s), 'UTF8'
    ), 'base64'), E'+/\\n', '-_'), '=') END
)::text, 'UTF8')
FROM (
    SELECT t.n, t.iso, t.entry, t.key,
           CASE t.entry WHEN 'activity' THEN json_build_object(
               'kind', t.entry, 'id', t.key, 'at', t.iso, 'actor', t.actor, 'activity', t.data)
           ELSE json_build_object(
               'kind', t.entry, 'id', t.key::bigint, 'at', t.iso, 'actor', t.actor,
               'operation', t.data -> 'operation', 'changes', t.data -> 'changes')
           END AS item
    FROM (
        SELECT t.entry, t.key, t.actor, t.data,
               row_number() OVER (ORDER BY t.at DESC, t.entry DESC, t.key DESC) AS n,
               CASE WHEN t.at = date_trunc('second', t.at)
                    THEN to_char(t.at, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')
                    ELSE to_char(t.at, 'YYYY-MM-DD"T"HH24:MI:SS.USTZH:TZM') END AS iso
        FROM ({timeline}) t
    ) t
) p
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
    rows = conn.execute(query(column), parameters(table, key, cursor, limit)).fetchall()
    items = [Entry(*row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, _encode(items[-1]) if more and items else None)


def query(column: str) -> sql.Composed:
    """TIMELINE of the records whose ``column`` (lead_id, client_id) is ``%(record)s``."""
    return sql.SQL(TIMELINE).format(column=sql.Identifier(column))


def parameters(table: str, record_id: uuid.UUID, cursor: str | None, limit: int) -> dict[str, Any]:
    """The parameters of :func:`query` (and of PAGE_JSON, ``size``) for a page of
    ``limit`` entries after ``cursor``; :class:`InvalidInput` for a cursor aicrm did
    not produce."""
    at, entry, last = _decode(cursor) if cursor else (None, None, None)
    return {
        "record": record_id, "table": table, "at": at, "entry": entry, "key": last,
        "limit": limit + 1, "size": limit,
    }  # fmt: skip


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


__all__ = ["PAGE_JSON", "TIMELINE", "Entry", "parameters", "query", "timeline"]
