"""Reports on the CRM: conversions per source, a client's leads, the status funnel.

The first two read migration 001's views (``lead_conversion_summary`` and
``client_lead_history``), the funnel reads migration 002's ``lead_status_periods``
and the leads' current statuses.
"""

from __future__ import annotations

import dataclasses
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from aicrm.crm import ids, statuses
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import NotFound, UsageError

FUNNEL = ("new", "contacted", "qualified", "converted")
"""The default stages a lead moves through, in order (the funnel reads lead_statuses:
its open and converted statuses by position)."""
EXITS = ("unqualified", "lost")
"""Where a lead leaves the funnel by default (the statuses of category lost)."""
STATUSES = (*FUNNEL, *EXITS)
"""The default statuses, in the funnel's order."""

CONVERSION_SUMMARY = """
SELECT source, total_leads, converted_leads, active_leads, conversion_rate, avg_days_to_convert
FROM lead_conversion_summary
ORDER BY total_leads DESC, source
"""

CLIENT_NAME = "SELECT name FROM clients WHERE id = %s"

CLIENT_HISTORY = """
SELECT client_id, client_name, lead_id, lead_email, lead_source, lead_created_at,
       conversion_date, days_to_convert
FROM client_lead_history
WHERE client_id = %s
ORDER BY conversion_date, lead_id
"""

# Reached: a lead reached a funnel stage when it ever had that status or a later
# one (every lead reached 'new'); an exit status, when it ever had it. The median
# counts finished periods only (a lead still in a status has not spent its time yet).
STATUS_FUNNEL = """
WITH periods AS MATERIALIZED (
    SELECT lead_id, status, left_at, days_in_status::float8 AS days FROM lead_status_periods
), furthest AS (
    SELECT lead_id, coalesce(max(array_position(%(funnel)s::text[], status)), 1) AS stage
    FROM periods GROUP BY lead_id
), reached AS (
    SELECT f.status, count(x.lead_id) AS reached
    FROM unnest(%(funnel)s::text[]) WITH ORDINALITY AS f (status, stage)
    LEFT JOIN furthest AS x ON x.stage >= f.stage
    GROUP BY f.status
), ever AS (
    SELECT status, count(DISTINCT lead_id) AS ever,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY days) FILTER (WHERE left_at IS NOT NULL)
               AS median_days
    FROM periods GROUP BY status
), now_in AS (
    SELECT status, count(*) AS current FROM leads GROUP BY status
)
SELECT s.status, coalesce(r.reached, e.ever, 0), coalesce(n.current, 0), e.median_days
FROM unnest(%(statuses)s::text[]) WITH ORDINALITY AS s (status, position)
LEFT JOIN reached AS r ON r.status = s.status
LEFT JOIN ever AS e ON e.status = s.status
LEFT JOIN now_in AS n ON n.status = s.status
ORDER BY s.position
"""


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Report:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (UUIDs and timestamps as strings)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class SourceConversion(Report):
    """One row of ``lead_conversion_summary``: a source's leads and conversions
    (``conversion_rate`` from 0 to 1; ``avg_days_to_convert`` None without any)."""

    source: str
    total_leads: int
    converted_leads: int
    active_leads: int
    conversion_rate: float
    avg_days_to_convert: float | None


@dataclass(frozen=True)
class ClientLead(Report):
    """One row of ``client_lead_history``: a lead that converted to the client."""

    client_id: uuid.UUID
    client_name: str
    lead_id: uuid.UUID
    lead_email: str | None
    lead_source: str | None
    lead_created_at: datetime
    conversion_date: datetime | None
    days_to_convert: float | None


@dataclass(frozen=True)
class FunnelStage(Report):
    """A status in the funnel: leads that ever ``reached`` it, leads in it now
    (``current``), the share of the previous stage's leads that did not reach it
    (``drop_off``, funnel stages but the first), and the median days a lead spent
    in it before moving on (``median_days``; None when no lead left it yet)."""

    status: str
    reached: int
    current: int
    drop_off: float | None
    median_days: float | None


def _needs(view: str, migration: str) -> AbstractContextManager[None]:
    """A missing view becomes :class:`UsageError`: the database is not migrated yet."""

    def missing(exc: psycopg.Error) -> UsageError | None:
        if not isinstance(exc, psycopg.errors.UndefinedTable):
            return None
        return UsageError(
            f"The database has no {view} view (migration {migration}); run 'aicrm db migrate' "
            "first."
        )

    return translated(missing)


@translated()
def conversion_summary(conn: Connection) -> list[SourceConversion]:
    """Leads and conversions per source, the largest source first. Raises
    :class:`UsageError` when the database is not migrated to 001 yet."""
    with _needs("lead_conversion_summary", "001"):
        rows = conn.execute(CONVERSION_SUMMARY).fetchall()
    return [
        SourceConversion(str(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4]), _float(r[5]))
        for r in rows
    ]


@translated()
def client_history(conn: Connection, client_id: str | uuid.UUID) -> list[ClientLead]:
    """The leads that converted to a client, in conversion order (empty for a client
    that never was a lead). Raises :class:`NotFound` for an unknown client and
    :class:`InvalidInput` for a malformed id."""
    key = ids.parse(client_id, "client id")
    with _needs("client_lead_history", "001"):
        if conn.execute(CLIENT_NAME, (key,)).fetchone() is None:
            raise NotFound(f"No client has id {key}.")
        rows = conn.execute(CLIENT_HISTORY, (key,)).fetchall()
    return [ClientLead(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _float(r[7])) for r in rows]


@translated()
def status_funnel(conn: Connection) -> list[FunnelStage]:
    """Every status, the funnel stages first (the open and converted statuses of
    lead_statuses by position: new, contacted, qualified, any custom open ones,
    converted), then the exits (category lost: unqualified, lost); see
    :class:`FunnelStage`. Raises
    :class:`UsageError` when the database is not migrated to 002 yet."""
    listed = statuses.list_statuses(conn)  # lead_statuses (008), in the funnel's order
    funnel = [s.name for s in listed if s.category != "lost"]
    exits = [s.name for s in listed if s.category == "lost"]
    with _needs("lead_status_periods", "002"):
        rows = conn.execute(
            STATUS_FUNNEL, {"funnel": funnel, "statuses": funnel + exits}
        ).fetchall()
    stages: list[FunnelStage] = []
    previous: int | None = None
    for status, reached, current, median in rows:
        drop_off = None
        if status in funnel and previous:
            drop_off = 1 - int(reached) / previous
        if status in funnel:
            previous = int(reached)
        stages.append(FunnelStage(status, int(reached), int(current), drop_off, _float(median)))
    return stages
