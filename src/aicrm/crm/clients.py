"""Clients: converted leads, the customers. Create, read, update, list."""

from __future__ import annotations

import uuid
from typing import Any

from aicrm.crm import store
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client
from aicrm.crm.store import Query
from aicrm.db import Connection
from aicrm.errors import InvalidInput

EDITABLE = ("name", "industry", "ai_score", "ai_summary", "ai_annotations", "attributes")


def _checked(values: dict[str, Any], creating: bool) -> dict[str, Any]:
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"Unknown client field(s): {', '.join(unknown)}.")
    if (creating or "name" in values) and not str(values.get("name") or "").strip():
        raise InvalidInput("A client needs a name.")
    return dict(values)


def create_client(conn: Connection, **values: Any) -> Client:
    """Insert a client (a name is required)."""
    return store.insert(conn, Client, _checked(values, creating=True))


def get_client(conn: Connection, client_id: str | uuid.UUID) -> Client:
    """The client; :class:`NotFound` when there is none."""
    return store.get(conn, Client, client_id)


def update_client(conn: Connection, client_id: str | uuid.UUID, changes: dict[str, Any]) -> Client:
    """Change a client's fields."""
    return store.update(conn, Client, client_id, _checked(changes, creating=False))


def list_clients(
    conn: Connection, *, industry: str | None = None, query: Query | None = None
) -> Page[Client]:
    """A page of clients, newest first."""
    query = query or Query()
    if industry is not None:
        query.where["industry"] = industry
    return store.list_records(conn, Client, query)
