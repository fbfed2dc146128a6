"""Recognising the original schema without a ledger, refusing strangers, and drift."""

from __future__ import annotations

import json

import pytest

from aicrm.migrate import loader
from tests.conftest import Database
from tests.support import copy_migrations

# The original schema as real databases hold it: other constraint names, an extra
# column, index and trigger, and no aicrm ledger.
ORIGINAL_IN_THE_WILD = """
CREATE TABLE leads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), client_id uuid,
    first_name text, last_name text, email text, company_name text, source text,
    status text NOT NULL DEFAULT 'new', ai_score real, ai_summary text,
    ai_annotations jsonb NOT NULL DEFAULT '{}', attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    region text
);
CREATE TABLE clients (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    converted_from_lead_id uuid CONSTRAINT fk_client_origin REFERENCES leads (id),
    name text NOT NULL, industry text, ai_score real, ai_summary text,
    ai_annotations jsonb NOT NULL DEFAULT '{}', attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE leads ADD CONSTRAINT fk_lead_customer FOREIGN KEY (client_id) REFERENCES clients (id);
CREATE TABLE contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    lead_id uuid REFERENCES leads (id), client_id uuid REFERENCES clients (id),
    first_name text, last_name text, email text, title text,
    ai_annotations jsonb NOT NULL DEFAULT '{}', attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX leads_region_idx ON leads (region);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER leads_touch BEFORE UPDATE ON leads FOR EACH ROW EXECUTE FUNCTION touch();
INSERT INTO leads (email, source, region) VALUES ('a@example.com', 'web', 'emea');
"""


def test_original_schema_without_ledger_is_recorded_as_baseline(db: Database, tmp_path) -> None:
    db.execute(ORIGINAL_IN_THE_WILD)
    status = json.loads(db.cli("db", "status", "--json").stdout)
    assert status["shape"] == "original" and status["version"] == 0
    folder = copy_migrations(tmp_path / "m", (0,))
    result = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["baseline_recorded"] is True
    assert report["backup"] is not None
    rows = db.execute("SELECT version, kind FROM aicrm_schema_migrations")
    assert rows == [(0, "baseline")]
    # Nothing of the user's was touched.
    assert db.scalar("SELECT region FROM leads") == "emea"
    assert db.scalar("SELECT to_regclass('leads_region_idx') IS NOT NULL") is True
    assert db.scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'leads_touch'") == 1


def test_baseline_then_carries_on_with_later_migrations(db: Database, tmp_path) -> None:
    db.execute(ORIGINAL_IN_THE_WILD)
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_extra.sql").write_text(
        "-- aicrm:lock leads\n-- step: add a column\nALTER TABLE leads ADD COLUMN extra int;\n"
    )
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert result.returncode == 0, result.stderr
    assert "recorded as baseline 000" in result.stdout
    assert db.execute("SELECT version, kind FROM aicrm_schema_migrations ORDER BY 1") == [
        (0, "baseline"),
        (1, "applied"),
    ]


def test_unrecognised_database_is_refused_with_what_was_found(db: Database) -> None:
    db.execute("CREATE TABLE invoices (id int); CREATE TABLE leads (id uuid PRIMARY KEY)")
    result = db.cli("db", "migrate")
    assert result.returncode == 2
    assert "invoices" in result.stderr and "leads.client_id" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True
    assert db.scalar("SELECT to_regclass('clients') IS NULL") is True


@pytest.mark.slow
def test_edited_applied_file_is_drift_and_blocks_until_allowed(db: Database, tmp_path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    original = folder / "000_original_schema.sql"
    original.write_text(original.read_text() + "\n-- edited after it was applied\n")
    (folder / "001_extra.sql").write_text("-- step: add\nCREATE TABLE extra (id int);\n")

    status = json.loads(db.cli("db", "status", "--json", "--migrations-dir", str(folder)).stdout)
    assert status["drift"] == ["000_original_schema"]

    blocked = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert blocked.returncode == 2
    assert "000_original_schema changed since" in blocked.stderr
    assert db.scalar("SELECT to_regclass('extra') IS NULL") is True

    allowed = db.cli("db", "migrate", "--allow-drift", "--migrations-dir", str(folder))
    assert allowed.returncode == 0, allowed.stderr
    assert db.scalar("SELECT to_regclass('extra') IS NOT NULL") is True


def test_a_gap_in_the_numbering_is_refused(db: Database, tmp_path) -> None:
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "002_skipped_one.sql").write_text("CREATE TABLE x (id int);\n")
    result = db.cli("db", "migrate", "--migrations-dir", str(folder))
    assert result.returncode == 2
    assert "without gaps" in result.stderr


@pytest.mark.slow
def test_an_earlier_checksum_named_by_the_file_is_not_drift(db: Database, tmp_path) -> None:
    """A file may name the checksums of its earlier versions (``-- aicrm:earlier-checksum``):
    a ledger row holding one of them is not drift; any other checksum still is."""
    folder = copy_migrations(tmp_path / "m", (0,))
    (folder / "001_extra.sql").write_text("-- step: add\nCREATE TABLE extra (id int);\n")
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    earlier = db.scalar("SELECT checksum FROM aicrm_schema_migrations WHERE version = 1")

    # The file changes (same end state), naming the checksum it had when applied.
    (folder / "001_extra.sql").write_text(
        f"-- aicrm:earlier-checksum {earlier}\n-- step: add\nCREATE TABLE extra (id int);\n"
    )
    status = json.loads(db.cli("db", "status", "--json", "--migrations-dir", str(folder)).stdout)
    assert status["drift"] == []
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0

    # A checksum the file does not name is drift, as before.
    db.execute("UPDATE aicrm_schema_migrations SET checksum = 'x' || checksum WHERE version = 1")
    status = json.loads(db.cli("db", "status", "--json", "--migrations-dir", str(folder)).stdout)
    assert status["drift"] == ["001_extra"]
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 2


@pytest.mark.slow
def test_001_accepts_the_checksum_of_its_version_before_the_lock_time_change(
    db: Database,
) -> None:
    """Databases that applied 001 before it resolved conversions ahead of its locks
    hold that file's checksum in their ledger: still not drift."""
    before = "4c5a2b5d10856ee25e9495927202da832b753dab40e398e5b6754756c16ab6ef"
    first = loader.load()[1]
    assert first.checksum != before
    assert first.accepts(before) and first.accepts(first.checksum)
    assert not first.accepts("0" * 64)
    assert db.cli("db", "migrate", "--target", "001").returncode == 0
    db.execute("UPDATE aicrm_schema_migrations SET checksum = %s WHERE version = 1", (before,))
    status = json.loads(db.cli("db", "status", "--json").stdout)
    assert status["drift"] == []
    assert db.cli("db", "migrate").returncode == 0
