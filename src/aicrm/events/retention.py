"""Retention of the outbox: old deliveries and the events nobody needs any more go.

``crm_events`` and ``webhook_deliveries`` (migration 013) would otherwise grow forever.
:func:`prune` removes, for a horizon of ``days`` before now:

* deliveries that were **delivered** before the horizon;
* with ``include_dead``, also **dead** deliveries that died (were last tried) before
  it. By default dead ones are kept, whatever their age: they are what a person still
  has to look at (``aicrm webhooks list``) and may replay;
* events that occurred before the horizon and that no delivery still points at (no
  pending one, no dead one kept, no delivered one newer than the horizon, such as a
  replay's). A pending delivery's event is never removed, nor an event the worker has
  not fanned out yet (not visible in ``webhook_fanout``'s snapshot, migration 015):
  its deliveries do not exist yet.

It walks the old events in their order (the ``(occurred_at, id)`` index) in batches
of ``batch`` events, one short transaction each: first the batch's prunable
deliveries, then its events without a delivery left. No long lock is held, the
worker and new changes go on meanwhile, and the work is bounded by the number of old
events, not by the size of the tables. An event replayed at the very moment its batch
is pruned makes one of the two fail (the foreign key refuses the other): run it
again. ``aicrm webhooks replay --since`` reaches only as far back as what is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import pq, sql

from aicrm.db import Connection
from aicrm.db.errors import translated
from aicrm.errors import InvalidInput, UsageError

BATCH = 5000  # events per transaction
MAX_DAYS = 100_000  # make_interval() takes an int; a horizon before year 1700 is enough

HORIZON = "SELECT now() - make_interval(days => %s)"

# What may go: a delivery delivered before the horizon, or (include_dead) dead before it.
PRUNABLE = """
((d.state = 'delivered' AND d.delivered_at < %(horizon)s)
 OR (%(dead)s AND d.state = 'dead' AND d.updated_at < %(horizon)s))
"""

# The next batch of old events, after the last one seen (keyset on the index).
NEXT_BATCH = """
SELECT id, occurred_at FROM crm_events
WHERE occurred_at < %(horizon)s
  AND (occurred_at, id) > (%(after_at)s::timestamptz, %(after_id)s::bigint)
ORDER BY occurred_at, id
LIMIT %(limit)s
"""
# {prunable} is PRUNABLE, composed in with psycopg.sql.
DELETE_DELIVERIES = """
DELETE FROM webhook_deliveries d WHERE d.event_id = ANY (%(ids)s) AND {prunable}
"""
# An event of 015 (with an xid) goes only once a fan-out has seen it; NULL: fanned out
# by 013's trigger in its own transaction. A fan-out running meanwhile has not stored
# its snapshot for this statement, and its deliveries' foreign key holds their events.
FANNED_OUT = """
(e.xid IS NULL OR pg_visible_in_snapshot(e.xid, (SELECT f.snapshot FROM webhook_fanout f)))
"""
# {fanned_out} is FANNED_OUT, composed in with psycopg.sql.
DELETE_EVENTS = """
DELETE FROM crm_events e
WHERE e.id = ANY (%(ids)s) AND {fanned_out}
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
"""

# A dry run's counts: what the walk above would remove.
COUNT_DELIVERIES = """
SELECT count(*) FROM webhook_deliveries d JOIN crm_events e ON e.id = d.event_id
WHERE e.occurred_at < %(horizon)s AND {prunable}
"""
COUNT_EVENTS = """
SELECT count(*) FROM crm_events e
WHERE e.occurred_at < %(horizon)s AND {fanned_out}
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id AND NOT {prunable})
"""


# The statements as run, composed once.
DELETING_DELIVERIES = sql.SQL(DELETE_DELIVERIES).format(prunable=sql.SQL(PRUNABLE))
DELETING_EVENTS = sql.SQL(DELETE_EVENTS).format(fanned_out=sql.SQL(FANNED_OUT))
COUNTING_DELIVERIES = sql.SQL(COUNT_DELIVERIES).format(prunable=sql.SQL(PRUNABLE))
COUNTING_EVENTS = sql.SQL(COUNT_EVENTS).format(
    prunable=sql.SQL(PRUNABLE), fanned_out=sql.SQL(FANNED_OUT)
)


@dataclass(frozen=True)
class Pruned:
    """What :func:`prune` removed (or, for a dry run, would remove)."""

    deliveries: int
    events: int
    horizon: datetime
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "deliveries": self.deliveries,
            "events": self.events,
            "horizon": self.horizon.isoformat(),
            "dry_run": self.dry_run,
        }


@translated()
def prune(
    conn: Connection,
    days: int,
    *,
    include_dead: bool = False,
    dry_run: bool = False,
    batch: int = BATCH,
) -> Pruned:
    """Remove delivered deliveries (and dead ones with ``include_dead``) and events
    older than ``days`` days, as the module's docstring says; with ``dry_run`` only
    count them. Raises :class:`InvalidInput` for ``days`` below 1 (or absurdly large)
    and :class:`UsageError` inside an open transaction (each batch commits on its own).
    """
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"--older-than must be a number of days from 1 to {MAX_DAYS:,}, not {days}."
        )
    if batch < 1:
        raise InvalidInput(f"A batch is at least one event, not {batch}.")
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise UsageError("Pruning commits batch by batch: call it outside a transaction.")
    with conn.transaction():
        row = conn.execute(HORIZON, (days,)).fetchone()
    assert row is not None
    horizon: datetime = row[0]
    params: dict[str, Any] = {"horizon": horizon, "dead": include_dead}
    if dry_run:
        with conn.transaction():
            deliveries = _count(conn, COUNTING_DELIVERIES, params)
            events = _count(conn, COUNTING_EVENTS, params)
        return Pruned(deliveries, events, horizon, True)
    deliveries = events = 0
    after: tuple[datetime | str, int] = ("-infinity", 0)
    while True:
        with conn.transaction():
            step = {**params, "after_at": after[0], "after_id": after[1], "limit": batch}
            rows = conn.execute(NEXT_BATCH, step).fetchall()
            if not rows:
                break
            ids = [row[0] for row in rows]
            deliveries += conn.execute(DELETING_DELIVERIES, {**params, "ids": ids}).rowcount
            events += conn.execute(DELETING_EVENTS, {"ids": ids}).rowcount
        after = (rows[-1][1], rows[-1][0])
        if len(rows) < batch:
            break
    return Pruned(deliveries, events, horizon, False)


def _count(conn: Connection, query: sql.Composed, params: dict[str, Any]) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


__all__ = ["BATCH", "Pruned", "prune"]
