"""Leads: prospects until they convert. Create, read, update, list, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from aicrm.crm import duplicates, statuses, store, users
from aicrm.crm.pagination import Page
from aicrm.crm.records import Lead
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.errors import InvalidInput

EDITABLE = (
    "first_name", "last_name", "email", "company_name", "source", "status",
    "ai_score", "ai_summary", "ai_annotations", "attributes", "owner_id",
)  # fmt: skip


def _checked(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidInput(
            f"Unknown or read-only lead field(s): {', '.join(unknown)}. Editable: "
            f"{', '.join(EDITABLE)}."
        )
    out = dict(values)
    if "email" in out:
        out["email"] = store.check_email(out["email"])
    if "status" in out:
        statuses.check_settable(conn, out["status"])  # the statuses of lead_statuses (008)
    for key in ("attributes", "ai_annotations"):
        if key in out and not isinstance(out[key], dict):
            raise InvalidInput(f"A lead's {key} must be a JSON object.")
    if "owner_id" in out:  # a user's id or email; an active user (migration 012)
        out["owner_id"] = users.owner_id(conn, out["owner_id"])
    return out


def create_lead(conn: Connection, *, allow_duplicate: bool = False, **values: Any) -> Lead:
    """Insert a lead. Refuses (:class:`DuplicateFound`) an email that a lead or contact
    already has, ignoring case, unless ``allow_duplicate``. Its owner is ``owner_id``
    (a user's id or email; None: nobody) when given, else the one the assignment
    rules choose for its source (round-robin), if any. Call inside a transaction."""
    checked = _checked(conn, values)
    if not allow_duplicate:
        duplicates.refuse(conn, checked.get("email"))
    if "owner_id" not in checked:
        assigned = users.next_owner(conn, checked.get("source"))
        if assigned is not None:
            checked["owner_id"] = assigned
    return store.insert(conn, Lead, checked)


def get_lead(conn: Connection, lead_id: str | uuid.UUID) -> Lead:
    """The lead; :class:`NotFound` when there is none."""
    return store.get(conn, Lead, lead_id)


def update_lead(
    conn: Connection,
    lead_id: str | uuid.UUID,
    changes: dict[str, Any],
    *,
    allow_duplicate: bool = False,
    expected_updated_at: datetime | None = None,
) -> Lead:
    """Change a lead's fields. A converted lead refuses all but its ai_* fields
    (:class:`ReadOnly`, enforced by the database)."""
    checked = _checked(conn, changes)
    if "email" in checked and not allow_duplicate:
        duplicates.refuse(conn, checked["email"], [store.get(conn, Lead, lead_id).id])
    return store.update(conn, Lead, lead_id, checked, expected_updated_at=expected_updated_at)


def delete_lead(conn: Connection, lead_id: str | uuid.UUID) -> None:
    """Delete a lead that has not converted, with its contacts; converted leads are
    permanent (:class:`ReadOnly`)."""
    lead = store.get(conn, Lead, lead_id, lock=True)
    conn.execute("DELETE FROM contacts WHERE lead_id = %s", (lead.id,))
    conn.execute("DELETE FROM leads WHERE id = %s", (lead.id,))


def list_leads(
    conn: Connection,
    *,
    status: str | None = None,
    source: str | None = None,
    converted: bool | None = None,
    owner: str | uuid.UUID | None = None,
    query: Query | None = None,
) -> Page[Lead]:
    """A page of leads, newest first; see :class:`aicrm.crm.store.Query` for filters.
    ``owner`` is a user's id or email (:class:`InvalidInput` for an unknown one)."""
    query = query or Query()
    if owner is not None:
        query.where["owner_id"] = users.user_id(conn, owner)
    if status is not None:
        statuses.check_known(conn, status)
        query.where["status"] = status
    if source is not None:
        query.where["source"] = source
    if converted is not None:
        query.where["is_converted"] = converted
    return store.list_records(conn, Lead, query)
