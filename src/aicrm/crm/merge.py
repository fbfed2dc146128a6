"""Merging duplicate leads into one, in one transaction, with a record of it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg import sql
from psycopg.types.json import Jsonb

from aicrm.crm import ids, session, store
from aicrm.crm.records import Lead
from aicrm.db import Connection
from aicrm.errors import Conflict, InvalidInput

FILLABLE = (
    "first_name", "last_name", "email", "company_name", "source", "ai_score", "ai_summary",
    "owner_id",
)  # fmt: skip

FILL = """
UPDATE leads k SET {assignments},
       attributes = o.attributes || k.attributes,
       ai_annotations = o.ai_annotations || k.ai_annotations,
       updated_at = now()
FROM leads o WHERE k.id = %s AND o.id = %s
"""

MOVE_CONTACTS = "UPDATE contacts SET lead_id = %s, updated_at = now() WHERE lead_id = %s"
# Recording the merge moves the merged lead's history to the kept one (a trigger with
# the owner's rights, migration 009): no privilege on crm_history is needed.
RECORD = "INSERT INTO lead_merges (kept_lead_id, merged_lead_id, merged_row) VALUES (%s, %s, %s)"


@dataclass(frozen=True)
class Merge:
    kept: Lead
    merged: list[uuid.UUID]
    contacts_moved: int


def merge_leads(
    conn: Connection,
    keep: str | uuid.UUID,
    others: Sequence[str | uuid.UUID],
    *,
    actor: str | None = None,
) -> Merge:
    """Merge ``others`` into ``keep``: fill the kept lead's empty fields (from the
    others, in the order given), add attribute keys it lacks, move their contacts and
    history and activities to it (the database moves those), delete them, and record
    each merge in ``lead_merges``.

    Converted leads cannot be merged away (:class:`Conflict`); convert the merged
    lead afterwards instead.
    """
    keep_id = ids.parse(keep, "lead id")
    other_ids = [ids.parse(o, "lead id") for o in others]
    if not other_ids:
        raise InvalidInput("Name at least one lead to merge into the kept one.")
    if keep_id in other_ids or len(set(other_ids)) != len(other_ids):
        raise InvalidInput("Each lead to merge must be named once, and not be the kept lead.")
    assignments = sql.SQL(", ").join(
        sql.SQL("{col} = coalesce(k.{col}, o.{col})").format(col=sql.Identifier(c))
        for c in FILLABLE
    )
    fill = sql.SQL(FILL).format(assignments=assignments)
    moved = 0
    with session.transaction(conn, actor):
        # Lock in id order, so two merges of overlapping leads cannot deadlock.
        for lead_id in sorted([keep_id, *other_ids]):
            store.get(conn, Lead, lead_id, lock=True)
        kept = store.get(conn, Lead, keep_id)
        for other_id in other_ids:
            other = store.get(conn, Lead, other_id)
            if other.is_converted or kept.is_converted:
                converted = other if other.is_converted else kept
                raise Conflict(
                    f"Lead {converted.id} is converted and read-only, so it cannot take part in "
                    "a merge. Merge the open leads first, then convert the kept one.",
                    details={"conflicting": converted.to_dict()},
                )
            conn.execute(fill, (keep_id, other_id))
            moved += conn.execute(MOVE_CONTACTS, (keep_id, other_id)).rowcount
            conn.execute(RECORD, (keep_id, other_id, Jsonb(other.to_dict())))
            conn.execute("DELETE FROM leads WHERE id = %s", (other_id,))
        return Merge(store.get(conn, Lead, keep_id), other_ids, moved)
