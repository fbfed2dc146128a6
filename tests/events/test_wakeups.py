"""Migration 014: a writer's transaction notifies the delivery worker only while one of
its lanes sleeps (webhook_sleepers); a busy worker costs writers no NOTIFY, whose
commit-time lock would make their commits queue one behind another."""

from __future__ import annotations

import threading

import psycopg

from aicrm.crm import leads, session
from aicrm.events import Settings, Worker, add_subscription, fan_out
from tests.conftest import Database
from tests.events.receiver import receiving, wait_until

MARK = "SELECT pg_notify('aicrm_events', 'mark')"
SLEEPERS = "SELECT count(*) FROM webhook_sleepers"


def _payloads_until_mark(listener: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The notifications before the marker, in commit order (NOTIFY's guarantee)."""
    seen: list[str] = []
    for note in listener.notifies(timeout=60):
        if note.payload == "mark":
            return seen
        seen.append(note.payload)
    raise AssertionError("the marker notification never came")


def test_writers_notify_only_while_a_worker_sleeps(crm_db: Database) -> None:
    with crm_db.connect() as conn, crm_db.connect(autocommit=True) as listener:
        listener.execute("LISTEN aicrm_events")
        add_subscription(conn, "http://127.0.0.1:9/hook", "*")
        with session.transaction(conn):
            leads.create_lead(conn, email="quiet@x.org")
        conn.execute(MARK)
        conn.commit()
        assert _payloads_until_mark(listener) == []  # nobody asleep: no NOTIFY
        # the writer wrote its event only (migration 015); the worker's fan-out its delivery
        assert crm_db.scalar("SELECT count(*) FROM webhook_deliveries") == 0
        assert fan_out(conn) == 1
        listener.execute("INSERT INTO webhook_sleepers (pid) VALUES (pg_backend_pid())")
        with session.transaction(conn):
            leads.create_lead(conn, email="woken@x.org")
        conn.execute(MARK)
        conn.commit()
        assert _payloads_until_mark(listener) == [""]  # a sleeper: one NOTIFY
        # asked once per transaction (016), by whichever write comes first: an update
        with session.transaction(conn):
            first = leads.create_lead(conn, email="first@x.org")
        with session.transaction(conn):
            leads.update_lead(conn, first.id, {"status": "contacted"})
            leads.create_lead(conn, email="second@x.org")
        conn.execute(MARK)
        conn.commit()
        assert _payloads_until_mark(listener) == ["", ""]


def test_a_sleeping_worker_is_woken_and_clears_stale_sleepers(crm_db: Database) -> None:
    # a lane killed while asleep left its row (a pid no session has)
    crm_db.execute("INSERT INTO webhook_sleepers (pid) VALUES (-1)")
    settings = Settings(batch=50, concurrency=2, poll=600.0, lanes=2)
    stop = threading.Event()
    with receiving() as rx, crm_db.connect() as conn:
        add_subscription(conn, rx.url, "lead.*")
        running = Worker(crm_db.target(), settings)
        thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
        thread.start()
        try:
            # both lanes asleep: the worker registered once, the stale row gone
            wait_until(
                lambda: crm_db.scalar("SELECT array_agg(pid > 0) FROM webhook_sleepers") == [True],
                what="the worker asleep, the stale row gone",
            )
            with session.transaction(conn):
                leads.create_lead(conn, email="wake@x.org")
            # the poll is 600 s: only the NOTIFY wakes a lane before the test's time is up
            rx.wait_for(lambda got: len(got) == 1)
        finally:
            stop.set()
            thread.join(30)
        assert not thread.is_alive()
    assert rx.requests[0].event["data"]["record"]["email"] == "wake@x.org"
    assert crm_db.scalar(SLEEPERS) == 0  # stopped lanes deregister
