"""Issue #12 point 2: what depends on the columns 001 drops is found before anything
changes, all at once, before the backup; the run refuses (exit 3) and its advice works."""

from __future__ import annotations

from pathlib import Path

import pytest

from aicrm.db.script import trusted
from aicrm.errors import UsageError
from aicrm.migrate import _dependents as dependents, loader
from tests.conftest import Database
from tests.migrations.legacy import run_json
from tests.production import Shape, production
from tests.support import MIGRATIONS, schema_dump

NO_STATUSES = Shape(custom_statuses=False)

EVERY_KIND = """
CREATE FUNCTION lead_client_atomic(x uuid) RETURNS uuid LANGUAGE sql
BEGIN ATOMIC SELECT client_id FROM leads WHERE id = x; END;
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at = now(); RETURN NEW; END $$;
CREATE TRIGGER leads_client_changed BEFORE UPDATE OF client_id ON leads
    FOR EACH ROW EXECUTE FUNCTION stamp();
CREATE FUNCTION check_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.client_id IS NULL THEN NEW.status = 'new'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER leads_check_client BEFORE INSERT ON leads
    FOR EACH ROW EXECUTE FUNCTION check_client();
CREATE RULE leads_unlinked AS ON UPDATE TO leads WHERE new.client_id IS NULL
    DO ALSO UPDATE clients SET name = name WHERE false;
CREATE POLICY leads_linked ON leads USING (client_id IS NOT NULL);
ALTER TABLE clients ADD COLUMN origin text
    GENERATED ALWAYS AS (converted_from_lead_id::text) STORED;
CREATE INDEX leads_client_idx ON leads (client_id);
CREATE STATISTICS leads_client_status ON status, client_id FROM leads;
CREATE PUBLICATION crm_pub FOR TABLE leads (id, client_id);
"""


def test_the_declaration_is_beside_001_and_its_checksum_unchanged() -> None:
    m001 = loader.load()[1]
    cols = [(c.table, c.column) for c in dependents.declared(m001)]
    assert cols == [("leads", "client_id"), ("clients", "converted_from_lead_id")]
    assert "aicrm:drops" not in (MIGRATIONS / "001_resolve_circular_fk.sql").read_text()


def test_a_malformed_declaration_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"expects table\.column"):
        dependents.parse("-- aicrm:drops Leads-client_id\n", "x.checks.sql")


def test_production_dependents_refused_before_the_backup(db: Database) -> None:
    with production(db, NO_STATUSES):
        before = schema_dump(db)
        result, report = run_json(db, "db", "migrate")
        assert result.returncode == 3, result.stderr
        assert report["backup"] is None
        backups = Path(db.env["BACKUP_DIR"])
        assert not backups.exists() or not list(backups.iterdir())
        assert schema_dump(db) == before
        found = {(d["kind"], d["name"]): d for d in report["dependents"]}
        assert set(found) == {
            ("view", "sales_pipeline"),
            ("materialized view", "client_origins"),
            ("function", "lead_client(uuid)"),
        }
        function = found[("function", "lead_client(uuid)")]
        assert not function["tracked"]
        assert function["lines"] == ["line 2: SELECT client_id FROM leads WHERE id = $1"]
        view = found[("view", "sales_pipeline")]
        assert any("client_id" in line for line in view["lines"])
        # One line on stderr naming all three, and the text report shows the lines.
        text = db.cli("db", "migrate")
        assert text.returncode == 3
        assert text.stderr.count("\n") == 1, text.stderr
        for name in ("sales_pipeline", "client_origins", "lead_client(uuid)"):
            assert name in text.stderr
        assert "textual search" in text.stdout
        assert "line 2: SELECT client_id FROM leads WHERE id = $1" in text.stdout


@pytest.mark.slow
def test_following_the_advice_drop_and_change_then_migrates(db: Database) -> None:
    with production(db, NO_STATUSES):
        refused, report = run_json(db, "db", "migrate")
        assert refused.returncode == 3
        for d in report["dependents"]:
            advice = d["advice"]
            assert advice.startswith("Do: DROP "), advice
            db.execute(advice.removeprefix("Do: ").split(";")[0])
            assert "converted_to_client_id" in advice or "client's id" in advice
        up = db.cli("db", "migrate")
        assert up.returncode == 0, up.stdout + up.stderr
        db.execute(
            "CREATE FUNCTION lead_client(lead uuid) RETURNS uuid LANGUAGE sql STABLE AS "
            "$$ SELECT converted_to_client_id FROM leads WHERE id = $1 $$"
        )
        lead = db.scalar("SELECT id FROM leads WHERE is_converted LIMIT 1")
        assert db.scalar("SELECT lead_client(%s)", (lead,)) is not None


def test_every_kind_of_dependent_is_found_at_once(db: Database) -> None:
    with production(db, NO_STATUSES):
        db.execute(EVERY_KIND)
        result, report = run_json(db, "db", "migrate", "--compat-window", "--rebuild-dependents")
        assert result.returncode == 3, result.stderr
        kinds = {(d["kind"], d["name"], d["blocking"]) for d in report["dependents"]}
        expected = {
            ("function", "lead_client_atomic(uuid)", True),
            ("trigger", "leads_client_changed ON leads", True),
            ("trigger function", "check_client()", True),
            ("rule", "leads_unlinked ON leads", True),
            ("policy", "leads_linked ON leads", True),
            ("generated column", "clients.origin", True),
            ("index", "leads_client_idx", False),
            ("statistics object", "public.leads_client_status", True),
            ("view", "sales_pipeline", True),
            ("materialized view", "client_origins", True),
            ("function", "lead_client(uuid)", True),
        }
        if db.server.major >= 15:
            expected.add(("publication", "crm_pub ON leads", True))
        assert expected <= kinds, kinds - expected
        # With the window, views and textual functions are handled; the rest is named.
        message = result.stderr
        named = ("lead_client_atomic", "leads_client_changed", "check_client", "clients.origin")
        assert all(name in message for name in named), message
        assert "sales_pipeline" not in message
        assert "rerun with" not in message


def test_aicrm_own_objects_are_not_dependents(db: Database) -> None:
    db.execute(trusted((MIGRATIONS / "000_original_schema.sql").read_text()))
    result, report = run_json(db, "db", "migrate", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert report["dependents"] == []


@pytest.mark.slow
def test_the_online_mode_refuses_the_same_way_before_anything(db: Database) -> None:
    with production(db, NO_STATUSES):
        before = schema_dump(db)
        result = db.cli("db", "migrate", "--online")
        assert result.returncode == 3, result.stdout + result.stderr
        assert "view sales_pipeline (leads.client_id)" in result.stderr
        assert "rerun with --compat-window --rebuild-dependents" in result.stderr
        assert schema_dump(db) == before
        # Its advice, followed (online still), works: the window opens in the switch.
        up = db.cli("db", "migrate", "--online", "--compat-window", "--rebuild-dependents")
        assert up.returncode == 0, up.stdout + up.stderr
        assert db.scalar("SELECT count(*) FROM sales_pipeline") == 6
