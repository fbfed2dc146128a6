"""Migration 007: the history triggers are generated from the catalogue (one branch
per table, the columns to leave out as trigger arguments) and record exactly what
005's and 002's functions recorded; its down file restores those functions."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import psycopg

from aicrm import config
from aicrm.db import target
from aicrm.db.script import trusted
from aicrm.migrate import Options, downgrade, loader, migrate, verify
from tests.conftest import Database, head_migrations

LEAD = "00000000-0000-0000-0000-00000000a007"
CLIENT = "00000000-0000-0000-0000-00000000c007"

# Updates that touch every kind of column (text, jsonb with nulls inside, real,
# timestamps, uuid, boolean), ai_* ones with aicrm.history_ai off and on, and no-ops.
WORKLOAD: list[tuple[str, str, tuple[Any, ...]]] = [
    ("off", "INSERT INTO clients (id, name) VALUES (%s, 'Acme')", (CLIENT,)),
    ("off", "INSERT INTO leads (id, email, source, attributes, ai_score) "
            "VALUES (%s, 'h@x.org', 'web', '{\"a\": null, \"n\": 1.50}', 0.25)", (LEAD,)),
    ("off", "UPDATE leads SET first_name = 'Ada', attributes = '{\"a\": {\"b\": null}}' "
            "WHERE id = %s", (LEAD,)),
    ("off", "UPDATE leads SET ai_score = 0.5, ai_annotations = '{\"m\": [1, null]}' "
            "WHERE id = %s", (LEAD,)),
    ("on", "UPDATE leads SET ai_score = 0.75, company_name = 'Engines' WHERE id = %s", (LEAD,)),
    ("off", "UPDATE leads SET first_name = 'Ada', updated_at = now() WHERE id = %s", (LEAD,)),
    ("off", "UPDATE leads SET last_name = NULL, status = 'contacted' WHERE id = %s", (LEAD,)),
    ("off", "UPDATE clients SET industry = 'software', attributes = '{\"k\": \"é\"}' "
            "WHERE id = %s", (CLIENT,)),
    ("off", "INSERT INTO contacts (lead_id, email, first_name) VALUES (%s, 'c@x.org', 'Cy')",
     (LEAD,)),
    ("off", "SELECT * FROM aicrm_convert_lead(%s, %s, false, false, 'bob')", (LEAD, CLIENT)),
    ("on", "UPDATE leads SET ai_summary = 'hot' WHERE id = %s", (LEAD,)),
    ("on", "INSERT INTO leads (email, ai_summary) VALUES ('ai@x.org', 'with ai on')", ()),
    ("off", "DELETE FROM contacts WHERE email = 'c@x.org'", ()),
]  # fmt: skip


def _play(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Runs WORKLOAD and returns the history it wrote (ids and times left out)."""
    first = conn.execute("SELECT coalesce(max(id), 0) FROM crm_history").fetchone()
    for ai, statement, params in WORKLOAD:
        conn.execute("SELECT set_config('aicrm.history_ai', %s, true)", (ai,))
        conn.execute("SELECT set_config('aicrm.actor', 'alice', true)")
        conn.execute(statement, params)
    rows = conn.execute(
        "SELECT table_name, operation, actor, changes - 'id' - 'created_at' - 'updated_at' "
        "- 'conversion_date' - 'converted_to_client_id' - 'client_id' "
        "FROM crm_history WHERE id > %s ORDER BY id",
        (first[0] if first else 0,),
    ).fetchall()
    return [tuple(r) for r in rows]


def _down_steps() -> list[str]:
    (migration,) = [m for m in loader.load(head_migrations()) if m.version == 7]
    assert migration.down_steps is not None
    return [step.sql for step in migration.down_steps]


def test_the_generated_triggers_record_what_005_and_002_recorded(crm_db: Database) -> None:
    with crm_db.connect() as conn:
        ours = _play(conn)
        conn.rollback()
        for step in _down_steps():
            conn.execute(trusted(step))
        theirs = _play(conn)
        conn.rollback()
    assert ours == theirs
    updates = [r for r in ours if r[1] == "update" and r[0] == "leads"]
    assert updates[0][3] == {
        "first_name": [None, "Ada"],
        "attributes": [{"a": None, "n": 1.50}, {"a": {"b": None}}],
    }
    assert {"ai_score": [0.5, 0.75], "company_name": [None, "Engines"]} in [u[3] for u in updates]
    assert all("ai_annotations" not in u[3] for u in updates)  # written with history_ai off
    inserted_with_ai = [r for r in ours if r[1] == "insert" and "ai_summary" in r[3]]
    assert [r[3]["ai_summary"] for r in inserted_with_ai] == ["with ai on"]
    other_inserts = [r for r in ours if r[1] == "insert" and r not in inserted_with_ai]
    assert other_inserts and all("ai_score" not in r[3] for r in other_inserts)


def test_the_triggers_carry_their_lists_and_a_refresh_follows_new_columns(
    crm_db: Database,
) -> None:
    (migration,) = [m for m in loader.load(head_migrations()) if m.version == 7]

    def stale() -> list[str]:
        found: list[str] = []
        for check in migration.checks_of("verify"):
            found += [str(row[0]) for row in crm_db.execute(check.sql)]
        return found

    definition = crm_db.scalar(
        "SELECT pg_get_triggerdef(g.oid) FROM pg_trigger g WHERE g.tgname = 'aicrm_history_insert' "
        "AND g.tgrelid = 'leads'::regclass"
    )
    assert "aicrm_history_insert('ai_score', 'ai_summary', 'ai_annotations', 'updated_at')" in (
        definition
    )
    assert stale() == []

    crm_db.execute("ALTER TABLE leads ADD COLUMN region text, ADD COLUMN ai_region text")
    assert sorted(stale()) == [
        "aicrm_history_update_row() does not compare leads.ai_region",
        "aicrm_history_update_row() does not compare leads.region",
        "leads.aicrm_history_delete does not list the columns to leave out: "
        "ai_score, ai_summary, ai_annotations, updated_at, ai_region",
        "leads.aicrm_history_insert does not list the columns to leave out: "
        "ai_score, ai_summary, ai_annotations, updated_at, ai_region",
    ]
    crm_db.execute("SELECT aicrm_history_refresh('leads')")
    assert stale() == []
    crm_db.execute(
        "INSERT INTO leads (id, email, region, ai_region) VALUES (%s, 'r@x.org', 'n', 'x')",
        (LEAD,),
    )
    crm_db.execute("UPDATE leads SET region = 'south', ai_region = 'y' WHERE id = %s", (LEAD,))
    history = crm_db.execute(
        "SELECT operation, changes FROM crm_history WHERE row_id = %s ORDER BY id", (LEAD,)
    )
    assert history[0][1]["region"] == "n" and "ai_region" not in history[0][1]
    assert history[1] == ("update", {"region": ["n", "south"]})

    # A dropped column needs the refresh too (the WHEN clause names it: the drop is
    # refused until the triggers go); afterwards updates work and are recorded.
    crm_db.execute("DROP TRIGGER aicrm_history_update ON leads")
    crm_db.execute("DROP TRIGGER aicrm_guard_converted_lead ON leads")
    crm_db.execute("ALTER TABLE leads DROP COLUMN region")
    crm_db.execute("SELECT aicrm_history_refresh('leads')")
    assert stale() == []
    crm_db.execute("UPDATE leads SET first_name = 'Zed' WHERE id = %s", (LEAD,))
    assert crm_db.execute(
        "SELECT changes FROM crm_history WHERE row_id = %s ORDER BY id DESC LIMIT 1", (LEAD,)
    ) == [({"first_name": [None, "Zed"]},)]


def test_007_up_and_down_leave_the_schema_as_006_had_it(db: Database, tmp_path: Path) -> None:
    where = target(config.resolve({"DATABASE_URL": db.url, "AICRM_HOME": db.env["AICRM_HOME"]}))
    options = Options(backup_dir=tmp_path / "backups", migrations_dir=head_migrations())
    definitions = (
        "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
        "WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'aicrm\\_%' "
        "UNION ALL SELECT g.tgname || ' ON ' || g.tgrelid::regclass::text, "
        "pg_get_triggerdef(g.oid) FROM pg_trigger g WHERE NOT g.tgisinternal ORDER BY 1, 2"
    )
    migrate(dataclasses.replace(options, target_version=6), where)
    at_006 = db.execute(definitions)
    migrate(options, where)
    assert [r.check for r in verify(where, head_migrations()) if not r.ok] == []
    assert db.execute(definitions) != at_006
    downgrade(6, options, where)
    assert db.execute(definitions) == at_006
