"""The fan-out: each committed event becomes a delivery for every subscription that wants it.

Writers only write their events (``crm_events``, migration 013's triggers); the
delivery worker inserts the deliveries, in batches, at the start of every claim pass
(migration 015, docs/events-and-webhooks.md, "Fan-out"). Which events are new is
decided by snapshots, as PgQ does: ``webhook_fanout`` holds the snapshot of the last
fan-out; a fan-out takes every event whose transaction (``crm_events.xid``) is visible
in its own statement's snapshot and was not in the stored one, then stores its own.

Why not event ids or a horizon of the oldest running transaction: ids are handed out
in insertion order, not commit order, so "after the last id" skips an event whose
transaction began early and committed late; and a horizon releases a later
transaction's event before an earlier-committed one of the same record may be seen.
Visibility follows commit order: an event is fanned out exactly once, in the first
fan-out whose snapshot sees its transaction committed.

One fan-out at a time: it locks the ``webhook_fanout`` row (``SKIP LOCKED``: a lane
that finds it taken goes on to claim, the other lane's fan-out will do); and the
deliveries' key (``ON CONFLICT DO NOTHING``) is the second guard.
"""

from __future__ import annotations

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import Conflict

# The row is locked first, in its own statement: the fan-out statement's snapshot is
# then taken after any other fan-out committed, so it is never older than the stored one.
# It returns the stored snapshot's xmin: every transaction before it was visible in it.
LOCK = "SELECT pg_snapshot_xmin(snapshot)::text FROM webhook_fanout FOR UPDATE SKIP LOCKED"
# In one statement, so that the snapshot stored is the one the events were chosen by
# (pg_current_snapshot() is the statement's). The xmin comes as a parameter, a value
# the planner sees: it walks the index on xid from there (with the bound taken from the
# stored row inside the statement, it scanned every event by id and filtered).
# A subscription gets the events committed after it was created (its snapshot, since),
# as 013's trigger gave them; NULL: created before 015, every new event.
FAN_OUT = """
WITH cur AS (SELECT pg_current_snapshot() AS snapshot),
prev AS (SELECT snapshot FROM webhook_fanout),
added AS (
    INSERT INTO webhook_deliveries (subscription_id, event_id, record_id)
    SELECT s.id, e.id, e.record_id
    FROM prev, cur, crm_events e
    JOIN webhook_subscriptions s
      ON s.active AND (e.type = ANY (s.events) OR '*' = ANY (s.events)
                       OR e.record_kind || '.*' = ANY (s.events))
    WHERE e.xid >= %(xmin)s::xid8
      AND pg_visible_in_snapshot(e.xid, cur.snapshot)
      AND NOT pg_visible_in_snapshot(e.xid, prev.snapshot)
      AND (s.since IS NULL OR NOT pg_visible_in_snapshot(e.xid, s.since))
    ON CONFLICT (subscription_id, event_id) DO NOTHING
    RETURNING 1
),
stored AS (
    UPDATE webhook_fanout SET snapshot = cur.snapshot, updated_at = now() FROM cur
)
SELECT count(*) FROM added
"""


@translated()
def fan_out(conn: Connection) -> int | None:
    """Insert the deliveries of the events committed since the last fan-out, in a
    transaction of its own (or the caller's); returns how many, or None when another
    session is fanning out at this moment (it will have them) or a subscription was
    removed while it ran (nothing was stored: the next fan-out does it again)."""
    try:
        with translated(), conn.transaction():
            locked = conn.execute(LOCK).fetchone()
            if locked is None:
                return None
            row = conn.execute(FAN_OUT, {"xmin": locked[0]}).fetchone()
    except Conflict:
        # The deliveries' foreign key (ON CONFLICT DO NOTHING leaves no other conflict):
        # the statement saw a subscription whose removal committed before the check.
        # Not a worker's error: the next pass no longer sees the subscription. (A
        # read-only server, ReadOnly, a Conflict too, fans nothing out either: the
        # claim that follows says so.)
        return None
    assert row is not None
    return int(row[0])


__all__ = ["fan_out"]
