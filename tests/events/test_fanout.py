"""The fan-out by snapshots (migration 015, aicrm.events._fanout): writers write events
only; the worker makes their deliveries once their transactions are visible, in
commit order, whatever the order of their ids; exactly once, however many workers."""

from __future__ import annotations

import threading

import pytest

from aicrm.crm import leads, session
from aicrm.events import Settings, Worker, add_subscription, fan_out
from tests.conftest import Database
from tests.events.receiver import receiving, wait_until

ONCE = Settings(batch=50, concurrency=2, max_attempts=3, backoff=0.05, poll=0.2)
DELIVERIES = "SELECT count(*) FROM webhook_deliveries"
EVENTS_OF = "SELECT id FROM crm_events WHERE record_id = %s ORDER BY id"
WAITING_FOR_A_LOCK = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"


def test_an_early_event_committed_late_is_delivered_in_order(crm_db: Database) -> None:
    """T1 writes its event first (the smaller id) and commits after T2: a fan-out
    between the two commits takes T2's only; the next one T1's. "After the last id
    fanned out" would skip T1's event for ever."""
    with (
        receiving() as rx,
        crm_db.connect() as early,
        crm_db.connect() as late,
        crm_db.connect() as worker,
    ):
        add_subscription(worker, rx.url, "lead.*")
        worker.commit()
        with session.transaction(early):
            first = leads.create_lead(early, email="early@x.org").id
            with session.transaction(late):
                second = leads.create_lead(late, email="late@x.org").id
            assert fan_out(worker) == 1  # T2's; T1 is still running
            leads.update_lead(early, first, {"status": "contacted"})
        (created, updated), (other,) = (
            crm_db.execute(EVENTS_OF, (first,)),
            crm_db.execute(EVENTS_OF, (second,)),
        )
        assert created[0] < other[0] < updated[0]  # ids are not in commit order
        assert fan_out(worker) == 2  # T1's two events, now that it committed
        assert fan_out(worker) == 0
        Worker(crm_db.target(), ONCE).run(once=True)
    got = [(r.event["record"]["id"], r.event["sequence"]) for r in rx.requests]
    assert sorted(got) == sorted(
        [(str(first), created[0]), (str(second), other[0]), (str(first), updated[0])]
    )
    mine = [n for record, n in got if record == str(first)]
    assert mine == [created[0], updated[0]]  # in order per record


def test_a_rolled_back_event_is_never_delivered(crm_db: Database) -> None:
    with crm_db.connect() as conn, crm_db.connect() as worker:
        add_subscription(worker, "http://127.0.0.1:9/hook", "*")
        worker.commit()
        conn.execute("BEGIN")
        leads.create_lead(conn, email="gone@x.org")
        assert fan_out(worker) == 0  # running: not visible yet
        conn.rollback()
        assert fan_out(worker) == 0  # rolled back: never
        with session.transaction(conn):
            leads.create_lead(conn, email="kept@x.org")
        assert fan_out(worker) == 1
    assert crm_db.scalar(DELIVERIES) == 1


def test_one_fan_out_at_a_time_and_never_twice(crm_db: Database) -> None:
    with crm_db.connect() as conn, crm_db.connect() as one, crm_db.connect() as two:
        add_subscription(conn, "http://127.0.0.1:9/a", "*")
        add_subscription(conn, "http://127.0.0.1:9/b", "lead.created")
        conn.commit()
        with session.transaction(conn):
            for n in range(3):
                leads.create_lead(conn, email=f"l{n}@x.org")
        with one.transaction():
            assert fan_out(one) == 6  # 3 to each subscription, not committed yet
            assert fan_out(two) is None  # the fan-out row is taken: skipped
        assert fan_out(two) == 0  # one's snapshot is stored: nothing new
        # a snapshot stored backwards (as if two fan-outs raced): the deliveries' key
        # still refuses a second delivery of an event to a subscription
        conn.execute("UPDATE webhook_fanout SET snapshot = pg_snapshot_in('1:1:')")
        conn.commit()
        assert fan_out(one) == 0
    assert crm_db.scalar(DELIVERIES) == 6


def test_two_workers_deliver_each_event_once(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        add_subscription(conn, rx.url, "lead.*")
        conn.commit()
        with session.transaction(conn):
            for n in range(40):
                leads.create_lead(conn, email=f"w{n}@x.org")
        workers = [Worker(crm_db.target(), ONCE) for _ in range(2)]
        threads = [threading.Thread(target=w.run, kwargs={"once": True}) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert crm_db.scalar(DELIVERIES) == 40
    assert sum(w.delivered for w in workers) == 40
    assert len(rx.ids()) == len(set(rx.ids())) == 40


def test_a_subscription_gets_the_events_committed_after_it(crm_db: Database) -> None:
    """As with 013's trigger: what was committed before the subscription is not fanned
    out to it, even by a fan-out that comes later (replay reaches it)."""
    with crm_db.connect() as conn:
        with session.transaction(conn):
            leads.create_lead(conn, email="before@x.org")
        add_subscription(conn, "http://127.0.0.1:9/hook", "*")
        conn.commit()
        with session.transaction(conn):
            after = leads.create_lead(conn, email="after@x.org").id
        assert fan_out(conn) == 1
    assert crm_db.scalar("SELECT record_id FROM webhook_deliveries") == after


@pytest.mark.slow
def test_a_downgrade_fans_out_what_is_left_and_the_trigger_again(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        add_subscription(conn, "http://127.0.0.1:9/hook", "*")
        conn.commit()
        with session.transaction(conn):
            leads.create_lead(conn, email="left@x.org")
    assert crm_db.scalar(DELIVERIES) == 0  # not fanned out yet
    down = crm_db.cli("db", "downgrade", "014")
    assert down.returncode == 0, down.stderr
    assert crm_db.scalar(DELIVERIES) == 1  # by 015's down file
    with crm_db.connect() as conn, session.transaction(conn):
        leads.create_lead(conn, email="trigger@x.org")
    assert crm_db.scalar(DELIVERIES) == 2  # by 014's trigger, in the writer's transaction
    up = crm_db.cli("db", "migrate")
    assert up.returncode == 0, up.stderr
    with crm_db.connect() as conn:
        assert fan_out(conn) == 0  # what 014 wrote is not fanned out again


def test_a_subscription_removed_during_a_fan_out_stops_nothing(crm_db: Database) -> None:
    """The fan-out's statement sees the subscription, whose removal commits before the
    deliveries' foreign key check: that fan-out gives way, the next one does the rest."""
    with crm_db.connect() as conn, crm_db.connect() as remover:
        gone = add_subscription(conn, "http://127.0.0.1:9/gone", "*").subscription.id
        add_subscription(conn, "http://127.0.0.1:9/kept", "*")
        conn.commit()
        with session.transaction(conn):
            leads.create_lead(conn, email="race@x.org")
        remover.execute("DELETE FROM webhook_subscriptions WHERE id = %s", (gone,))
        result: list[int | None] = []
        with crm_db.connect() as worker:
            pid = worker.info.backend_pid
            thread = threading.Thread(target=lambda: result.append(fan_out(worker)))
            thread.start()
            wait_until(
                lambda: crm_db.scalar(WAITING_FOR_A_LOCK, (pid,)) == "Lock",
                what="the fan-out's foreign key check waiting for the removal",
            )
            remover.commit()
            thread.join(60)
            assert not thread.is_alive()
            assert result == [None]
            assert fan_out(worker) == 1  # the kept subscription's, on the next pass
    assert (
        crm_db.scalar("SELECT count(*) FROM webhook_deliveries WHERE subscription_id = %s", (gone,))
        == 0
    )
