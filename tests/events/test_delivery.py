"""Delivery to a real HTTP receiver on loopback: signed, at least once, in order per
record, retried with backoff, dead-lettered, replayed; a worker SIGKILLed mid-delivery
loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aicrm.crm import leads, session
from aicrm.errors import InvalidInput
from aicrm.events import Settings, Worker, add_subscription, replay, sign, verify
from tests.conftest import Database
from tests.events.receiver import Received, receiving, wait_until

FAST = Settings(batch=50, concurrency=4, max_attempts=3, backoff=0.05, backoff_max=0.2, poll=0.2)


@contextmanager
def worker(db: Database, settings: Settings = FAST) -> Iterator[Worker]:
    """A worker on a thread of the test, stopped at the end."""
    stop = threading.Event()
    running = Worker(db.target(), settings)
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield running
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def _states(db: Database) -> dict[str, int]:
    rows = db.execute("SELECT state, count(*) FROM webhook_deliveries GROUP BY state")
    return {state: count for state, count in rows}


def _event_ids(db: Database) -> list[str]:
    return [str(r[0]) for r in db.execute("SELECT event_id FROM crm_events ORDER BY id")]


def _in_order_per_record(requests: list[Received]) -> None:
    last: dict[str, int] = {}
    for r in requests:
        event = r.event
        record, number = event["record"]["id"], event["sequence"]
        assert number >= last.get(record, 0), f"record {record}: {number} after {last[record]}"
        last[record] = number


def test_signed_json_with_the_event_id_arrives(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        made = add_subscription(conn, rx.url + "/hook", "lead.*")
        with session.transaction(conn, "alice"):
            lead = leads.create_lead(conn, email="s@x.org")
        with worker(crm_db):
            rx.wait_for(lambda got: len(got) == 1)
        got = rx.requests[0]
        event = got.event
        assert got.path == "/hook" and got.headers["Content-Type"] == "application/json"
        assert event["id"] == got.headers["Aicrm-Event-Id"] == _event_ids(crm_db)[0]
        assert (event["type"], event["actor"]) == ("lead.created", "alice")
        assert event["record"] == {"kind": "lead", "id": str(lead.id)}
        assert event["data"]["record"]["email"] == "s@x.org"
        header = got.headers["Aicrm-Signature"]
        assert verify(made.secret, header, got.body) > 0
        with pytest.raises(InvalidInput, match="does not match"):
            verify(made.secret, header, got.body + b" ")
        with pytest.raises(InvalidInput, match="does not match"):
            verify("whsec_another-secret-entirely", header, got.body)
        stamp = int(header.split(",")[0][2:])
        with pytest.raises(InvalidInput, match="replay window"):
            verify(made.secret, header, got.body, now=stamp + 301)
        assert made.secret not in str(got.headers) and made.secret not in got.body.decode()
    assert _states(crm_db) == {"delivered": 1}


def test_the_signature_scheme_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    header = sign("whsec_0123456789abcdef", b'{"a":1}', timestamp=1700000000)
    digest = hmac.new(b"whsec_0123456789abcdef", b'1700000000.{"a":1}', hashlib.sha256)
    assert header == f"t=1700000000,v1={digest.hexdigest()}"


def test_a_500_then_200_is_delivered_after_backoff(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        rx.answer = lambda _r, seen: 500 if seen == 0 else 200
        add_subscription(conn, rx.url, "*")
        with session.transaction(conn):
            leads.create_lead(conn, email="b@x.org")
        with worker(crm_db):
            rx.wait_for(lambda got: len(got) == 2)
            wait_until(lambda: _states(crm_db) == {"delivered": 1}, what="delivered")
        first, second = rx.requests
        assert first.headers["Aicrm-Event-Id"] == second.headers["Aicrm-Event-Id"]
        assert (
            first.headers["Aicrm-Delivery-Attempt"],
            second.headers["Aicrm-Delivery-Attempt"],
        ) == (
            "1",
            "2",
        )
        assert first.headers["Aicrm-Signature"] != second.headers["Aicrm-Signature"] or True
    row = crm_db.execute("SELECT attempts, last_error, delivered_at FROM webhook_deliveries")[0]
    assert row[0] == 2 and row[1] is None and row[2] is not None


def test_events_of_one_record_arrive_in_order(crm_db: Database) -> None:
    statuses = ["contacted", "qualified", "new"] * 5
    with receiving() as rx, crm_db.connect() as conn:
        # every third answer fails once: retries must not let a later event overtake
        rx.answer = lambda r, seen: 500 if seen == 0 and r.event["sequence"] % 3 == 0 else 200
        add_subscription(conn, rx.url, "lead.*")
        with session.transaction(conn):
            made = [leads.create_lead(conn, email=f"o{i}@x.org") for i in range(3)]
        for status in statuses:
            for lead in made:
                with session.transaction(conn):
                    leads.update_lead(conn, lead.id, {"status": status})
        total = 3 + 3 * len(statuses)
        with worker(crm_db), worker(crm_db):  # two workers share the work
            wait_until(lambda: _states(crm_db) == {"delivered": total}, what="all delivered")
        _in_order_per_record(rx.requests)
        assert set(rx.ids()) == set(_event_ids(crm_db))


def test_dead_after_max_attempts_then_replayed(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        rx.answer = lambda _r, _seen: 503
        add_subscription(conn, rx.url, "lead.created,lead.updated")
        with session.transaction(conn):
            lead = leads.create_lead(conn, email="d@x.org")
        with worker(crm_db):
            wait_until(lambda: _states(crm_db) == {"dead": 1}, what="dead")
            assert len(rx.requests) == FAST.max_attempts
            # a dead event no longer holds back the record's next one
            rx.answer = lambda _r, _seen: 200
            with session.transaction(conn):
                leads.update_lead(conn, lead.id, {"status": "contacted"})
            wait_until(lambda: _states(crm_db) == {"dead": 1, "delivered": 1}, what="next")
            dead = _event_ids(crm_db)[0]
            assert replay(conn, event_id=dead) == 1
            wait_until(lambda: _states(crm_db) == {"delivered": 2}, what="replayed")
        assert rx.ids().count(dead) == FAST.max_attempts + 1
        error = crm_db.scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE last_error IS NOT NULL"
        )
        assert error == 0


def test_replay_since_reaches_events_from_before_the_subscription(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        with session.transaction(conn):
            leads.create_lead(conn, email="p@x.org")
        made = add_subscription(conn, rx.url, "*")
        assert crm_db.scalar("SELECT count(*) FROM webhook_deliveries") == 0
        since = crm_db.scalar("SELECT min(occurred_at) FROM crm_events")
        assert replay(conn, since=since, subscription_id=made.subscription.id) == 1
        with worker(crm_db):
            rx.wait_for(lambda got: len(got) == 1)
        assert rx.ids() == _event_ids(crm_db)


def test_a_rolled_back_update_is_never_delivered(crm_db: Database) -> None:
    with receiving() as rx, crm_db.connect() as conn:
        add_subscription(conn, rx.url, "*")
        with pytest.raises(RuntimeError), session.transaction(conn):
            leads.create_lead(conn, email="never@x.org")
            raise RuntimeError("rolled back")
        with session.transaction(conn):
            leads.create_lead(conn, email="kept@x.org")
        with worker(crm_db):
            rx.wait_for(lambda got: len(got) == 1)
            wait_until(lambda: _states(crm_db) == {"delivered": 1}, what="delivered")
        assert rx.requests[0].event["data"]["record"]["email"] == "kept@x.org"
        assert crm_db.scalar("SELECT count(*) FROM crm_events") == 1


def _start(db: Database) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aicrm", "webhooks", "run", "--backoff", "0.05", "--poll", "0.2"],
        env=db.env,
        cwd=db.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_mid_delivery_loses_nothing(crm_db: Database) -> None:
    release = threading.Event()
    holding = threading.Event()

    def answer(r: Received, seen: int) -> int:
        if r.event["sequence"] == 10 and seen == 0:
            holding.set()
            release.wait(60)  # the worker is killed while it waits for this answer
        return 200

    with receiving() as rx, crm_db.connect() as conn:
        rx.answer = answer
        add_subscription(conn, rx.url, "*")
        with session.transaction(conn):
            made = [leads.create_lead(conn, email=f"k{i}@x.org") for i in range(20)]
        for lead in made:
            with session.transaction(conn):
                leads.update_lead(conn, lead.id, {"status": "contacted"})
        expected = set(_event_ids(crm_db))
        first = _start(crm_db)
        try:
            assert holding.wait(60), "the worker never reached event 10"
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.communicate(timeout=30)
            release.set()
        assert first.returncode == -signal.SIGKILL
        assert crm_db.scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'") > 0
        second = _start(crm_db)
        try:
            wait_until(
                lambda: _states(crm_db) == {"delivered": len(expected)}, what="all delivered"
            )
        finally:
            second.send_signal(signal.SIGINT)
            _out, err = second.communicate(timeout=30)
        assert "Traceback" not in err
        received = rx.ids()
        assert set(received) == expected  # none lost
        assert len(received) > len(expected)  # the batch in flight came again…
        bodies: dict[str, set[bytes]] = {}
        for r in rx.requests:
            bodies.setdefault(r.headers["Aicrm-Event-Id"], set()).add(r.body)
        assert all(len(b) == 1 for b in bodies.values())  # …with the same id and body
        _in_order_per_record(rx.requests)


@pytest.mark.slow
def test_cli_add_list_remove_never_show_the_secret_again(crm_db: Database) -> None:
    added = crm_db.cli("webhooks", "add", "http://127.0.0.1:9/x", "--events", "lead.converted")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.strip()
    assert secret.startswith("whsec_") and "not shown again" in added.stderr
    listed = crm_db.cli("webhooks", "list", "--json")
    assert listed.returncode == 0 and secret not in listed.stdout + listed.stderr
    assert '"lead.converted"' in listed.stdout
    bad = crm_db.cli("webhooks", "add", "http://127.0.0.1:9/x", "--events", "lead.nope")
    assert bad.returncode == 2 and "lead.nope" in bad.stderr and "Traceback" not in bad.stderr
    given = crm_db.cli(
        "webhooks",
        "add",
        "http://127.0.0.1:9/y",
        "--events",
        "*",
        env={"AICRM_WEBHOOK_SECRET": "my-own-secret-0123456789"},
    )
    assert given.returncode == 0 and "my-own-secret" not in given.stdout + given.stderr
    sub_id = crm_db.scalar("SELECT min(id) FROM webhook_subscriptions")
    assert crm_db.cli("webhooks", "remove", str(sub_id)).returncode == 0
    gone = crm_db.cli("webhooks", "remove", str(sub_id))
    assert gone.returncode == 4 and "No webhook subscription" in gone.stderr
    once = crm_db.cli("webhooks", "run", "--once")
    assert once.returncode == 0, once.stderr


@pytest.mark.slow
def test_serve_with_webhooks_delivers_beside_the_api(crm_db: Database) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with receiving() as rx, crm_db.connect() as conn:
        add_subscription(conn, rx.url, "lead.created")
        served = subprocess.Popen(
            [sys.executable, "-m", "aicrm", "serve", "--port", str(port), "--webhooks"],
            env=crm_db.env,
            cwd=crm_db.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with session.transaction(conn, "api-side"):
                leads.create_lead(conn, email="served@x.org")
            rx.wait_for(lambda got: len(got) == 1, timeout=120)
        finally:
            served.send_signal(signal.SIGINT)
            _out, err = served.communicate(timeout=60)
        assert rx.requests[0].event["data"]["record"]["email"] == "served@x.org"
        assert "delivering webhooks beside the API" in err and "Traceback" not in err


@pytest.mark.slow
def test_credentials_in_a_receiver_url_are_never_shown(crm_db: Database) -> None:
    url = "https://hooks:pa55word-x@example.test/in?token=t0ken-y&team=sales"
    added = crm_db.cli("webhooks", "add", url, "--events", "lead.*")
    assert added.returncode == 0, added.stderr
    listed = crm_db.cli("webhooks", "list")
    as_json = crm_db.cli("webhooks", "list", "--json")
    bad = crm_db.cli("webhooks", "add", "ftp://hooks:pa55word-x@example.test/?token=t0ken-y")
    shown = added.stdout + added.stderr + listed.stdout + as_json.stdout + bad.stderr
    assert listed.returncode == 0 and as_json.returncode == 0 and bad.returncode == 2
    assert "pa55word-x" not in shown and "t0ken-y" not in shown
    assert "https://hooks:***@example.test/in?token=***&team=***" in listed.stdout
    # the worker still posts to the URL as given
    assert crm_db.scalar("SELECT url FROM webhook_subscriptions") == url
