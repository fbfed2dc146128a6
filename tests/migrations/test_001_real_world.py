"""Migration 001 on databases that differ from the textbook 000: other constraint
names, extra columns, indexes and triggers, a non-superuser owner, and objects that
depend on the columns 001 drops."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Database
from tests.migrations.legacy import (
    Legacy,
    build_every_anomaly,
    foreign_keys,
    legacy_references,
    rows_as_json,
    run_json,
    trigger_modes,
    updated_at,
)
from tests.support import schema_dump, table_digests

TRIGGERS = """
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := clock_timestamp(); RETURN NEW; END $$;
CREATE FUNCTION tripwire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'user trigger % fired on %', TG_NAME, TG_TABLE_NAME; END $$;
CREATE TRIGGER leads_touch BEFORE UPDATE ON leads
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER leads_off BEFORE INSERT OR UPDATE OR DELETE ON leads
    FOR EACH ROW EXECUTE FUNCTION tripwire();
ALTER TABLE leads DISABLE TRIGGER leads_off;
CREATE TRIGGER clients_always AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION tripwire();
ALTER TABLE clients ENABLE ALWAYS TRIGGER clients_always;
CREATE TRIGGER contacts_replica BEFORE INSERT OR UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION tripwire();
ALTER TABLE contacts ENABLE REPLICA TRIGGER contacts_replica;
CREATE TRIGGER contacts_origin BEFORE UPDATE OR DELETE ON contacts
    FOR EACH ROW EXECUTE FUNCTION tripwire();
CREATE TRIGGER contacts_statement AFTER UPDATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION tripwire();
"""


@pytest.mark.slow
def test_unrecognised_constraint_names_are_found_by_their_columns(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    db.execute('ALTER TABLE leads RENAME CONSTRAINT leads_client_id_fkey TO "Lead → Client"')
    db.execute(
        "ALTER TABLE clients RENAME CONSTRAINT clients_converted_from_lead_id_fkey TO fk_origin"
    )
    # a second, redundant key on the same column, as old schemas collect them
    db.execute(
        "ALTER TABLE leads ADD CONSTRAINT legacy_dup FOREIGN KEY (client_id) "
        "REFERENCES clients (id) ON DELETE SET NULL NOT VALID"
    )
    keys, references = foreign_keys(db), legacy_references(db)

    up, report = run_json(db, "db", "migrate", "--target", "001")
    assert up.returncode == 0, up.stderr
    dropped = {name for name in report["objects_dropped"] if name.startswith("constraint")}
    assert dropped == {
        "constraint leads.Lead → Client FOREIGN KEY (client_id) REFERENCES clients(id)",
        "constraint leads.legacy_dup FOREIGN KEY (client_id) REFERENCES clients(id) "
        "ON DELETE SET NULL NOT VALID",
        "constraint clients.fk_origin FOREIGN KEY (converted_from_lead_id) REFERENCES leads(id)",
    }
    assert all(check["ok"] for check in report["verification"])

    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert foreign_keys(db) == keys  # the same names, definitions and validation
    assert legacy_references(db) == references


@pytest.mark.slow
def test_extra_columns_indexes_and_triggers_are_kept_and_not_fired(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    db.execute("ALTER TABLE leads ADD COLUMN region text DEFAULT 'emea'")
    db.execute("CREATE INDEX leads_region_idx ON leads (region)")
    db.execute("CREATE INDEX leads_client_lookup ON leads (client_id) WHERE client_id IS NOT NULL")
    db.execute("ALTER TABLE clients ADD COLUMN tier int")
    db.execute("CREATE UNIQUE INDEX contacts_email_key ON contacts (lower(email))")
    db.execute(TRIGGERS)
    modes, stamps, rows = trigger_modes(db), updated_at(db), rows_as_json(db)
    assert modes == {
        "leads.leads_touch": "O",
        "leads.leads_off": "D",
        "clients.clients_always": "A",
        "contacts.contacts_replica": "R",
        "contacts.contacts_origin": "O",
        "contacts.contacts_statement": "O",
    }

    up, report = run_json(db, "db", "migrate", "--target", "001")
    assert up.returncode == 0, up.stderr  # no tripwire fired
    assert trigger_modes(db) == modes
    assert updated_at(db) == stamps
    assert all(check["ok"] for check in report["verification"])
    indexes = {str(r[0]) for r in db.execute("SELECT indexname FROM pg_indexes")}
    assert {"leads_region_idx", "contacts_email_key"} <= indexes
    assert "leads_client_lookup" not in indexes  # its column is gone; the downgrade rebuilds it
    assert db.scalar("SELECT count(*) FROM leads WHERE region = 'emea'") == db.scalar(
        "SELECT count(*) FROM leads"
    )
    assert (
        db.scalar(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'clients' AND column_name = 'tier'"
        )
        == 1
    )

    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert trigger_modes(db) == modes
    assert rows_as_json(db) == rows  # updated_at and every other column as they were
    assert (
        db.scalar("SELECT indexdef FROM pg_indexes WHERE indexname = 'leads_client_lookup'")
        == "CREATE INDEX leads_client_lookup ON public.leads USING btree (client_id) "
        "WHERE (client_id IS NOT NULL)"
    )

    # And the updated_at trigger still works for the application.
    up_again, _ = run_json(db, "db", "migrate", "--target", "001")
    assert up_again.returncode == 0, up_again.stderr
    lead = db.scalar("SELECT id FROM leads LIMIT 1")
    before = db.scalar("SELECT updated_at FROM leads WHERE id = %s", (lead,))
    db.execute("UPDATE leads SET region = 'apac' WHERE id = %s", (lead,))
    assert db.scalar("SELECT updated_at FROM leads WHERE id = %s", (lead,)) != before


@pytest.fixture
def owner(db: Database) -> Iterator[str]:
    """A login role, not a superuser, owning the legacy tables; its connection URL."""
    role, password = f"crm_owner_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    db.execute(
        sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER PASSWORD {}")
        .format(sql.Identifier(role), sql.Literal(password))
        .as_string()
    )
    try:
        yield psycopg.conninfo.make_conninfo(db.url, user=role, password=password)
    finally:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.slow
def test_the_tables_owner_runs_it_without_superuser(db: Database, owner: str) -> None:
    build_every_anomaly(db, blocking=False)
    db.execute(TRIGGERS.split("CREATE TRIGGER clients_always")[0])  # leads' triggers
    role = psycopg.conninfo.conninfo_to_dict(owner)["user"]
    for table in ("leads", "clients", "contacts"):
        db.execute(
            sql.SQL("ALTER TABLE {} OWNER TO {}")
            .format(sql.Identifier(table), sql.Identifier(str(role)))
            .as_string()
        )
    db.execute(
        sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(str(role))).as_string()
    )
    modes, stamps, references = trigger_modes(db), updated_at(db), legacy_references(db)

    as_owner = {"DATABASE_URL": owner}
    dry, report = run_json(db, "db", "migrate", "--target", "001", "--dry-run", env=as_owner)
    assert dry.returncode == 0, dry.stderr
    privilege = next(p for p in report["prerequisites"] if p["name"] == "privilege")
    assert "superuser" not in privilege["detail"], privilege
    up = db.cli("db", "migrate", "--target", "001", env=as_owner)
    assert up.returncode == 0, up.stderr
    assert trigger_modes(db) == modes and updated_at(db) == stamps
    assert db.cli("db", "verify", env=as_owner).returncode == 0

    down = db.cli("db", "downgrade", "000", env=as_owner)
    assert down.returncode == 0, down.stderr
    assert legacy_references(db) == references
    assert trigger_modes(db) == modes and updated_at(db) == stamps


def test_a_view_on_a_dropped_column_stops_it_and_nothing_changes(db: Database) -> None:
    legacy = Legacy(db)
    legacy.converted()
    legacy.close()
    db.execute("CREATE VIEW lead_clients AS SELECT id, client_id FROM leads")
    schema, digests = schema_dump(db), table_digests(db)

    result = db.cli("db", "migrate", "--target", "001")

    # Found before anything changes (docs/dependents.md): exit 3, the view named.
    assert result.returncode == 3
    assert "view lead_clients (leads.client_id)" in result.stderr
    assert "Nothing was changed" in result.stderr
    assert schema_dump(db) == schema and table_digests(db) == digests


DROP_CONSTRAINT = sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}")
ADD_DEFERRED_KEY = sql.SQL(
    "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} (id) "
    "DEFERRABLE INITIALLY DEFERRED NOT VALID"
)


@pytest.mark.slow
def test_deferrable_keys_and_a_referencing_table(db: Database) -> None:
    every = build_every_anomaly(db)
    for table, name, column, referenced in (
        ("leads", "leads_client_id_fkey", "client_id", "clients"),
        ("clients", "clients_converted_from_lead_id_fkey", "converted_from_lead_id", "leads"),
        ("contacts", "contacts_lead_id_fkey", "lead_id", "leads"),
        ("contacts", "contacts_client_id_fkey", "client_id", "clients"),
    ):
        db.execute(DROP_CONSTRAINT.format(sql.Identifier(table), sql.Identifier(name)))
        db.execute(
            ADD_DEFERRED_KEY.format(
                sql.Identifier(table),
                sql.Identifier(name),
                sql.Identifier(column),
                sql.Identifier(referenced),
            )
        )
    db.execute(
        "CREATE TABLE notes (id serial PRIMARY KEY, contact_id uuid REFERENCES contacts "
        "DEFERRABLE INITIALLY DEFERRED)"
    )
    db.execute("INSERT INTO notes (contact_id) VALUES (%s)", (every["K1"],))
    keys, references, rows = foreign_keys(db), legacy_references(db), rows_as_json(db)

    up, _ = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")
    assert up.returncode == 0, up.stderr
    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr

    assert foreign_keys(db) == keys
    assert legacy_references(db) == references and rows_as_json(db) == rows
