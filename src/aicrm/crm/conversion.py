"""Lead → Client conversion: one transaction, permanent, idempotent.

Field mapping from the lead to a new client:

=================  =========================================================
client.name        ``company_name``, else "first last", else ``email``
client.industry    ``attributes->>'industry'`` of the lead, if any
client.ai_score    ``ai_score``; ``ai_summary`` likewise
client.ai_*        ``ai_annotations`` carried over as they are
client.attributes  the lead's ``attributes``
=================  =========================================================

Converting into an existing client fills only the client's empty fields (and adds
attribute keys it lacks) unless ``overwrite`` is asked, when the lead's non-empty
values win. Either way the lead gets ``converted_to_client_id``,
``conversion_date`` (the transaction's timestamp), ``is_converted`` and the status
``converted``, and its contacts move to the client. From then on the database
keeps the lead read-only but for its ai_* columns: there is no un-convert.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.pq import TransactionStatus

from aicrm.crm import ids, session, store
from aicrm.crm.records import Lead
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import AlreadyConverted, Conflict, DuplicateFound, NotFound

# The new client's name: the company, else the person, else the email (the bulk
# conversion's; aicrm_convert_lead of migration 006 spells the same rule).
CLIENT_NAME = sql.SQL(
    "coalesce(nullif(btrim(l.company_name), ''), "
    "nullif(btrim(concat_ws(' ', l.first_name, l.last_name)), ''), l.email, 'lead ' || l.id)"
)

# One conversion, all of it in the server (migration 006): one round trip.
CONVERT = (
    "SELECT client_id, conversion_date, created_client, already_converted, contacts_moved "
    "FROM aicrm_convert_lead(%s::uuid, %s::uuid, %s::boolean, %s::boolean, %s::text)"
)


@dataclass(frozen=True)
class Conversion:
    """The result of converting one lead. ``already_converted``: nothing was written."""

    lead_id: uuid.UUID
    client_id: uuid.UUID
    conversion_date: datetime
    created_client: bool
    already_converted: bool
    contacts_moved: int

    def to_dict(self) -> dict[str, object]:
        return {
            "lead_id": str(self.lead_id),
            "client_id": str(self.client_id),
            "conversion_date": self.conversion_date.isoformat(),
            "created_client": self.created_client,
            "already_converted": self.already_converted,
            "contacts_moved": self.contacts_moved,
        }


@translated()
def convert_lead(
    conn: Connection,
    lead_id: str | uuid.UUID,
    *,
    client_id: str | uuid.UUID | None = None,
    overwrite: bool = False,
    allow_duplicate: bool = False,
    actor: str | None = None,
) -> Conversion:
    """Convert a lead into a new client, or into ``client_id``, in one transaction.

    Locks the lead row first, then runs the duplicate check before any write. An
    already converted lead returns its existing conversion and writes nothing;
    asking for another target raises :class:`AlreadyConverted`. Raises
    :class:`NotFound` for an unknown lead or client and :class:`DuplicateFound` when
    the lead's email belongs to other leads or contacts (unless ``allow_duplicate``).

    The work is done by the database function ``aicrm_convert_lead`` (migration 006)
    in one statement: on an idle connection that statement is the whole transaction
    (one round trip); inside a transaction the caller opened, it runs in a savepoint.
    """
    lead_key = ids.parse(lead_id, "lead id")
    target = ids.parse(client_id, "client id") if client_id is not None else None
    params = (lead_key, target, overwrite, allow_duplicate, actor or session.default_actor())
    try:
        with translated():
            row = _call(conn, params)
    except AlreadyConverted as error:
        # The lead as aicrm reads it (its columns, its value types): converted, so
        # what the message says about it can no longer change.
        with session.transaction(conn, actor):
            error.details = {"conflicting": store.get(conn, Lead, lead_key).to_dict()}
        raise
    assert row is not None
    return Conversion(lead_key, row[0], row[1], row[2], row[3], row[4])


def _call(conn: Connection, params: tuple[object, ...]) -> tuple[Any, ...] | None:
    """Run CONVERT as a transaction of its own when the connection is idle, else in a
    savepoint of the caller's transaction."""
    plain = conn.isolation_level is None and conn.read_only is None and not conn.deferrable
    if conn.info.transaction_status != TransactionStatus.IDLE or not plain:
        with conn.transaction():
            return conn.execute(CONVERT, params).fetchone()
    if conn.autocommit:
        return conn.execute(CONVERT, params).fetchone()
    conn.autocommit = True  # no BEGIN and COMMIT round trips: one statement, atomic
    try:
        return conn.execute(CONVERT, params).fetchone()
    finally:
        if not (conn.closed or conn.broken):  # a lost connection: its own error shows
            conn.autocommit = False


# Bulk conversion: set-based, a few statements per chunk of leads, one transaction.

BULK_SETUP = """
CREATE TEMP TABLE IF NOT EXISTS aicrm_bulk_conversion (
    lead_id uuid PRIMARY KEY, client_id uuid NOT NULL, position bigint NOT NULL
) ON COMMIT DROP
"""

BULK_FROM_IDS = """
INSERT INTO aicrm_bulk_conversion (lead_id, client_id, position)
SELECT locked.id, gen_random_uuid(), row_number() OVER (ORDER BY locked.id)
FROM (
    SELECT l.id FROM leads l WHERE l.id = ANY(%s) AND NOT l.is_converted
    ORDER BY l.id FOR UPDATE
) AS locked
"""

BULK_DUPLICATES = """
SELECT b.lead_id, o.kind, o.id FROM aicrm_bulk_conversion b JOIN leads l ON l.id = b.lead_id
CROSS JOIN LATERAL (
    SELECT 'lead' AS kind, x.id FROM leads x
    WHERE l.email IS NOT NULL AND lower(x.email) = lower(l.email) AND x.id <> l.id
    UNION ALL
    SELECT 'contact', c.id FROM contacts c
    WHERE l.email IS NOT NULL AND lower(c.email) = lower(l.email)
      AND c.lead_id IS DISTINCT FROM l.id
    LIMIT 1
) o
"""

BULK_DROP = "DELETE FROM aicrm_bulk_conversion WHERE lead_id = ANY(%s)"

BULK_CLIENTS = sql.SQL("""
INSERT INTO clients (id, name, industry, ai_score, ai_summary, ai_annotations, attributes)
SELECT b.client_id, {name}, l.attributes ->> 'industry', l.ai_score, l.ai_summary,
       l.ai_annotations, l.attributes
FROM aicrm_bulk_conversion b JOIN leads l ON l.id = b.lead_id
WHERE b.position > %s AND b.position <= %s
""").format(name=CLIENT_NAME)

BULK_LEADS = """
UPDATE leads l SET converted_to_client_id = b.client_id, conversion_date = now(),
       is_converted = true, status = 'converted', updated_at = now()
FROM aicrm_bulk_conversion b
WHERE l.id = b.lead_id AND b.position > %s AND b.position <= %s
"""

BULK_CONTACTS = """
UPDATE contacts c SET client_id = b.client_id, lead_id = NULL, updated_at = now()
FROM aicrm_bulk_conversion b
WHERE c.lead_id = b.lead_id AND b.position > %s AND b.position <= %s
"""

CHUNK = 10_000


@dataclass
class BulkResult:
    """Per-lead outcomes: ``converted`` maps lead → new client; the others list ids."""

    converted: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    already_converted: list[uuid.UUID] = field(default_factory=list)
    not_found: list[uuid.UUID] = field(default_factory=list)
    duplicates: dict[uuid.UUID, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "converted": len(self.converted),
            "already_converted": len(self.already_converted),
            "not_found": [str(i) for i in self.not_found],
            "duplicates": {str(k): v for k, v in self.duplicates.items()},
        }


@translated()
def convert_leads(
    conn: Connection,
    lead_ids: Sequence[str | uuid.UUID] | None = None,
    *,
    query: Query | None = None,
    all_or_nothing: bool = True,
    allow_duplicates: bool = False,
    actor: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BulkResult:
    """Convert many leads, given by id or by a filter, each into a new client.

    Set-based: the leads are locked in id order, checked for duplicates in one
    query, and converted a chunk at a time with three statements per chunk, all in
    one transaction. ``all_or_nothing`` (the default) raises on the first problem
    (unknown id: :class:`NotFound`; duplicate: :class:`DuplicateFound`) and writes
    nothing; otherwise problem leads are left out and reported in the result.
    Already converted leads are reported, never converted twice.
    """
    if (lead_ids is None) == (query is None):
        raise Conflict("Give either lead ids or a filter to convert, not both or neither.")
    result = BulkResult()
    with session.transaction(conn, actor):
        if query is not None:
            parts, params = store.conditions(Lead, query)
            chosen_by_filter = sql.SQL("SELECT id FROM leads{}").format(store.where_sql(parts))
            lead_ids = [row[0] for row in conn.execute(chosen_by_filter, params).fetchall()]
        assert lead_ids is not None
        keys = sorted({ids.parse(i, "lead id") for i in lead_ids})
        conn.execute(BULK_SETUP)
        conn.execute("TRUNCATE aicrm_bulk_conversion")
        conn.execute(BULK_FROM_IDS, (keys,))
        chosen = {r[0] for r in conn.execute("SELECT lead_id FROM aicrm_bulk_conversion")}
        existing = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT id, is_converted FROM leads WHERE id = ANY(%s)", (keys,)
            ).fetchall()
        }
        result.not_found = [k for k in keys if k not in existing]
        result.already_converted = [k for k in keys if existing.get(k)]
        if result.not_found and all_or_nothing:
            raise NotFound(
                f"{len(result.not_found)} of the leads do not exist (e.g. {result.not_found[0]}); "
                "nothing was converted.",
                details={"not_found": [str(i) for i in result.not_found]},
            )
        if not allow_duplicates:
            found = conn.execute(BULK_DUPLICATES).fetchall()
            result.duplicates = {
                lead: f"email also on {kind} {other}" for lead, kind, other in found
            }
            if result.duplicates and all_or_nothing:
                lead, reason = next(iter(result.duplicates.items()))
                raise DuplicateFound(
                    f"{len(result.duplicates)} lead(s) have duplicate emails (lead {lead}: "
                    f"{reason}); nothing was converted. Merge them first, or allow duplicates.",
                    details={"conflicting": result.to_dict()["duplicates"]},
                )
            if result.duplicates:
                conn.execute(BULK_DROP, (list(result.duplicates),))
                conn.execute(
                    "UPDATE aicrm_bulk_conversion b SET position = r.n FROM ("
                    "SELECT lead_id, row_number() OVER (ORDER BY lead_id) AS n "
                    "FROM aicrm_bulk_conversion) r WHERE r.lead_id = b.lead_id"
                )
        total = len(chosen) - len(result.duplicates)
        for start in range(0, total, CHUNK):
            bounds = (start, min(start + CHUNK, total))
            conn.execute(BULK_CLIENTS, bounds)
            conn.execute(BULK_LEADS, bounds)
            conn.execute(BULK_CONTACTS, bounds)
            if progress is not None:
                progress(bounds[1], total)
        rows = conn.execute("SELECT lead_id, client_id FROM aicrm_bulk_conversion").fetchall()
        result.converted = {lead: client for lead, client in rows}
    return result
