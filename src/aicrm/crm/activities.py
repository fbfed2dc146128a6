"""Activities: notes, calls, emails, meetings and tasks of a lead, a client or a
contact (migration 012).

Each activity belongs to exactly one record (a CHECK of the database). Its author is
the actor of the transaction, as the history records it; a task has a due date, an
assignee (a user) and is done or not. When a lead converts, its activities move to
the client; when it is merged away, to the kept lead: the database's triggers do
both, in the same transaction as the conversion or the merge.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from aicrm.crm import ids, pagination, store, users
from aicrm.crm.pagination import Page
from aicrm.crm.records import Client, Contact, Lead, Record, jsonable
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, NotFound

KINDS = ("note", "call", "email", "meeting", "task")
# The record an activity belongs to: its column, and the record class to check it.
TARGETS: dict[str, tuple[str, type[Record]]] = {
    "lead": ("lead_id", Lead),
    "client": ("client_id", Client),
    "contact": ("contact_id", Contact),
}
MAX_SUBJECT = 500
MAX_PAGE = 1000

INSERT = """
INSERT INTO activities (kind, subject, body, due_at, assignee_id, lead_id, client_id,
                        contact_id, attributes)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
RETURNING id, kind, subject, body, due_at, done_at, assignee_id, author, lead_id, client_id,
          contact_id, attributes, created_at, updated_at
"""
GET = """
SELECT id, kind, subject, body, due_at, done_at, assignee_id, author, lead_id, client_id,
       contact_id, attributes, created_at, updated_at
FROM activities WHERE id = %s
"""
COMPLETE = """
UPDATE activities SET done_at = coalesce(done_at, now()), updated_at = now()
WHERE id = %s
RETURNING id, kind, subject, body, due_at, done_at, assignee_id, author, lead_id, client_id,
          contact_id, attributes, created_at, updated_at
"""
# One record's activities, newest first, keyset-paginated on (created_at, id); the
# partial indexes activities_{lead,client,contact}_idx serve it. {column} is one of
# TARGETS' columns.
FOR_RECORD = """
SELECT id, kind, subject, body, due_at, done_at, assignee_id, author, lead_id, client_id,
       contact_id, attributes, created_at, updated_at
FROM activities
WHERE {column} = %(record)s AND (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s
"""
# Open tasks of one assignee, soonest due first (no due date last); the partial index
# activities_open_tasks_idx serves it.
OPEN_TASKS = """
SELECT id, kind, subject, body, due_at, done_at, assignee_id, author, lead_id, client_id,
       contact_id, attributes, created_at, updated_at
FROM activities
WHERE kind = 'task' AND done_at IS NULL AND assignee_id = %s
ORDER BY due_at ASC NULLS LAST, id
LIMIT %s
"""


@dataclass(frozen=True)
class Activity:
    """One activity; exactly one of ``lead_id``, ``client_id``, ``contact_id`` is set."""

    id: uuid.UUID
    kind: str
    subject: str
    body: str | None
    due_at: datetime | None
    done_at: datetime | None
    assignee_id: uuid.UUID | None
    author: str
    lead_id: uuid.UUID | None
    client_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def is_open_task(self) -> bool:
        return self.kind == "task" and self.done_at is None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (UUIDs and timestamps as strings)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@translated()
def add_activity(
    conn: Connection,
    *,
    kind: str,
    subject: str,
    lead_id: str | uuid.UUID | None = None,
    client_id: str | uuid.UUID | None = None,
    contact_id: str | uuid.UUID | None = None,
    body: str | None = None,
    due_at: datetime | None = None,
    assignee: str | uuid.UUID | None = None,
    attributes: dict[str, Any] | None = None,
) -> Activity:
    """Log an activity on exactly one of a lead, client or contact; its author is the
    transaction's actor (``aicrm.crm.transaction(conn, actor)``). ``assignee`` is a
    user's id or email. Raises :class:`InvalidInput` for an unknown kind, an empty
    subject, not exactly one record, a due date or assignee on what is not a task, or
    an unknown or inactive assignee; :class:`NotFound` for an unknown record."""
    if kind not in KINDS:
        raise InvalidInput(f"'{kind}' is not a kind of activity; use one of {', '.join(KINDS)}.")
    subject = (subject or "").strip()
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"An activity needs a subject of 1 to {MAX_SUBJECT} characters.")
    given = {
        name: value
        for name, value in (("lead", lead_id), ("client", client_id), ("contact", contact_id))
        if value is not None
    }
    if len(given) != 1:
        raise InvalidInput(
            "An activity belongs to exactly one lead, client or contact; name one of them."
        )
    ((target, ref),) = given.items()
    column, cls = TARGETS[target]
    record = store.get(conn, cls, ids.parse(ref, f"{target} id"))  # NotFound when none
    if kind != "task" and (due_at is not None or assignee is not None):
        raise InvalidInput("Only a task has a due date and an assignee; log it as --kind task.")
    if attributes is not None and not isinstance(attributes, dict):
        raise InvalidInput("An activity's attributes must be a JSON object.")
    assignee_id = users.owner_id(conn, assignee)
    values = {"lead_id": None, "client_id": None, "contact_id": None, column: _id(record)}
    params = (
        kind, subject, body, due_at, assignee_id, values["lead_id"], values["client_id"],
        values["contact_id"], Jsonb(attributes or {}),
    )  # fmt: skip
    row = conn.execute(INSERT, params).fetchone()
    assert row is not None
    return Activity(*row)


@translated()
def get_activity(conn: Connection, activity_id: str | uuid.UUID) -> Activity:
    """The activity; :class:`NotFound` when there is none."""
    key = ids.parse(activity_id, "activity id")
    row = conn.execute(GET, (key,)).fetchone()
    if row is None:
        raise NotFound(f"No activity has id {key}.")
    return Activity(*row)


@translated()
def complete_task(conn: Connection, activity_id: str | uuid.UUID) -> Activity:
    """Mark a task done, now (idempotent: a done task keeps its time). Raises
    :class:`NotFound` for an unknown id and :class:`InvalidInput` for an activity
    that is not a task (only tasks are done or not). Call inside a transaction."""
    current = get_activity(conn, activity_id)
    if current.kind != "task":
        raise InvalidInput(
            f"Activity {current.id} is a {current.kind}, not a task: only tasks are done or open."
        )
    row = conn.execute(COMPLETE, (current.id,)).fetchone()
    assert row is not None
    return Activity(*row)


@translated()
def list_activities(
    conn: Connection,
    *,
    lead_id: str | uuid.UUID | None = None,
    client_id: str | uuid.UUID | None = None,
    contact_id: str | uuid.UUID | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Activity]:
    """One record's activities, newest first, a page at a time (``next_cursor``).
    Raises :class:`InvalidInput` unless exactly one record is named, and
    :class:`NotFound` for an unknown record."""
    given = [
        (name, value)
        for name, value in (("lead", lead_id), ("client", client_id), ("contact", contact_id))
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInput("Name exactly one lead, client or contact to list its activities.")
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"'{kind}' is not a kind of activity; use one of {', '.join(KINDS)}.")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"The page size must be between 1 and {MAX_PAGE}.")
    target, ref = given[0]
    column, cls = TARGETS[target]
    record = store.get(conn, cls, ids.parse(ref, f"{target} id"))
    after_at, after_id = pagination.decode(cursor) if cursor else (None, None)
    query = sql.SQL(FOR_RECORD).format(column=sql.Identifier(column))
    params = {
        "record": _id(record),
        "kind": kind,
        "after_at": after_at,
        "after_id": after_id,
        "limit": limit + 1,
    }
    rows = conn.execute(query, params).fetchall()
    items = [Activity(*row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = pagination.encode(items[-1].created_at, items[-1].id) if more else None
    return Page(items, next_cursor)


@translated()
def open_tasks(conn: Connection, user: str | uuid.UUID, *, limit: int = 100) -> list[Activity]:
    """The open tasks assigned to ``user`` (id or email), soonest due first, tasks
    without a due date last. :class:`NotFound` for an unknown user."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"The number of tasks must be between 1 and {MAX_PAGE}.")
    assignee = users.get_user(conn, user)
    return [Activity(*row) for row in conn.execute(OPEN_TASKS, (assignee.id, limit)).fetchall()]


def _id(record: Record) -> uuid.UUID:
    key: uuid.UUID = getattr(record, "id")  # noqa: B009 (Record declares no id)
    return key


__all__ = [
    "KINDS",
    "Activity",
    "add_activity",
    "complete_task",
    "get_activity",
    "list_activities",
    "open_tasks",
]
