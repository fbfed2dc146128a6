"""Clients: converted leads, the customers. Create, read, update, list, delete."""

from __future__ import annotations

import uuid
from typing import Any

from aicrm.crm import store, users
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.errors import Conflict, InvalidInput

# What keeps a client from being deleted: leads converted into it, its contacts.
REFERENCES = """
SELECT 'lead' AS kind, id FROM leads WHERE converted_to_client_id = %(id)s
UNION ALL
SELECT 'contact', id FROM contacts WHERE client_id = %(id)s
LIMIT 20
"""
DELETE = "DELETE FROM clients WHERE id = %s"

EDITABLE = (
    "name", "industry", "ai_score", "ai_summary", "ai_annotations", "attributes", "owner_id",
)  # fmt: skip


def _checked(conn: Connection, values: dict[str, Any], creating: bool) -> dict[str, Any]:
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"Unknown client field(s): {', '.join(unknown)}.")
    if (creating or "name" in values) and not str(values.get("name") or "").strip():
        raise InvalidInput("A client needs a name.")
    out = dict(values)
    if "owner_id" in out:  # a user's id or email; an active user (migration 012)
        out["owner_id"] = users.owner_id(conn, out["owner_id"])
    return out


def create_client(conn: Connection, **values: Any) -> Client:
    """Insert a client (a name is required)."""
    return store.insert(conn, Client, _checked(conn, values, creating=True))


def get_client(conn: Connection, client_id: str | uuid.UUID) -> Client:
    """The client; :class:`NotFound` when there is none."""
    return store.get(conn, Client, client_id)


def update_client(conn: Connection, client_id: str | uuid.UUID, changes: dict[str, Any]) -> Client:
    """Change a client's fields."""
    return store.update(conn, Client, client_id, _checked(conn, changes, creating=False))


def list_clients(
    conn: Connection,
    *,
    industry: str | None = None,
    owner: str | uuid.UUID | None = None,
    query: Query | None = None,
) -> Page[Client]:
    """A page of clients, newest first; ``owner`` is a user's id or email."""
    query = query or Query()
    if owner is not None:
        query.where["owner_id"] = users.user_id(conn, owner)
    if industry is not None:
        query.where["industry"] = industry
    return store.list_records(conn, Client, query)


def delete_client(conn: Connection, client_id: str | uuid.UUID) -> Client:
    """Delete a client that nothing refers to; the deleted client. A client that
    converted leads point to, or that has contacts, is kept (:class:`Conflict`, with
    those records in ``details["conflicting"]``): conversions are permanent. Call
    inside a transaction (the row is locked first)."""
    client = store.get(conn, Client, client_id, lock=True)
    refs = conn.execute(REFERENCES, {"id": client.id}).fetchall()
    if refs:
        raise Conflict(
            f"The client {client.id} has converted leads or contacts, so it is kept: "
            "conversions are permanent. Delete or move its contacts first; a client "
            "that leads converted into stays.",
            details={"conflicting": [{"kind": kind, "id": str(i)} for kind, i in refs]},
        )
    conn.execute(DELETE, (client.id,))
    return client
