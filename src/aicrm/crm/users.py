"""Users: the people and agents who own leads and clients, hold API keys and are
assigned activities (migration 012). Owners, reassignment and the round-robin.

A user is named by its id or its email (ignoring case) wherever one is asked for.
Users are deactivated, never deleted: records and activities keep pointing at them,
and the round-robin skips them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aicrm.crm import ids, store
from aicrm.crm.records import Client, Lead
from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import Conflict, InvalidInput, NotFound

INSERT = """
INSERT INTO users (name, email) VALUES (%s, %s) RETURNING id, name, email, active, created_at
"""
BY_ID = "SELECT id, name, email, active, created_at FROM users WHERE id = %s"
BY_EMAIL = "SELECT id, name, email, active, created_at FROM users WHERE lower(email) = lower(%s)"
LIST_ALL = "SELECT id, name, email, active, created_at FROM users ORDER BY created_at, id"
LIST_ACTIVE = (
    "SELECT id, name, email, active, created_at FROM users WHERE active ORDER BY created_at, id"
)
DEACTIVATE = (
    "UPDATE users SET active = false WHERE id = %s RETURNING id, name, email, active, created_at"
)
# The next owner by the assignment rules (a database function, migration 012).
NEXT_OWNER = "SELECT aicrm_next_owner(%s)"

RULES = """
SELECT id, source, user_ids, last_user_id, created_at FROM assignment_rules
ORDER BY source NULLS FIRST
"""
SET_RULE = """
INSERT INTO assignment_rules (source, user_ids) VALUES (%s, %s)
ON CONFLICT (source) DO UPDATE SET user_ids = EXCLUDED.user_ids
RETURNING id, source, user_ids, last_user_id, created_at
"""
REMOVE_RULE = "DELETE FROM assignment_rules WHERE source IS NOT DISTINCT FROM %s"
RULE_BY_SOURCE = """
SELECT id, source, user_ids, last_user_id, created_at FROM assignment_rules
WHERE source IS NOT DISTINCT FROM %s
"""
DELETE_RULE = """
DELETE FROM assignment_rules WHERE id = %s
RETURNING id, source, user_ids, last_user_id, created_at
"""

OWNED = {"leads": Lead, "clients": Client}


@dataclass(frozen=True)
class User:
    """A user; ``active`` is false once deactivated."""

    id: uuid.UUID
    name: str
    email: str
    active: bool
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "email": self.email,
            "active": self.active,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Rule:
    """An assignment rule: new leads of ``source`` (None: any source without a rule
    of its own) go in turn to ``user_ids`` (empty: every active user)."""

    id: int
    source: str | None
    user_ids: list[uuid.UUID]
    last_user_id: uuid.UUID | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "user_ids": [str(u) for u in self.user_ids],
            "last_user_id": str(self.last_user_id) if self.last_user_id else None,
            "created_at": self.created_at.isoformat(),
        }


@translated()
def add_user(conn: Connection, name: str, email: str) -> User:
    """Create an active user. Raises :class:`InvalidInput` for an empty name or a
    malformed email and :class:`Conflict` when a user has that email (ignoring case).
    Call inside a transaction (``aicrm.crm.transaction``)."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A user needs a name, e.g. --name 'Ada Lovelace'.")
    checked = store.check_email(email)
    assert checked is not None
    existing = conn.execute(BY_EMAIL, (checked,)).fetchone()
    if existing is not None:
        raise Conflict(
            f"A user with the email {checked} exists already ({existing[1]}); emails of users "
            "are unique, ignoring case.",
            details={"conflicting": User(*existing).to_dict()},
        )
    row = conn.execute(INSERT, (name, checked)).fetchone()
    assert row is not None
    return User(*row)


@translated()
def get_user(conn: Connection, ref: str | uuid.UUID) -> User:
    """The user with that id or email (ignoring case); :class:`NotFound` when none."""
    text = str(ref).strip()
    if "@" in text:
        row = conn.execute(BY_EMAIL, (text,)).fetchone()
    else:
        row = conn.execute(BY_ID, (ids.parse(text, "user id or email"),)).fetchone()
    if row is None:
        raise NotFound(f"No user has the id or email '{text}'. See 'aicrm users list'.")
    return User(*row)


@translated()
def list_users(conn: Connection, *, include_inactive: bool = True) -> list[User]:
    """Every user, oldest first (only the active ones unless ``include_inactive``)."""
    query = LIST_ALL if include_inactive else LIST_ACTIVE
    return [User(*row) for row in conn.execute(query).fetchall()]


@translated()
def deactivate_user(conn: Connection, ref: str | uuid.UUID) -> User:
    """Mark a user inactive (idempotent): it keeps what it owns and its activities,
    and the round-robin passes it by. :class:`NotFound` for an unknown user."""
    user = get_user(conn, ref)
    row = conn.execute(DEACTIVATE, (user.id,)).fetchone()
    assert row is not None
    return User(*row)


@translated()
def user_id(conn: Connection, ref: str | uuid.UUID) -> uuid.UUID:
    """The id of the user named by ``ref`` (id or email), as a value given for a
    field or a filter: :class:`InvalidInput` when there is no such user."""
    return _named(conn, ref).id


@translated()
def owner_id(conn: Connection, ref: str | uuid.UUID | None) -> uuid.UUID | None:
    """The id of the user named by ``ref`` (id or email), None for None; refuses
    (:class:`InvalidInput`) an unknown or inactive user: what a record's owner or a
    task's assignee may be."""
    if ref is None:
        return None
    user = _named(conn, ref)
    if not user.active:
        raise InvalidInput(
            f"The user {user.email} is deactivated and cannot be given records or tasks; "
            "choose an active user (see 'aicrm users list')."
        )
    return user.id


def _named(conn: Connection, ref: str | uuid.UUID) -> User:
    try:
        return get_user(conn, ref)
    except NotFound as exc:
        raise InvalidInput(exc.message) from None


@translated()
def next_owner(conn: Connection, source: str | None) -> uuid.UUID | None:
    """The owner the assignment rules give a new lead of ``source``, moving the
    round-robin on; None when no rule applies or no user of the rule is active."""
    row = conn.execute(NEXT_OWNER, (source,)).fetchone()
    return row[0] if row else None


@translated()
def assign(
    conn: Connection, table: str, record_id: str | uuid.UUID, user: str | uuid.UUID | None
) -> Lead | Client:
    """Give a lead or client (``table`` 'leads' or 'clients') to ``user`` (id or email;
    None: to nobody). The history records the change of ``owner_id``. Raises
    :class:`NotFound` for an unknown record, :class:`InvalidInput` for an unknown or
    inactive user, :class:`ReadOnly` for a converted
    lead (its client carries the owner). Call inside a transaction."""
    if table not in OWNED:
        raise InvalidInput(f"Only leads and clients have owners, not {table}.")
    return store.update(conn, OWNED[table], record_id, {"owner_id": owner_id(conn, user)})


@translated()
def list_rules(conn: Connection) -> list[Rule]:
    """The assignment rules; the one for any source first."""
    return [Rule(*row) for row in conn.execute(RULES).fetchall()]


@translated()
def set_rule(conn: Connection, source: str | None, users: Sequence[str | uuid.UUID] = ()) -> Rule:
    """Create or replace the rule for ``source`` (None: any source without a rule of
    its own): new leads go in turn to ``users`` (ids or emails; none: every active
    user). :class:`InvalidInput` for an unknown user (a value given, like an owner).
    Call inside a transaction."""
    members = [_named(conn, u).id for u in users]
    source = source.strip() if source is not None else None
    row = conn.execute(SET_RULE, (source or None, members)).fetchone()
    assert row is not None
    return Rule(*row)


@translated()
def find_rule(conn: Connection, source: str | None) -> Rule | None:
    """The rule for ``source`` (None: the one for any source), or None."""
    row = conn.execute(RULE_BY_SOURCE, ((source or "").strip() or None,)).fetchone()
    return Rule(*row) if row else None


@translated()
def delete_rule(conn: Connection, rule_id: int) -> Rule:
    """Remove the rule with that id and return it; :class:`NotFound` when there is
    none. Call inside a transaction."""
    row = conn.execute(DELETE_RULE, (rule_id,)).fetchone()
    if row is None:
        raise NotFound(f"There is no assignment rule with id {rule_id}; see the list of rules.")
    return Rule(*row)


@translated()
def remove_rule(conn: Connection, source: str | None) -> None:
    """Remove the rule for ``source`` (None: the one for any source);
    :class:`NotFound` when there is none."""
    if conn.execute(REMOVE_RULE, (source or None,)).rowcount == 0:
        which = f"source '{source}'" if source else "any source"
        raise NotFound(f"There is no assignment rule for {which}. See 'aicrm users rule list'.")


__all__ = [
    "Rule",
    "User",
    "add_user",
    "assign",
    "deactivate_user",
    "delete_rule",
    "find_rule",
    "get_user",
    "list_rules",
    "list_users",
    "next_owner",
    "owner_id",
    "remove_rule",
    "set_rule",
    "user_id",
]
