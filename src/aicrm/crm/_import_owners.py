"""Owners of imported leads by the assignment rules: round-robin, set-based.

A lead file's row without an owner (no ``owner_id`` column, or a blank one) gets the
owner the assignment rules give a new lead of its source (:mod:`aicrm.crm.users`,
migration 012's ``aicrm_next_owner``), as a lead created alone would: the source's own
rule, else the rule for any source; in turn among the rule's active users, starting
after the rule's ``last_user_id``, in file order. A row with an owner keeps it and does
not move any turn.

It is a few statements whatever the file's size, not a function call per row: the
rows are numbered within their rule (a window function), row *i* of a rule with *n*
active users, *k* of whom come at or before the last one given a lead, goes to user
``(k + i) mod n``; the owners go into a TEMP table the INSERT joins, and each rule's
``last_user_id`` moves to the owner of its last row. The rules are locked (in id
order) first, so a lead created alone meanwhile waits for the import to commit and
then takes the next turn; the import's place in the round-robin is therefore the
one it had when it locked them, just before its INSERT.

A historical import (past leads, :mod:`aicrm.crm._import_history`) is not dealt: its
leads are history, not new work, and keep the owner their file gives them.
"""

from __future__ import annotations

from psycopg import sql

from aicrm.crm._import_checks import DEALT, ERRORS, STAGING, Checks
from aicrm.db import Connection
from aicrm.db.errors import translated

OWNERS = DEALT

# Every rule, locked in one order (two imports never wait for each other in a cycle).
LOCK_RULES = "SELECT id FROM assignment_rules ORDER BY id FOR UPDATE"

# (line, rule, owner) of each valid row without an owner that a rule applies to.
# members: each rule's active users in the round-robin's order (created_at, id), their
# position, how many there are (n) and how many come at or before the last user given
# a lead (k; 0 when none was). A rule without an active user deals nobody, as
# aicrm_next_owner returns NULL for it.
DEAL = """
CREATE TEMP TABLE {owners} ON COMMIT DROP AS
WITH todo AS (
    SELECT s.line, coalesce(own.id, anyone.id) AS rule_id
    FROM {staging} s
    LEFT JOIN assignment_rules own ON own.source = {source}
    LEFT JOIN assignment_rules anyone ON anyone.source IS NULL
    WHERE {unowned} {valid}
), numbered AS (
    SELECT line, rule_id, row_number() OVER (PARTITION BY rule_id ORDER BY line) - 1 AS turn
    FROM todo WHERE rule_id IS NOT NULL
), members AS (
    SELECT r.id AS rule_id, u.id AS user_id,
           row_number() OVER (PARTITION BY r.id ORDER BY u.created_at, u.id) - 1 AS pos,
           count(*) OVER (PARTITION BY r.id) AS n,
           count(*) FILTER (WHERE (u.created_at, u.id) <= (last.created_at, last.id))
               OVER (PARTITION BY r.id) AS k
    FROM assignment_rules r
    LEFT JOIN users last ON last.id = r.last_user_id
    JOIN users u ON u.active AND (cardinality(r.user_ids) = 0 OR u.id = ANY (r.user_ids))
), sizes AS (
    SELECT DISTINCT rule_id, n, k FROM members
)
SELECT t.line, t.rule_id, m.user_id AS owner_id
FROM numbered t
JOIN sizes z ON z.rule_id = t.rule_id
JOIN members m ON m.rule_id = t.rule_id AND m.pos = (z.k + t.turn) % z.n
"""

# Each rule's turn moves to the owner of its last row.
ADVANCE = """
WITH last AS (SELECT rule_id, max(line) AS line FROM {owners} GROUP BY rule_id)
UPDATE assignment_rules r SET last_user_id = o.owner_id
FROM last JOIN {owners} o USING (rule_id, line)
WHERE r.id = last.rule_id
"""


@translated()
def deal(conn: Connection, checks: Checks, skip_errors: bool) -> bool:
    """Deal owners to the staged rows without one (in a TEMP table the INSERT joins,
    :meth:`Checks.insert_statement`) and move the rules' turns. False, with nothing
    done, when there is no rule."""
    if not conn.execute(LOCK_RULES).fetchall():
        return False
    source = checks.spec.inserted(checks, "source") if checks.has("source") else None
    unowned = (
        sql.SQL("{} IS NULL").format(checks.value("owner_id"))
        if checks.has("owner_id")
        else sql.SQL("true")
    )
    valid = (
        sql.SQL("AND NOT EXISTS (SELECT 1 FROM {} e WHERE e.line = s.line)").format(ERRORS)
        if skip_errors
        else sql.SQL("")
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(OWNERS))
    conn.execute(
        sql.SQL(DEAL).format(
            owners=OWNERS,
            staging=STAGING,
            source=source if source is not None else sql.SQL("NULL::text"),
            unowned=unowned,
            valid=valid,
        )
    )
    conn.execute(sql.SQL("ANALYZE {}").format(OWNERS))
    conn.execute(sql.SQL(ADVANCE).format(owners=OWNERS))
    return True


__all__ = ["OWNERS", "deal"]
