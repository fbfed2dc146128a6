"""What a lead's or client's page needs for working on it: its owner, the users it can
be given to, and its open tasks (the forms of :mod:`aicrm.web._forms` use them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aicrm.crm import activities, users
from aicrm.crm.activities import Activity
from aicrm.crm.users import User
from aicrm.db import Connection

KINDS = activities.KINDS


@dataclass(frozen=True)
class Work:
    """The owner (None: nobody), the active users, and the record's open tasks."""

    owner: User | None
    users: list[User]
    open_tasks: list[Activity]
    kinds: tuple[str, ...] = KINDS


def for_record(
    conn: Connection, target: str, record_id: uuid.UUID, owner_id: uuid.UUID | None
) -> Work:
    """The work context of the lead or client (``target`` 'lead' or 'client')."""
    lead_id, client_id = (record_id, None) if target == "lead" else (None, record_id)
    tasks = activities.list_activities(
        conn, lead_id=lead_id, client_id=client_id, kind="task", limit=activities.MAX_PAGE
    )
    return Work(
        owner=users.get_user(conn, owner_id) if owner_id is not None else None,
        users=users.list_users(conn, include_inactive=False),
        open_tasks=[task for task in tasks.items if task.is_open_task],
    )
