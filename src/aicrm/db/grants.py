"""``aicrm db grant``: what a role needs to run aicrm's CLI, API and MCP server at a
scope, granted by the owner of the tables (docs/least-privilege.md).

The scopes match the API keys' ones:

``read``
    everything aicrm reads: leads, clients, contacts, their history and merges, the
    statuses, the models, the score trends, the views, the ledger (``aicrm db status``),
    the users, activities and assignment rules, the event stream (``crm_events``), and
    the API keys with ``UPDATE (last_used_at)`` (the API and MCP server check each key
    and note its use).
``write``
    ``read``, and inserting, updating and deleting leads, clients, contacts and
    activities (conversion, import, scoring write-back and its score trend), recording
    merges, and moving the round-robin of the assignment rules (``UPDATE (last_user_id)``).
``admin``
    ``write``, and managing API keys, users, assignment rules, training models
    (``ai_models``), statuses and webhooks (``aicrm webhooks``: subscriptions with
    their secrets, deliveries; the delivery worker runs at this scope: it fans events
    out, ``webhook_fanout``, and registers its sleeping lanes, ``webhook_sleepers``), and the
    historical import (``leads import --historical``), which writes the history as it
    happened: ``INSERT`` and ``UPDATE`` on ``crm_history``.

Nothing here changes the schema: migrations stay with the owner. Granting is
idempotent: a privilege the role holds already (directly or through a role it
inherits) is reported as held, not granted again. All grants of a call commit
together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from aicrm.db import script
from aicrm.db._connection import Connection
from aicrm.db.errors import translated
from aicrm.errors import PrerequisiteFailed, UsageError

SCOPES = ("read", "write", "admin")

# (relation, privilege, column or None), per scope; each scope adds to the one before.
READ: tuple[tuple[str, str, str | None], ...] = (
    *((t, "SELECT", None) for t in ("leads", "clients", "contacts", "crm_history")),
    *((t, "SELECT", None) for t in ("lead_merges", "lead_statuses", "ai_models", "api_keys")),
    *(
        (v, "SELECT", None)
        for v in ("lead_conversion_summary", "client_lead_history", "lead_status_periods")
    ),
    ("aicrm_schema_migrations", "SELECT", None),
    ("lead_score_history", "SELECT", None),
    ("api_keys", "UPDATE", "last_used_at"),
    *((t, "SELECT", None) for t in ("users", "activities", "assignment_rules")),
    ("crm_events", "SELECT", None),
)
WRITE: tuple[tuple[str, str, str | None], ...] = (
    *((t, p, None) for t in ("leads", "clients", "contacts") for p in ("INSERT", "UPDATE")),
    *((t, "DELETE", None) for t in ("leads", "clients", "contacts")),
    ("lead_merges", "INSERT", None),
    ("lead_score_history", "INSERT", None),
    *(("activities", p, None) for p in ("INSERT", "UPDATE", "DELETE")),
    ("assignment_rules", "UPDATE", "last_user_id"),
)
ADMIN: tuple[tuple[str, str, str | None], ...] = (
    *((t, p, None) for t in ("api_keys", "lead_statuses") for p in ("INSERT", "UPDATE", "DELETE")),
    ("ai_models", "INSERT", None),
    ("ai_models", "UPDATE", None),
    # the historical import writes the past as it happened (docs/historical-import.md)
    ("crm_history", "INSERT", None),
    ("crm_history", "UPDATE", None),
    *((t, p, None) for t in ("users", "assignment_rules") for p in ("INSERT", "UPDATE", "DELETE")),
    *(
        (t, p, None)
        for t in ("webhook_subscriptions", "webhook_deliveries")
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
    ),
    *(("webhook_sleepers", p, None) for p in ("SELECT", "INSERT", "DELETE")),
    *(("webhook_fanout", p, None) for p in ("SELECT", "UPDATE")),
)
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

ROLE = "SELECT rolsuper FROM pg_roles WHERE rolname = %s"
SCHEMA = "SELECT current_schema()"
EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
HAS_SCHEMA = "SELECT has_schema_privilege(%s, current_schema(), 'USAGE')"
HAS_TABLE = "SELECT has_table_privilege(%s, %s, %s)"
HAS_COLUMN = "SELECT has_column_privilege(%s, %s, %s, %s)"


@dataclass(frozen=True)
class Grant:
    """One privilege: ``granted`` now, or held already."""

    privilege: str
    on: str
    granted: bool

    def to_dict(self) -> dict[str, object]:
        return {"privilege": self.privilege, "on": self.on, "granted": self.granted}


def wanted(scope: str) -> tuple[tuple[str, str, str | None], ...]:
    """The privileges of ``scope`` (see the module docstring)."""
    if scope not in SCOPES:
        raise UsageError(f"'{scope}' is not a scope; use one of {', '.join(SCOPES)}.")
    extra = (WRITE if scope in ("write", "admin") else ()) + (ADMIN if scope == "admin" else ())
    return READ + extra


@translated()
def grant(conn: Connection, role: str, scope: str) -> list[Grant]:
    """Grant ``role`` what aicrm needs at ``scope``, in one transaction; returns each
    privilege, granted or held already. Raises :class:`UsageError` for an unknown
    scope or role, or a database not migrated yet, and :class:`PrerequisiteFailed`
    when the connected user may not grant (it is not the tables' owner)."""
    needed = wanted(scope)
    row = conn.execute(ROLE, (role,)).fetchone()
    if row is None:
        raise UsageError(
            f"There is no role '{role}'. Create it first (as a role with CREATEROLE), e.g. "
            f"CREATE ROLE {sql.Identifier(role).as_string(conn)} LOGIN PASSWORD '…'; then "
            "run this again."
        )
    found: list[Grant] = []
    if row[0]:
        return found  # a superuser holds every privilege; nothing to grant
    if not _exists(conn, "leads") or not _exists(conn, "lead_statuses"):
        raise UsageError(
            "The database is not at aicrm's newest version (no leads or lead_statuses); run "
            "'aicrm db migrate' first, then grant."
        )
    who = sql.Identifier(role)
    try:
        with conn.transaction():
            schema = str(_one(conn, SCHEMA))
            if _one(conn, HAS_SCHEMA, (role,)):
                found.append(Grant("USAGE", f"schema {schema}", False))
            else:
                conn.execute(
                    sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), who)
                )
                found.append(Grant("USAGE", f"schema {schema}", True))
            for relation, privilege, column in needed:
                if not _exists(conn, relation):
                    continue  # e.g. a table of a later version, absent here
                found.append(_grant_one(conn, role, relation, privilege, column))
            missing = [g for g in found if g.granted and not _holds(conn, role, g)]
            if missing:
                raise PrerequisiteFailed(
                    f"The grants did not take (e.g. {missing[0].privilege} on {missing[0].on}): "
                    "the connected user does not own the tables. Connect as their owner (the "
                    "role that runs 'aicrm db migrate') and run this again. Nothing was granted."
                )
    except psycopg.errors.InsufficientPrivilege:
        raise PrerequisiteFailed(
            "The connected user may not grant on aicrm's tables. Connect as their owner (the "
            "role that runs 'aicrm db migrate') and run this again. Nothing was granted."
        ) from None
    return found


def _grant_one(
    conn: Connection, role: str, relation: str, privilege: str, column: str | None
) -> Grant:
    assert privilege in PRIVILEGES
    on = relation if column is None else f"{relation} ({column})"
    if column is None:
        held = _one(conn, HAS_TABLE, (role, relation, privilege))
    else:
        held = _one(conn, HAS_COLUMN, (role, relation, column, privilege))
    if held:
        return Grant(privilege, on, False)
    target = sql.Identifier(relation)
    if column is None:
        statement = sql.SQL("GRANT {} ON {} TO {}").format(
            script.privilege(privilege), target, sql.Identifier(role)
        )
    else:
        statement = sql.SQL("GRANT {} ({}) ON {} TO {}").format(
            script.privilege(privilege), sql.Identifier(column), target, sql.Identifier(role)
        )
    conn.execute(statement)
    return Grant(privilege, on, True)


def _holds(conn: Connection, role: str, grant: Grant) -> bool:
    if grant.privilege == "USAGE":
        return bool(_one(conn, HAS_SCHEMA, (role,)))
    relation, _, column = grant.on.partition(" (")
    if column:
        return bool(_one(conn, HAS_COLUMN, (role, relation, column.rstrip(")"), grant.privilege)))
    return bool(_one(conn, HAS_TABLE, (role, relation, grant.privilege)))


def _exists(conn: Connection, relation: str) -> bool:
    return bool(_one(conn, EXISTS, (relation,)))


def _one(conn: Connection, query: str, params: tuple[object, ...] = ()) -> object:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


__all__ = ["SCOPES", "Grant", "grant", "wanted"]
