"""The online form is part of the migration format: any migration can ship one.

A migration written for these tests (not 001) declares expand, a backfill, a
contract phase with an autocommit step, the switch and the abort; the engine runs
it online, resumes nothing it need not, and undoes it; the loader refuses what the
format forbids, with one-line messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Database
from tests.support import copy_migrations

CHANGE = """-- aicrm:lock leads
-- step: the domain of each lead's email, indexed
ALTER TABLE leads ADD COLUMN email_domain text NULL;
UPDATE leads SET email_domain = split_part(email, '@', 2);
CREATE INDEX leads_email_domain_idx ON leads (email_domain);
"""
VERIFY = """-- name: every_domain_set
-- kind: verify
-- description: every lead with an email has its domain
SELECT id FROM leads
WHERE email IS NOT NULL AND email_domain IS DISTINCT FROM split_part(email, '@', 2)
"""
ONLINE = """-- phase: expand
-- step: the column (instant: NULL, no default)
ALTER TABLE leads ADD COLUMN IF NOT EXISTS email_domain text NULL;

-- step: new and changed rows get their domain from now on
CREATE OR REPLACE FUNCTION migration_001_online_domain() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_domain := split_part(NEW.email, '@', 2);
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER migration_001_online_domain BEFORE INSERT OR UPDATE OF email ON leads
    FOR EACH ROW EXECUTE FUNCTION migration_001_online_domain();

-- step: the batch function
CREATE OR REPLACE FUNCTION migration_001_domains(t text, after uuid, size integer)
RETURNS TABLE (last_id uuid, done integer) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH batch AS (
        SELECT l.id FROM leads AS l WHERE after IS NULL OR l.id > after ORDER BY l.id LIMIT size
    ), updated AS (
        UPDATE leads AS l SET email_domain = split_part(l.email, '@', 2)
        FROM batch WHERE l.id = batch.id RETURNING l.id
    )
    SELECT max(updated.id::text)::uuid, count(*)::integer FROM updated;
END
$$;

-- phase: backfill leads by migration_001_domains

-- phase: contract index
-- step: the index, built without blocking writes
-- aicrm:autocommit
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_email_domain_idx ON leads (email_domain);

-- phase: switch
-- step: the trigger and functions go
DROP TRIGGER migration_001_online_domain ON leads;
DROP FUNCTION migration_001_online_domain();
DROP FUNCTION migration_001_domains(text, uuid, integer);

-- phase: abort
-- step: undo everything
DROP TRIGGER IF EXISTS migration_001_online_domain ON leads;
DROP FUNCTION IF EXISTS migration_001_online_domain();
DROP FUNCTION IF EXISTS migration_001_domains(text, uuid, integer);
DROP INDEX IF EXISTS leads_email_domain_idx;
ALTER TABLE leads DROP COLUMN IF EXISTS email_domain;
"""


def _folder(db: Database, tmp_path: Path, online: str = ONLINE) -> Path:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email) SELECT 'lead' || i || '@d' || (i % 7) || '.example' "
        "FROM generate_series(1, 1200) AS i"
    )
    (folder / "001_domains.sql").write_text(CHANGE)
    (folder / "001_domains.checks.sql").write_text(VERIFY)
    (folder / "online").mkdir()
    (folder / "online" / "001_domains.sql").write_text(online)
    return folder


@pytest.mark.slow
def test_a_new_migration_runs_online_from_its_declared_phases(db: Database, tmp_path) -> None:
    folder = _folder(db, tmp_path)
    result = db.cli("db", "migrate", "--online", "--json", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "applied online"
    phases = [s["step"] for s in report["steps"] if s["step"].startswith("phase ")]
    assert phases == ["phase expand", "phase backfill:leads", "phase contract:index",
                      "phase contract:switch"]  # fmt: skip
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
    assert db.scalar("SELECT count(*) FROM leads WHERE email_domain IS NULL") == 0
    assert db.scalar("SELECT count(DISTINCT email_domain) FROM leads") == 7
    assert db.scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'leads_email_domain_idx'::regclass"
    )
    assert db.scalar("SELECT to_regclass('aicrm_online_migration')") is None
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'migration_001%'") == 0
    assert db.cli("db", "verify", "--migrations-dir", str(folder)).returncode == 0


@pytest.mark.slow
def test_an_unfinished_run_of_a_new_migration_is_undone_by_its_abort(
    db: Database, tmp_path
) -> None:
    # A contract step that fails leaves the run recorded at that phase.
    failing = ONLINE.replace(
        "-- phase: switch", "-- step: fails\nSELECT 1 / 0;\n\n-- phase: switch", 1
    )
    folder = _folder(db, tmp_path, failing)
    result = db.cli("db", "migrate", "--online", "--migrations-dir", str(folder))
    assert result.returncode == 1
    assert "division by zero" in result.stderr and "'aicrm db downgrade 000'" in result.stderr
    status = json.loads(db.cli("db", "status", "--json", "--migrations-dir", str(folder)).stdout)
    assert status["online"]["phase"] == "contract:index"
    undo = db.cli("db", "downgrade", "000", "--migrations-dir", str(folder))
    assert undo.returncode == 0, undo.stderr
    assert (
        db.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'email_domain'"
        )
        == 0
    )
    assert db.scalar("SELECT to_regclass('aicrm_online_migration')") is None


def test_an_autocommit_step_outside_an_online_form_is_refused(db: Database, tmp_path) -> None:
    folder = _folder(db, tmp_path)
    (folder / "001_domains.sql").write_text(
        CHANGE
        + "-- step: concurrently\n-- aicrm:autocommit\nCREATE INDEX CONCURRENTLY x ON leads (id);\n"
    )
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert result.returncode == 2
    assert "autocommit step" in result.stderr and "online form" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0


@pytest.mark.slow
def test_a_malformed_online_form_is_refused(db: Database, tmp_path) -> None:
    folder = _folder(db, tmp_path, ONLINE.replace("-- phase: switch", "-- phase: swap", 1))
    result = db.cli("db", "migrate", "--online", "--migrations-dir", str(folder))
    assert result.returncode == 2
    assert "unknown phase 'swap'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_statement_timeout_bounds_each_statement_and_raising_it_works(
    db: Database, tmp_path
) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    (folder / "001_slow.sql").write_text(
        "-- aicrm:lock leads\n-- step: a slow statement\nSELECT pg_sleep(2);\n"
        "ALTER TABLE leads ADD COLUMN slow int;\n"
    )
    args = ("db", "migrate", "--json", "--migrations-dir", str(folder))
    refused = db.cli(*args, "--statement-timeout", "0.2")
    assert refused.returncode == 1
    assert "statement timeout (0.2 s)" in refused.stderr and "--statement-timeout" in refused.stderr
    assert json.loads(refused.stdout)["statement_timeout"] == 0.2
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    # The advice: raise it (0: no bound).
    applied = db.cli(*args, "--statement-timeout", "0")
    assert applied.returncode == 0, applied.stderr
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
    # Transaction-scoped: the server's default is untouched for everyone else.
    assert db.scalar("SHOW statement_timeout") == "0"
