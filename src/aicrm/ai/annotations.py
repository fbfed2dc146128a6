"""AI annotations on leads, clients and contacts: one structure, merged in SQL.

``ai_annotations`` holds one entry per *annotator* (a name such as
``lead_scoring`` or ``email_classifier``)::

    {
      "lead_scoring": {
        "model": "lead_scoring",              # what produced it
        "version": "ls-20260301-120000-3f2b", # which version of it
        "produced_at": "2026-03-01T12:00:00+00:00",
        "confidence": 0.87,                   # 0..1, or null
        "values": {"score": 0.42, "tier": "B", ...}
      },
      "email_classifier": {...}
    }

Every write goes through the SQL function ``aicrm_annotate`` (migration 004) in a
single ``UPDATE … SET ai_annotations = aicrm_annotate(ai_annotations, …)``: the
database merges the entry into the row's current value under the row lock, so two
annotators writing at the same time both keep their keys (under READ COMMITTED the
second UPDATE re-reads the row the first one committed). Nothing here reads the
JSON into Python to write it back. By default ``values`` are merged key by key
into the annotator's previous values; ``replace=True`` replaces them.

Annotating does not touch ``updated_at`` (optimistic locking by people editing
the record must not fail because a model wrote a score) and, like every ai_*
column, is not recorded in ``crm_history`` unless ``aicrm.history_ai`` is on.
Converted leads accept annotations: their ai_* columns stay writable.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from aicrm.crm import ids, session
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, NotFound, UsageError

TABLES = ("leads", "clients", "contacts")
ANNOTATOR = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")

UPDATE_ONE = sql.SQL(
    "UPDATE {table} SET ai_annotations = aicrm_annotate(ai_annotations, %s, %s, %s) "
    "WHERE id = %s RETURNING ai_annotations"
)
UPDATE_MANY = sql.SQL(
    "UPDATE {table} t SET ai_annotations = aicrm_annotate(t.ai_annotations, %s, s.entry, %s) "
    "FROM {staging} s WHERE t.id = s.id"
)
REMOVE_ONE = sql.SQL(
    "UPDATE {table} SET ai_annotations = ai_annotations - %s "
    "WHERE id = %s AND ai_annotations ? %s RETURNING ai_annotations"
)


@dataclass(frozen=True)
class Annotation:
    """One annotator's entry, as stored."""

    annotator: str
    model: str
    version: str
    produced_at: str
    values: dict[str, Any]
    confidence: float | None

    def entry(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "produced_at": self.produced_at,
            "confidence": self.confidence,
            "values": self.values,
        }

    @classmethod
    def parse(cls, annotator: str, entry: Mapping[str, Any]) -> Annotation:
        values = entry.get("values")
        confidence = entry.get("confidence")
        return cls(
            annotator,
            str(entry.get("model", "")),
            str(entry.get("version", "")),
            str(entry.get("produced_at", "")),
            dict(values) if isinstance(values, Mapping) else {},
            float(confidence) if isinstance(confidence, int | float) else None,
        )


def entry(
    *,
    model: str,
    version: str,
    values: Mapping[str, Any],
    confidence: float | None = None,
    produced_at: datetime | None = None,
) -> dict[str, Any]:
    """An annotator entry in the documented structure (checked)."""
    if confidence is not None and not 0.0 <= confidence <= 1.0:
        raise InvalidInput(f"An annotation's confidence must be between 0 and 1, not {confidence}.")
    if not isinstance(values, Mapping):
        raise InvalidInput("An annotation's values must be a JSON object.")
    moment = produced_at or datetime.now(UTC)
    return {
        "model": model,
        "version": version,
        "produced_at": moment.isoformat(),
        "confidence": confidence,
        "values": dict(values),
    }


def _table(table: str) -> sql.Identifier:
    if table not in TABLES:
        raise InvalidInput(f"Annotations exist on {', '.join(TABLES)}, not on '{table}'.")
    return sql.Identifier(table)


def _annotator(name: str) -> str:
    if not ANNOTATOR.match(name):
        raise InvalidInput(
            f"'{name}' is not an annotator name: use lowercase letters, digits, '_', '-' or "
            "'.', starting with a letter (at most 64 characters)."
        )
    return name


@translated()
def require_schema(conn: Connection) -> None:
    """Refuse clearly when migration 004 (the annotation function) is missing."""
    row = conn.execute(
        "SELECT to_regprocedure('aicrm_annotate(jsonb, text, jsonb, boolean)') IS NOT NULL, "
        "to_regclass('ai_models') IS NOT NULL"
    ).fetchone()
    if row is None or not (row[0] and row[1]):
        raise UsageError(
            "This database has no AI schema yet (migration 004_ai); run 'aicrm db migrate' first."
        )


@translated()
def annotate(
    conn: Connection,
    table: str,
    record_id: str | uuid.UUID,
    annotator: str,
    *,
    model: str,
    version: str,
    values: Mapping[str, Any],
    confidence: float | None = None,
    produced_at: datetime | None = None,
    replace: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Write ``annotator``'s entry on one record, merged in SQL; returns the record's
    whole ``ai_annotations`` after the write. :class:`NotFound` for an unknown id."""
    key = ids.parse(record_id, f"{table[:-1]} id")
    target = _table(table)
    name = _annotator(annotator)
    data = entry(
        model=model, version=version, values=values, confidence=confidence,
        produced_at=produced_at,
    )  # fmt: skip
    with session.transaction(conn, actor):
        require_schema(conn)
        row = conn.execute(
            UPDATE_ONE.format(table=target), (name, Jsonb(data), not replace, key)
        ).fetchone()
    if row is None:
        raise NotFound(f"No {table[:-1]} has id {key}.")
    result: dict[str, Any] = row[0]
    return result


@translated()
def annotate_many(
    conn: Connection,
    table: str,
    annotator: str,
    entries: Iterable[tuple[str | uuid.UUID, Mapping[str, Any]]],
    *,
    replace: bool = False,
    actor: str | None = None,
) -> int:
    """Write many records' entries of one annotator: COPY into a staging table, then
    one UPDATE. ``entries`` pairs a record id with an entry from :func:`entry`.
    Returns how many records were annotated (unknown ids are skipped)."""
    target = _table(table)
    name = _annotator(annotator)
    buffer = io.StringIO()
    for record_id, data in entries:
        key = ids.parse(record_id, f"{table[:-1]} id")
        text = json.dumps(data, default=str)
        buffer.write(f"{key}\t{_copy_text(text)}\n")
    with session.transaction(conn, actor):
        require_schema(conn)
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS aicrm_annotation_staging "
            "(id uuid NOT NULL, entry jsonb NOT NULL) ON COMMIT DROP"
        )
        with conn.cursor().copy("COPY aicrm_annotation_staging (id, entry) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        done = conn.execute(
            UPDATE_MANY.format(table=target, staging=sql.Identifier("aicrm_annotation_staging")),
            (name, not replace),
        ).rowcount
    return done


def _copy_text(text: str) -> str:
    """Escape a value for COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@translated()
def remove(
    conn: Connection,
    table: str,
    record_id: str | uuid.UUID,
    annotator: str,
    *,
    actor: str | None = None,
) -> bool:
    """Remove one annotator's entry (the others stay); False when it had none."""
    key = ids.parse(record_id, f"{table[:-1]} id")
    target = _table(table)
    with session.transaction(conn, actor):
        row = conn.execute(REMOVE_ONE.format(table=target), (annotator, key, annotator)).fetchone()
        if row is None:
            exists = conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(target), (key,)
            ).fetchone()
            if exists is None:
                raise NotFound(f"No {table[:-1]} has id {key}.")
            return False
    return True


@translated()
def read(conn: Connection, table: str, record_id: str | uuid.UUID) -> dict[str, Annotation]:
    """Every annotator's entry on one record; :class:`NotFound` for an unknown id."""
    key = ids.parse(record_id, f"{table[:-1]} id")
    with session.transaction(conn):
        row = conn.execute(
            sql.SQL("SELECT ai_annotations FROM {} WHERE id = %s").format(_table(table)), (key,)
        ).fetchone()
    if row is None:
        raise NotFound(f"No {table[:-1]} has id {key}.")
    found = row[0] if isinstance(row[0], dict) else {}
    return {
        name: Annotation.parse(name, value)
        for name, value in found.items()
        if isinstance(value, Mapping)
    }
