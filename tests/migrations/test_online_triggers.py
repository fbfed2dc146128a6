"""The triggers of the online 001 keep the new columns, the archive and the legacy
values right for rows the application writes while the run goes on: the same writes
made during an online run (before the backfill, between its passes, after it) and
made before a transactional run give the same end state.

Writes happen while the runner waits at a phase boundary (AICRM_ONLINE_PAUSE_AT and
a lock the test holds), outside any of its transactions."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from aicrm.migrate._lock import CLASS_ID
from aicrm.migrate._online import PAUSE_ENV, PAUSE_OBJECT
from tests.conftest import Database
from tests.migrations.legacy import Every, build_every_anomaly
from tests.migrations.test_online_helpers import (
    aicrm,
    drop_twin,
    end_state,
    migrate,
    runner_waiting_at_pause,
    twin,
)
from tests.migrations.test_online_resume import BULK
from tests.support import wait_for

T0 = datetime(2024, 6, 1, tzinfo=UTC)
Write = Callable[[psycopg.Connection[tuple[object, ...]]], None]


def u(n: int, tag: int) -> str:
    return str(uuid.UUID(int=(tag << 64) + n))


def writes(every: Every, tag: int) -> Write:
    """A batch of the application's legacy writes, the same ids on every database:
    every kind of change to a conversion, and contacts with both parents."""

    def apply(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        at = T0 + timedelta(days=tag)
        sql = conn.execute
        lead, lead2, lead3 = u(1, tag), u(2, tag), u(3, tag)
        client, client2, client3 = u(11, tag), u(12, tag), u(13, tag)
        # a new lead, converted on both sides (the usual conversion)
        sql(
            "INSERT INTO leads (id, email, source, created_at, updated_at) "
            "VALUES (%s, %s, 'web', %s, %s)",
            (lead, f"new{tag}@example.org", at, at),
        )
        sql(
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, 'new client', %s, %s, %s)",
            (client, lead, at + timedelta(days=2), at),
        )
        sql("UPDATE leads SET client_id = %s WHERE id = %s", (client, lead))
        # a new lead converted on its side only, to an existing client
        sql(
            "INSERT INTO leads (id, email, client_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (lead2, f"side{tag}@example.org", every["C7"], at, at),
        )
        # an existing unconverted lead claimed by a new client; then an earlier claim wins
        sql(
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, 'claim', %s, %s, %s)",
            (client2, every["L10"], at, at),
        )
        sql(
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, 'earlier claim', %s, %s, %s)",
            (client3, every["L10"], at - timedelta(days=400), at),
        )
        # a lead's client_id set to disagree with its claim; a claim withdrawn
        sql("UPDATE leads SET client_id = %s WHERE id = %s", (every["C8"], every["L1"]))
        sql("UPDATE clients SET converted_from_lead_id = NULL WHERE id = %s", (every["C2a"],))
        # a claim moved to another lead (which had none)
        sql(
            "UPDATE clients SET converted_from_lead_id = %s WHERE id = %s",
            (lead3_id(sql, lead3, at), every["C4"]),
        )
        # contacts with both parents: the lead converted to that client, and not
        sql(
            "INSERT INTO contacts (id, lead_id, client_id, email, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'a', %s, %s)",
            (u(21, tag), lead, client, at, at),
        )
        sql(
            "INSERT INTO contacts (id, lead_id, client_id, email, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'b', %s, %s)",
            (u(22, tag), lead2, client, at, at),
        )
        sql("UPDATE contacts SET lead_id = %s WHERE id = %s", (lead, every["K5"]))
        # plain updates and a deleted, unreferenced lead
        sql(
            "UPDATE leads SET status = 'contacted', updated_at = %s WHERE id = %s",
            (at, every["L5"]),
        )
        sql(
            "UPDATE clients SET created_at = %s WHERE id = %s",
            (at - timedelta(days=900), every["C2a"]),
        )
        sql(
            "INSERT INTO leads (id, email, created_at, updated_at) VALUES (%s, 'gone', %s, %s)",
            (u(4, tag), at, at),
        )
        sql("DELETE FROM leads WHERE id = %s", (u(4, tag),))

    return apply


def lead3_id(sql: Callable[..., object], lead: str, at: datetime) -> str:
    sql(
        "INSERT INTO leads (id, email, created_at, updated_at) VALUES (%s, %s, %s, %s)",
        (lead, f"moved{lead[:4]}@example.org", at, at),
    )
    return lead


def run_with_writes(db: Database, at: list[tuple[str, Write]]) -> None:
    """Run the online 001 on ``db``, making each batch of writes while the runner
    waits at its point."""
    points = ",".join(point for point, _ in at)
    with psycopg.connect(db.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
        proc = aicrm(db, "db", "migrate", "--online", "--target", "001", env={PAUSE_ENV: points})
        try:
            for point, write in at:
                wait_for(lambda: runner_waiting_at_pause(db) or proc.poll() is not None, point)
                assert proc.poll() is None, proc.communicate()
                with psycopg.connect(db.url, autocommit=True) as app, app.transaction():
                    write(app)
                # let it past this point, and hold the lock again for the next one
                holder.execute("SELECT pg_advisory_unlock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
                wait_for(lambda: not runner_waiting_at_pause(db), f"the runner to leave {point}")
                holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
        finally:
            holder.execute("SELECT pg_advisory_unlock_all()")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err


@pytest.mark.parametrize(
    "points",
    [
        ("phase:backfill:leads",),
        ("phase:backfill:clients",),
        ("phase:backfill:contacts",),
        ("phase:contract:constraints", "phase:contract:switch"),
    ],
)
@pytest.mark.slow
def test_writes_during_the_run_end_as_if_made_before(db: Database, points: tuple[str, ...]) -> None:
    _same_as_made_before(
        db, lambda every: [(point, writes(every, n)) for n, point in enumerate(points, 1)]
    )


def _same_as_made_before(
    db: Database, batches_of: Callable[[Every], list[tuple[str, Write]]]
) -> None:
    """The online run with each batch of writes made while it waits at its point ends
    as a transactional run on a twin to which the same writes were made before."""
    every = build_every_anomaly(db, blocking=False)
    reference = twin(db, "tx")
    try:
        batches = batches_of(every)
        with psycopg.connect(reference.url, autocommit=True) as conn:
            for _, write in batches:
                with conn.transaction():
                    write(conn)
        run_with_writes(db, batches)
        migrate(reference, "--target", "001")
        _assert_same(end_state(db), end_state(reference))
    finally:
        drop_twin(reference)


def _assert_same(online: dict[str, Any], reference: dict[str, Any]) -> None:
    """Equal end states; on a difference, the rows that differ (readable)."""
    for table, rows in online["rows"].items():
        other = reference["rows"][table]
        extra = sorted(set(map(str, rows)) - set(map(str, other)))
        missing = sorted(set(map(str, other)) - set(map(str, rows)))
        assert (table, extra, missing) == (table, [], [])
    assert online["schema"] == reference["schema"]


@pytest.mark.slow
def test_contact_without_parent_refused_during_the_run(db: Database) -> None:
    build_every_anomaly(db, blocking=False)

    def write(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO contacts (email) VALUES ('nobody')")

    run_with_writes(db, [("phase:backfill:contacts", write)])


@pytest.mark.slow
def test_conversions_racing_a_real_run(db: Database) -> None:
    """No pauses: a writer converts leads (both legacy sides), adds earlier claims on
    existing leads and contacts with both parents, as fast as it can, while an online
    run goes from expand to the switch; its writes committed before the switch, replayed
    before a transactional run on a twin, give the same end state."""
    every = build_every_anomaly(db, blocking=False)
    db.execute(BULK)
    reference = twin(db, "tx")
    targets = [str(r[0]) for r in db.execute("SELECT id FROM leads ORDER BY id LIMIT 400")]
    committed: list[Write] = []
    stop = threading.Event()

    def one(n: int) -> Write:
        def apply(conn: psycopg.Connection[tuple[object, ...]]) -> None:
            at = T0 + timedelta(minutes=n)
            lead, client, claim = u(n, 90), u(n, 91), u(n, 92)
            conn.execute(
                "INSERT INTO leads (id, email, created_at, updated_at) VALUES (%s, %s, %s, %s)",
                (lead, f"race{n}@example.org", at, at),
            )
            conn.execute(
                "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
                "VALUES (%s, 'race', %s, %s, %s)",
                (client, lead, at, at),
            )
            conn.execute("UPDATE leads SET client_id = %s WHERE id = %s", (client, lead))
            conn.execute(
                "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
                "VALUES (%s, 'early claim', %s, %s, %s)",
                (claim, targets[n % len(targets)], T0 - timedelta(days=3000 - n), at),
            )
            conn.execute(
                "INSERT INTO contacts (id, lead_id, client_id, email, created_at, updated_at) "
                "VALUES (%s, %s, %s, 'race', %s, %s)",
                (u(n, 93), targets[(n * 7) % len(targets)], every["C1"], at, at),
            )

        return apply

    def writer() -> None:
        with psycopg.connect(db.url, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                write = one(n)
                try:
                    with conn.transaction():
                        write(conn)
                except psycopg.errors.UndefinedColumn:
                    return  # the switch happened: the legacy columns are gone
                committed.append(write)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: len(committed) >= 5, "the writer to start")
        migrate(db, "--target", "001", "--online", "--batch-seconds", "0.01")
    finally:
        stop.set()
        thread.join()
    try:
        assert len(committed) > 20, len(committed)
        with psycopg.connect(reference.url, autocommit=True) as conn:
            for write in committed:
                with conn.transaction():
                    write(conn)
        migrate(reference, "--target", "001")
        _assert_same(end_state(db), end_state(reference))
    finally:
        drop_twin(reference)


def untouched_row_write(every: Every, table: str) -> Write:
    """A write, during a backfill batch of ``table``, to a row of that batch that the
    backfill leaves alone (nothing of 001 to do for it yet), turning it into one that
    needs 001's rules. It must not wait for the batch (``lock_timeout`` says so if it
    does), and its trigger must get it right."""

    def apply(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute("SET LOCAL lock_timeout = '5s'")
        if table == "leads":  # L10, never converted, gets a claim
            conn.execute(
                "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
                "VALUES (%s, 'claim', %s, %s, %s)",
                (u(31, 7), every["L10"], T0, T0),
            )
        elif table == "clients":  # C1, a plain conversion, loses its claim
            conn.execute(
                "UPDATE clients SET converted_from_lead_id = NULL WHERE id = %s", (every["C1"],)
            )
        else:  # K4, a lead's contact only, gets a client too
            conn.execute(
                "UPDATE contacts SET client_id = %s WHERE id = %s", (every["C5"], every["K4"])
            )

    return apply


@pytest.mark.slow
def test_writes_to_rows_the_backfill_leaves_alone_do_not_wait_for_it(db: Database) -> None:
    """The backfill locks only the rows 001 has something to do for; a write inside a
    batch to one it left alone goes through at once and ends as if made before."""
    _same_as_made_before(
        db,
        lambda every: [
            (f"batch:{table}:1", untouched_row_write(every, table))
            for table in ("leads", "clients", "contacts")
        ],
    )
