"""Contacts: people at a lead or at a client (B2B), never both."""

from __future__ import annotations

import uuid
from typing import Any

from aicrm.crm import duplicates, ids, store
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client, Contact, Lead
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput

DELETE = "DELETE FROM contacts WHERE id = %s"

EDITABLE = (
    "lead_id", "client_id", "first_name", "last_name", "email", "title",
    "ai_annotations", "attributes",
)  # fmt: skip


def _checked(conn: Connection, values: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"Unknown contact field(s): {', '.join(unknown)}.")
    out = dict(values)
    if "email" in out:
        out["email"] = store.check_email(out["email"])
    if out.get("lead_id") is not None:
        out["lead_id"] = store.get(conn, Lead, out["lead_id"]).id
    if out.get("client_id") is not None:
        out["client_id"] = store.get(conn, Client, out["client_id"]).id
    return out


@translated()
def create_contact(conn: Connection, *, allow_duplicate: bool = False, **values: Any) -> Contact:
    """Insert a contact linked to exactly one lead or one client."""
    checked = _checked(conn, values)
    if (checked.get("lead_id") is None) == (checked.get("client_id") is None):
        raise InvalidInput("A contact belongs to exactly one lead or one client: give one of them.")
    if not allow_duplicate:
        exclude = [checked["lead_id"]] if checked.get("lead_id") else []
        duplicates.refuse(conn, checked.get("email"), exclude)
    return store.insert(conn, Contact, checked)


@translated()
def get_contact(conn: Connection, contact_id: str | uuid.UUID) -> Contact:
    """The contact; :class:`NotFound` when there is none."""
    return store.get(conn, Contact, contact_id)


@translated()
def update_contact(
    conn: Connection, contact_id: str | uuid.UUID, changes: dict[str, Any]
) -> Contact:
    """Change a contact's fields; moving it sets one parent and clears the other."""
    checked = _checked(conn, changes)
    if checked.get("lead_id") is not None:
        checked.setdefault("client_id", None)
    elif checked.get("client_id") is not None:
        checked.setdefault("lead_id", None)
    return store.update(conn, Contact, contact_id, checked)


@translated()
def list_contacts(
    conn: Connection,
    *,
    lead_id: str | uuid.UUID | None = None,
    client_id: str | uuid.UUID | None = None,
    query: Query | None = None,
) -> Page[Contact]:
    """A page of contacts, newest first, optionally of one lead or client."""
    query = query or Query()
    if lead_id is not None:
        query.where["lead_id"] = ids.parse(lead_id, "lead id")
    if client_id is not None:
        query.where["client_id"] = ids.parse(client_id, "client id")
    return store.list_records(conn, Contact, query)


@translated()
def delete_contact(conn: Connection, contact_id: str | uuid.UUID) -> Contact:
    """Delete a contact; the deleted contact. :class:`NotFound` when there is none.
    Call inside a transaction (the row is locked first)."""
    contact = store.get(conn, Contact, contact_id, lock=True)
    conn.execute(DELETE, (contact.id,))
    return contact
