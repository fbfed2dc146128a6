"""Migration 001 resolves conversions before its table locks, from a snapshot, then
applies under the locks what was written meanwhile: writes that land between the two
(held there by the pause point ``before-lock:001_resolve_circular_fk``) end exactly as
if they had been made before the run, on a twin database migrated after them."""

from __future__ import annotations

from typing import LiteralString

import psycopg
import pytest

from aicrm.migrate._lock import CLASS_ID
from aicrm.migrate._online import PAUSE_ENV, PAUSE_OBJECT
from tests.conftest import Database
from tests.migrations.legacy import Legacy, day, new_id
from tests.migrations.test_online_helpers import (
    aicrm,
    drop_twin,
    end_state,
    runner_waiting_at_pause,
    twin,
)
from tests.support import wait_for

pytestmark = pytest.mark.slow

POINT = "before-lock:001_resolve_circular_fk"


def legacy_database(db: Database) -> dict[str, str]:
    """A small legacy CRM: clean conversions, one-sided ones, leads not converted."""
    legacy = Legacy(db)
    try:
        ids: dict[str, str] = {}
        for n in range(3):
            ids[f"lead{n}"], ids[f"client{n}"] = legacy.converted(lead_created=day(n))
        ids["plain_lead"] = legacy.lead()
        ids["other_plain_lead"] = legacy.lead()
        ids["lead_side"] = legacy.lead()
        ids["lead_side_client"] = legacy.client()
        legacy.set_lead_client(ids["lead_side"], ids["lead_side_client"])
        ids["spare_client"] = legacy.client(created=day(300))
        ids["claimed_only"] = legacy.lead()  # converted on the client's side only
        ids["claimer"] = legacy.client(lead=ids["claimed_only"])
        ids["contact"] = legacy.contact(lead=ids["plain_lead"])
        return ids
    finally:
        legacy.close()


def writes(ids: dict[str, str], *, delete: bool) -> list[tuple[LiteralString, tuple[object, ...]]]:
    """Writes of every kind 001 resolves: a new lead converted on its own side, a new
    client claiming an unconverted lead, a lead's client_id updated, an earlier client
    claiming a converted lead (it wins), a contact given both parents, a client's claim
    dropped; with ``delete``, the client of a conversion deleted too (the lead itself
    untouched: only the count of the rows seen before the locks tells)."""
    done: list[tuple[LiteralString, tuple[object, ...]]] = [
        (
            "INSERT INTO leads (id, email, client_id, created_at, updated_at) "
            "VALUES (%s, 'late@example.org', %s, %s, %s)",
            (new_id(), ids["spare_client"], day(50), day(500)),
        ),
        (
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, 'late client', %s, %s, %s)",
            (new_id(), ids["plain_lead"], day(200), day(500)),
        ),
        (
            "UPDATE leads SET client_id = %s WHERE id = %s",
            (ids["spare_client"], ids["other_plain_lead"]),
        ),
        (
            "INSERT INTO clients (id, name, converted_from_lead_id, created_at, updated_at) "
            "VALUES (%s, 'earlier claim', %s, %s, %s)",
            (new_id(), ids["lead0"], day(10), day(500)),
        ),
        (
            "UPDATE contacts SET client_id = %s WHERE id = %s",
            (ids["client1"], ids["contact"]),
        ),
        (
            "UPDATE clients SET converted_from_lead_id = NULL WHERE id = %s",
            (ids["client1"],),
        ),
    ]
    if delete:
        done.append(("DELETE FROM clients WHERE id = %s", (ids["claimer"],)))
    return done


def runner_locks_on_leads(db: Database) -> list[str]:
    return [
        str(row[0])
        for row in db.execute(
            "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE a.application_name = 'aicrm migrate' AND l.granted "
            "AND l.relation = 'leads'::regclass"
        )
    ]


def apply(db: Database, statements: list[tuple[LiteralString, tuple[object, ...]]]) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        for query, params in statements:
            conn.execute(query, params)


@pytest.mark.parametrize("delete", [False, True], ids=["writes", "writes-and-a-delete"])
def test_writes_between_the_snapshot_and_the_locks_are_resolved(db: Database, delete: bool) -> None:
    ids = legacy_database(db)
    before = twin(db, "before")
    try:
        statements = writes(ids, delete=delete)
        # The twin: the same writes, made before the migration.
        apply(before, statements)
        done = before.cli("db", "migrate", "--target", "001")
        assert done.returncode == 0, done.stderr

        # The database: the writes land while the runner waits between its unlocked
        # steps and its table locks.
        with psycopg.connect(db.url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
            proc = aicrm(db, "db", "migrate", "--target", "001", env={PAUSE_ENV: POINT})
            try:
                wait_for(
                    lambda: runner_waiting_at_pause(db) or proc.poll() is not None,
                    "the runner to reach its table locks",
                )
                assert proc.poll() is None, proc.communicate()
                # The unlocked steps ran (the runner read leads) and no lock is taken yet.
                assert set(runner_locks_on_leads(db)) == {"AccessShareLock"}
                apply(db, statements)
            finally:
                holder.execute("SELECT pg_advisory_unlock(%s, %s)", (CLASS_ID, PAUSE_OBJECT))
                out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err + out

        assert end_state(db) == end_state(before)
        late = db.scalar(
            "SELECT converted_to_client_id::text FROM leads WHERE email = 'late@example.org'"
        )
        assert late == ids["spare_client"]
        claimed = db.scalar(
            "SELECT c.name FROM leads l JOIN clients c ON c.id = l.converted_to_client_id "
            "WHERE l.id = %s",
            (ids["plain_lead"],),
        )
        assert claimed == "late client"
        if delete:
            assert (
                db.scalar("SELECT is_converted FROM leads WHERE id = %s", (ids["claimed_only"],))
                is False
            )
    finally:
        drop_twin(before)
