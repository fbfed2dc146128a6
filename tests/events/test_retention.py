"""Retention of the outbox (aicrm.events.retention): old delivered deliveries and the
events nobody needs go, in batches; a pending delivery's event is never pruned, dead
ones are kept unless asked, a dry run changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from aicrm.crm import leads, session
from aicrm.errors import InvalidInput, UsageError
from aicrm.events import add_subscription, fan_out, prune
from tests.conftest import Database

# The events and deliveries as they are, to compare before and after.
STATE = """
SELECT e.id, e.record_id, d.state
FROM crm_events e LEFT JOIN webhook_deliveries d ON d.event_id = e.id
ORDER BY e.id
"""
AGE_EVENTS = "UPDATE crm_events SET occurred_at = occurred_at - make_interval(days => %s)"
SET_DELIVERY = """
UPDATE webhook_deliveries SET state = %s,
    delivered_at = CASE WHEN %s = 'delivered' THEN now() - make_interval(days => %s) END,
    updated_at = now() - make_interval(days => %s)
WHERE record_id = %s
"""


def _seed(db: Database) -> dict[str, uuid.UUID]:
    """Six leads' creations, 40 days old, each delivered to one subscription in some
    state, one update nobody subscribed to (no delivery), and a lead created now."""
    made: dict[str, uuid.UUID] = {}
    with db.connect() as conn:
        add_subscription(conn, "http://127.0.0.1:9/hook", "lead.created")
        conn.commit()
        with session.transaction(conn):
            for name in ("old1", "old2", "old3", "dead", "pending", "recent"):
                made[name] = leads.create_lead(conn, email=f"{name}@x.org").id
            leads.update_lead(conn, made["old1"], {"status": "contacted"})
        assert fan_out(conn) == 6  # the worker's step: the creations' deliveries
    db.execute(AGE_EVENTS, (40,))
    states = {
        "old1": ("delivered", 40),
        "old2": ("delivered", 35),
        "old3": ("delivered", 31),
        "dead": ("dead", 39),
        "pending": ("pending", 40),
        "recent": ("delivered", 5),  # e.g. replayed 5 days ago
    }
    for name, (state, days) in states.items():
        db.execute(SET_DELIVERY, (state, state, days, days, made[name]))
    with db.connect() as conn, session.transaction(conn):
        made["new"] = leads.create_lead(conn, email="new@x.org").id  # now, pending
    with db.connect() as conn:
        assert fan_out(conn) == 1
    return made


def _records(db: Database) -> dict[uuid.UUID, list[Any]]:
    found: dict[uuid.UUID, list[Any]] = {}
    for _, record, state in db.execute(STATE):
        found.setdefault(record, []).append(state)
    return found


def test_prune_counts_keeps_pending_and_dead_and_dry_run_changes_nothing(
    crm_db: Database,
) -> None:
    made = _seed(crm_db)
    before = crm_db.execute(STATE)
    with crm_db.connect() as conn:
        dry = prune(conn, 30, dry_run=True)
        assert (dry.deliveries, dry.events, dry.dry_run) == (3, 4, True)
        assert crm_db.execute(STATE) == before
        # batches of two events: several transactions, the same result
        done = prune(conn, 30, batch=2)
    assert (done.deliveries, done.events, done.dry_run) == (3, 4, False)
    left = _records(crm_db)
    # old1's creation and update, old2's and old3's creations are gone
    assert set(left) == {made["dead"], made["pending"], made["recent"], made["new"]}
    assert left[made["pending"]] == ["pending"]  # a pending delivery keeps its event
    assert left[made["dead"]] == ["dead"]
    assert left[made["recent"]] == ["delivered"]  # delivered after the horizon
    with crm_db.connect() as conn:
        assert (prune(conn, 30).deliveries, prune(conn, 30).events) == (0, 0)
        dead = prune(conn, 30, include_dead=True, dry_run=True)
        assert (dead.deliveries, dead.events) == (1, 1)
        assert (prune(conn, 30, include_dead=True).events, prune(conn, 10).events) == (1, 0)
        # a shorter horizon reaches the delivery of 5 days ago; never the pending ones
        gone = prune(conn, 3, batch=1)
    assert (gone.deliveries, gone.events) == (1, 1)
    assert set(_records(crm_db)) == {made["pending"], made["new"]}


def test_days_below_one_and_an_open_transaction_are_refused(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        for days in (0, -3):
            with pytest.raises(InvalidInput, match="--older-than"):
                prune(conn, days)
        with conn.transaction(), pytest.raises(UsageError):
            prune(conn, 30)


def test_an_event_not_fanned_out_yet_is_never_pruned(crm_db: Database) -> None:
    """Its deliveries do not exist yet: without the fan-out's snapshot to go by, an old
    event nobody has a delivery of would look prunable."""
    with crm_db.connect() as conn:
        add_subscription(conn, "http://127.0.0.1:9/hook", "lead.created")
        conn.commit()
        with session.transaction(conn):
            wanted = leads.create_lead(conn, email="wanted@x.org").id
            unwanted = leads.create_lead(conn, email="unwanted@x.org").id
            leads.update_lead(conn, unwanted, {"status": "contacted"})  # nobody's
    crm_db.execute(AGE_EVENTS, (40,))
    with crm_db.connect() as conn:
        assert prune(conn, 30, dry_run=True).events == 0
        assert prune(conn, 30).events == 0
        assert crm_db.scalar("SELECT count(*) FROM crm_events") == 3
        assert fan_out(conn) == 2  # the creations, both wanted
        crm_db.execute(SET_DELIVERY, ("delivered", "delivered", 35, 35, wanted))
        gone = prune(conn, 30)
    # wanted's creation (delivered 35 days ago) and unwanted's update (fanned out, no
    # delivery) go; unwanted's pending creation keeps its event
    assert (gone.deliveries, gone.events) == (1, 2)
    assert _records(crm_db) == {unwanted: ["pending"]}
