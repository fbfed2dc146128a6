"""Migration 005: row-level update history with WHEN clauses, the guard of converted
leads only where it matters, leads' fillfactor."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
import pytest

from aicrm.db.script import trusted
from aicrm.migrate import loader
from tests.conftest import Database

LEAD = "00000000-0000-0000-0000-00000000a005"


def _history(db: Database, row_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = db.execute(
        "SELECT operation, actor, changes FROM crm_history WHERE row_id = %s ORDER BY id",
        (row_id,),
    )
    return [(str(op), str(actor), changes) for op, actor, changes in rows]


def _as(db: Database, actor: str, statement: LiteralString, params: tuple[Any, ...] = ()) -> int:
    with db.connect() as conn:
        conn.execute("SELECT set_config('aicrm.actor', %s, true)", (actor,))
        return conn.execute(statement, params).rowcount


def _lead(db: Database, lead_id: str = LEAD, email: str = "h@x.org") -> None:
    _as(
        db,
        "alice",
        "INSERT INTO leads (id, email, source) VALUES (%s, %s, 'web')",
        (lead_id, email),
    )


def test_ai_only_updates_record_nothing_and_mixed_ones_only_tracked_columns(
    crm_db: Database,
) -> None:
    _lead(crm_db)
    _as(
        crm_db, "scorer",
        "UPDATE leads SET ai_score = 0.4, ai_annotations = '{\"m\": {\"values\": {}}}', "
        "updated_at = now() WHERE id = %s",
        (LEAD,),
    )  # fmt: skip
    _as(crm_db, "bob", "UPDATE leads SET status = status, source = 'web' WHERE id = %s", (LEAD,))
    _as(
        crm_db, "carol",
        "UPDATE leads SET status = 'contacted', ai_score = 0.9, updated_at = now() "
        "WHERE id = %s",
        (LEAD,),
    )  # fmt: skip
    history = _history(crm_db, LEAD)
    assert [(op, actor) for op, actor, _ in history] == [("insert", "alice"), ("update", "carol")]
    assert history[1][2] == {"status": ["new", "contacted"]}


def test_a_set_based_update_records_only_the_rows_that_changed(crm_db: Database) -> None:
    ids = [f"00000000-0000-0000-0000-00000000b00{i}" for i in range(4)]
    for i, key in enumerate(ids):
        _lead(crm_db, key, f"m{i}@x.org")
    done = _as(
        crm_db, "dave",
        "UPDATE leads SET ai_score = 0.5, company_name = CASE WHEN email = 'm1@x.org' "
        "THEN 'Acme' ELSE company_name END WHERE id = ANY(%s::uuid[])",
        (ids,),
    )  # fmt: skip
    assert done == 4
    updates = crm_db.execute(
        "SELECT row_id::text, actor, changes FROM crm_history WHERE operation = 'update'"
    )
    assert updates == [(ids[1], "dave", {"company_name": [None, "Acme"]})]


def test_ai_columns_are_recorded_when_asked(crm_db: Database) -> None:
    _lead(crm_db)
    with crm_db.connect() as conn:
        conn.execute("SELECT set_config('aicrm.history_ai', 'on', true)")
        conn.execute("UPDATE leads SET ai_score = 0.25, updated_at = now() WHERE id = %s", (LEAD,))
    assert _history(crm_db, LEAD)[-1][2] == {"ai_score": [None, 0.25]}


def test_clients_and_contacts_record_tracked_updates_only(crm_db: Database) -> None:
    client = crm_db.scalar("INSERT INTO clients (name) VALUES ('Acme') RETURNING id::text")
    contact = crm_db.scalar(
        "INSERT INTO contacts (client_id, first_name) VALUES (%s, 'Ann') RETURNING id::text",
        (client,),
    )
    crm_db.execute("UPDATE clients SET ai_score = 0.1, ai_summary = 'big' WHERE id = %s", (client,))
    crm_db.execute("UPDATE contacts SET ai_annotations = '{\"x\": {}}' WHERE id = %s", (contact,))
    crm_db.execute("UPDATE clients SET industry = 'tech' WHERE id = %s", (client,))
    crm_db.execute("UPDATE contacts SET first_name = 'Anna' WHERE id = %s", (contact,))
    assert [c for op, _, c in _history(crm_db, client) if op == "update"] == [
        {"industry": [None, "tech"]}
    ]
    assert [c for op, _, c in _history(crm_db, contact) if op == "update"] == [
        {"first_name": ["Ann", "Anna"]}
    ]


def test_converted_leads_take_ai_updates_only(crm_db: Database) -> None:
    client = crm_db.scalar("INSERT INTO clients (name) VALUES ('Acme') RETURNING id::text")
    _lead(crm_db)
    crm_db.execute(
        "UPDATE leads SET is_converted = true, status = 'converted', conversion_date = now(), "
        "converted_to_client_id = %s WHERE id = %s",
        (client, LEAD),
    )
    crm_db.execute("UPDATE leads SET ai_score = 0.8, updated_at = now() WHERE id = %s", (LEAD,))
    assert crm_db.scalar("SELECT ai_score FROM leads WHERE id = %s", (LEAD,)) == pytest.approx(0.8)
    with pytest.raises(psycopg.Error) as refused:
        crm_db.execute("UPDATE leads SET email = 'other@x.org' WHERE id = %s", (LEAD,))
    assert refused.value.sqlstate == "AC001"
    with pytest.raises(psycopg.Error) as undeletable:
        crm_db.execute("DELETE FROM leads WHERE id = %s", (LEAD,))
    assert undeletable.value.sqlstate == "AC001"


def _verify(db: Database) -> list[tuple[Any, ...]]:
    (migration,) = [m for m in loader.load() if m.version == 5]
    found = []
    for check in migration.checks_of("verify"):
        found += db.execute(check.sql)
    return found


def test_a_new_column_is_reported_until_the_triggers_are_refreshed(crm_db: Database) -> None:
    assert _verify(crm_db) == []
    crm_db.execute("ALTER TABLE leads ADD COLUMN region text")
    missing = _verify(crm_db)
    assert {row[0] for row in missing} == {
        "leads.aicrm_history_update does not compare region",
        "leads.aicrm_guard_converted_lead does not compare region",
    }
    crm_db.execute("SELECT aicrm_history_refresh('leads')")
    assert _verify(crm_db) == []
    _lead(crm_db)
    crm_db.execute("UPDATE leads SET region = 'north' WHERE id = %s", (LEAD,))
    assert _history(crm_db, LEAD)[-1][2] == {"region": [None, "north"]}


def test_the_triggers_are_row_level_and_leads_have_room_for_hot_updates(crm_db: Database) -> None:
    rows = crm_db.execute(
        "SELECT c.relname, (g.tgtype & 1) = 1, g.tgqual IS NOT NULL FROM pg_trigger g "
        "JOIN pg_class c ON c.oid = g.tgrelid WHERE g.tgname = 'aicrm_history_update' "
        "ORDER BY 1"
    )
    assert rows == [("clients", True, True), ("contacts", True, True), ("leads", True, True)]
    options = crm_db.scalar("SELECT reloptions FROM pg_class WHERE relname = 'leads'")
    assert "fillfactor=50" in options


def test_the_way_back_restores_the_statement_level_triggers(crm_db: Database) -> None:
    (migration,) = [m for m in loader.load() if m.version == 5]
    assert migration.down_steps is not None
    _lead(crm_db)
    with crm_db.connect() as conn:
        for step in migration.down_steps:
            conn.execute(trusted(step.sql))
        levels = conn.execute(
            "SELECT DISTINCT (g.tgtype & 1) = 1 FROM pg_trigger g "
            "WHERE g.tgname = 'aicrm_history_update'"
        ).fetchall()
        assert levels == [(False,)]
        conn.execute("UPDATE leads SET ai_score = 0.3, source = 'fair' WHERE id = %s", (LEAD,))
        changes = conn.execute(
            "SELECT changes FROM crm_history WHERE row_id = %s AND operation = 'update'", (LEAD,)
        ).fetchall()
        assert changes == [({"source": ["web", "fair"]},)]
        assert conn.execute(
            "SELECT to_regprocedure('aicrm_history_update_row()') IS NULL"
        ).fetchone() == (True,)
        conn.rollback()
