"""A dry-run executes for real, reports what the real run does, and keeps nothing."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Database
from tests.support import copy_migrations, schema_dump, table_digests

CHANGE = """-- aicrm:lock leads, contacts
-- step: add a column and backfill it
ALTER TABLE leads ADD COLUMN domain text;
UPDATE leads SET domain = split_part(email, '@', 2);
-- step: index it and drop the stale contacts
CREATE INDEX leads_domain_idx ON leads (domain);
DELETE FROM contacts WHERE email IS NULL;
"""


def _database_at_000_with_data(db: Database, tmp_path):
    folder = copy_migrations(tmp_path / "m", (0,))
    assert db.cli("db", "migrate", "--migrations-dir", str(folder)).returncode == 0
    db.execute(
        "INSERT INTO leads (email) SELECT 'lead' || i || '@example.com' "
        "FROM generate_series(1, 25) i;"
        "INSERT INTO contacts (lead_id, email) SELECT id, NULL FROM leads LIMIT 4;"
    )
    (folder / "001_domain.sql").write_text(CHANGE)
    return folder


@pytest.mark.slow
def test_dry_run_leaves_schema_and_data_unchanged(db: Database, tmp_path) -> None:
    folder = _database_at_000_with_data(db, tmp_path)
    schema, digests = schema_dump(db), table_digests(db)
    backups = set((tmp_path / "backups").iterdir())

    result = db.cli("db", "migrate", "--dry-run", "--json", "--migrations-dir", str(folder))

    assert result.returncode == 0, result.stderr
    assert schema_dump(db) == schema
    assert table_digests(db) == digests
    assert set((tmp_path / "backups").iterdir()) == backups
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["outcome"] == "dry run"
    assert report["backup"] is None
    assert "column leads.domain text" in report["objects_added"]
    assert "index leads_domain_idx" in report["objects_added"]
    changes = {r["table"]: r for r in report["rows_changed"]}
    assert changes["leads"]["updated"] == 25
    assert changes["contacts"]["deleted"] == 4


@pytest.mark.slow
def test_dry_run_reports_what_the_real_run_then_does(db: Database, tmp_path) -> None:
    folder = _database_at_000_with_data(db, tmp_path)
    dry = json.loads(
        db.cli("db", "migrate", "--dry-run", "--json", "--migrations-dir", str(folder)).stdout
    )
    real_run = db.cli("db", "migrate", "--json", "--migrations-dir", str(folder))
    assert real_run.returncode == 0, real_run.stderr
    real = json.loads(real_run.stdout)
    assert dry["objects_added"] == real["objects_added"]
    assert dry["objects_dropped"] == real["objects_dropped"]
    assert dry["rows_changed"] == real["rows_changed"]
    assert dry["findings"] == real["findings"]
    assert db.scalar("SELECT count(*) FROM leads WHERE domain = 'example.com'") == 25


def test_dry_run_text_report_says_nothing_was_kept(db: Database, tmp_path) -> None:
    folder = _database_at_000_with_data(db, tmp_path)
    result = db.cli("db", "migrate", "--dry-run", "--migrations-dir", str(folder))
    assert result.returncode == 0
    assert "dry run: rolled back, nothing kept" in result.stdout
    assert "leads: 0 inserted, 25 updated, 0 deleted" in result.stdout
