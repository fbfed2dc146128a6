"""Converted and lost leads: no chance to convert is left to score, so none is written.

A lead whose status is of category ``converted`` or ``lost`` (``lead_statuses``,
migration 008) has an outcome, not a probability. When scoring reaches one (it was
named, or ``include_converted``, or it still carries a score from when it was open),
:func:`write_outcomes` clears its ``ai_score`` and replaces the ``lead_scoring``
entry's values by what happened: ``{"outcome": "converted", "status": "converted",
"closed_at": "2026-03-04T10:00:00Z", "summary": "converted on 2026-03-04", …}``.
The date is the conversion's (``conversion_date``) or, for a lost lead, the last status
change the history records (``null`` when none is recorded). :func:`outcome` reads the
same for one lead, for explanations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import class_row

from aicrm.ai._feature_sql import STATUS_AT
from aicrm.ai._store import KIND, StoredModel
from aicrm.db import Connection
from aicrm.db.errors import translated

ANNOTATOR = "lead_scoring"

# Each closed lead in scope, its category and the moment it closed.
CLOSED = """
SELECT l.id, s.category, l.status,
       CASE WHEN s.category = 'converted' THEN l.conversion_date
            ELSE (SELECT max(h.changed_at) FROM crm_history h
                  WHERE h.table_name = 'leads' AND h.row_id = l.id AND h.changes ? 'status')
       END AS closed_at
FROM leads l JOIN lead_statuses s ON s.name = l.status
WHERE s.category <> 'open' AND {scope}
"""
# As of a past moment (scoring --as-of): the status the history gives the lead then
# (STATUS_AT), or converted when its conversion_date is by then; a lead converted or
# lost later was open then, one created later is left out. ({status_at}: STATUS_AT)
CLOSED_AT = """
SELECT c.id, c.category, c.status, c.closed_at FROM (
    SELECT l.id,
           CASE WHEN l.conversion_date <= %(as_of)s THEN 'converted' ELSE s.category END
               AS category,
           CASE WHEN l.conversion_date <= %(as_of)s AND s.category IS DISTINCT FROM 'converted'
                THEN 'converted' ELSE st.status END AS status,
           CASE WHEN l.conversion_date <= %(as_of)s THEN l.conversion_date ELSE st.at END
               AS closed_at
    FROM leads l
    CROSS JOIN LATERAL ({status_at}) AS st
    LEFT JOIN lead_statuses s ON s.name = st.status
    WHERE l.created_at <= %(as_of)s AND {scope}
) AS c
WHERE c.category <> 'open'
"""
BY_IDS = "l.id = ANY(%(lead_ids)s::uuid[])"
EVERY = "true"
# A closed lead that still carries a score this annotator wrote while it was open.
STILL_SCORED = "(l.ai_annotations #> '{lead_scoring,values,score}') IS NOT NULL"

# ai_score cleared; the entry merged as writeback.WRITE_BACK merges it (the whole
# `values` replaced, other annotators' entries kept), built in SQL from the outcome.
WRITE_OUTCOMES = """
WITH closed AS ({closed}),
entries AS (
    SELECT c.id, jsonb_build_object(
        'model', %(kind)s::text, 'version', %(version)s::text,
        'produced_at', %(produced)s::text, 'confidence', NULL,
        'values', jsonb_build_object(
            'outcome', c.category, 'status', c.status,
            'closed_at', to_char(c.closed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'summary', c.status || coalesce(' on ' || to_char(c.closed_at AT TIME ZONE 'UTC',
                                                              'YYYY-MM-DD'), ''),
            'horizon_days', %(horizon)s::int, 'method', %(method)s::text)) AS entry
    FROM closed c
)
UPDATE leads l SET ai_score = NULL,
    ai_annotations = CASE WHEN jsonb_typeof(l.ai_annotations) = 'object' THEN l.ai_annotations
                          WHEN l.ai_annotations IS NULL THEN '{{}}'::jsonb
                          ELSE jsonb_build_object('_previous', l.ai_annotations) END
        || jsonb_build_object(%(annotator)s::text,
               CASE WHEN jsonb_typeof(l.ai_annotations -> %(annotator)s::text) = 'object'
                    THEN l.ai_annotations -> %(annotator)s::text ELSE '{{}}'::jsonb END
               || e.entry)
FROM entries e WHERE l.id = e.id
RETURNING l.id::text
"""


@dataclass
class Outcome:
    """What happened to a closed lead instead of a chance to convert."""

    id: Any
    category: str  # converted or lost
    status: str
    closed_at: datetime | None

    @property
    def summary(self) -> str:
        """``converted on 2026-03-04``, ``lost on …``, or the status alone when the
        history does not date it."""
        when = f" on {self.closed_at:%Y-%m-%d}" if self.closed_at is not None else ""
        return f"{self.status}{when}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.category, "status": self.status,
            "closed_at": self.closed_at.isoformat() if self.closed_at is not None else None,
            "summary": self.summary,
        }  # fmt: skip


@translated()
def write_outcomes(
    conn: Connection,
    stored: StoredModel,
    *,
    lead_ids: Sequence[str] | None,
    every: bool,
    produced: str,
    as_of: datetime | None = None,
) -> set[str]:
    """Clear ``ai_score`` and write the outcome entry of the closed leads in scope:
    the given ids; else every closed lead (``every``) or those still carrying a score.
    With ``as_of``, closed is as of that moment by the history (:data:`CLOSED_AT`), not
    today's status. Returns the ids written (lower-case UUID text)."""
    params: dict[str, Any] = {
        "kind": KIND, "version": stored.version, "produced": produced,
        "horizon": int(stored.horizon), "method": stored.method, "annotator": ANNOTATOR,
        "as_of": as_of,
    }  # fmt: skip
    scope = sql.SQL(EVERY) if every else sql.SQL(STILL_SCORED)
    if lead_ids is not None:
        scope, params["lead_ids"] = sql.SQL(BY_IDS), list(lead_ids)
    closed = _closed_query(as_of, scope)
    query = sql.SQL(WRITE_OUTCOMES).format(closed=closed)
    return {str(row[0]) for row in conn.execute(query, params).fetchall()}


@translated()
def outcome(conn: Connection, lead_id: str, as_of: datetime | None = None) -> Outcome | None:
    """The outcome of this lead if it is converted or lost (as of ``as_of`` by the
    history, when given); None while it is open (or when no lead has that id)."""
    query = _closed_query(as_of, sql.SQL(BY_IDS))
    with conn.cursor(row_factory=class_row(Outcome)) as cur:
        return cur.execute(query, {"lead_ids": [lead_id], "as_of": as_of}).fetchone()


def _closed_query(as_of: datetime | None, scope: sql.Composable) -> sql.Composed:
    """The closed leads in ``scope``: today (:data:`CLOSED`), or as of a moment."""
    if as_of is None:
        return sql.SQL(CLOSED).format(scope=scope)
    return sql.SQL(CLOSED_AT).format(status_at=sql.SQL(STATUS_AT), scope=scope)
