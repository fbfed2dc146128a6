"""Migration 001 is reversible without the backup: 'aicrm db downgrade 000' rebuilds
the legacy columns and circular keys from the new fields and the archive. And the
circular-key warning of pg_dump goes away with 001 (and comes back without it)."""

from __future__ import annotations

import pytest

from tests.conftest import Database
from tests.migrations.legacy import (
    build_every_anomaly,
    foreign_keys,
    legacy_references,
    pg_dump_data_only,
    rows_as_json,
    run_json,
)

CIRCULAR_WARNING = "circular foreign-key constraints"

OWN_OBJECTS = """
SELECT count(*) FROM pg_class
WHERE relname LIKE 'migration\\_001\\_%' OR relname IN ('lead_conversion_summary',
      'client_lead_history')
"""


@pytest.mark.slow
def test_round_trip_gives_back_every_reference_of_the_resolvable_anomalies(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    references, rows, keys = legacy_references(db), rows_as_json(db), foreign_keys(db)
    assert len(keys) == 4 and all(validated for *_, validated in keys)

    up, _ = run_json(db, "db", "migrate", "--target", "001")
    assert up.returncode == 0, up.stderr
    assert (
        db.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE column_name IN "
            "('client_id', 'converted_from_lead_id') AND table_name IN ('leads', 'clients')"
        )
        == 0
    )
    down, report = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert report["outcome"] == "applied"

    assert legacy_references(db) == references
    assert rows_as_json(db) == rows  # every column of every row, updated_at included
    assert foreign_keys(db) == keys  # same names, definitions, validated
    assert db.scalar(OWN_OBJECTS) == 0
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    assert db.cli("db", "verify").returncode == 0

    again, _ = run_json(db, "db", "migrate", "--target", "001")  # and up again
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_round_trip_with_archived_orphans_puts_them_back(db: Database) -> None:
    every = build_every_anomaly(db)
    references, rows, keys = legacy_references(db), rows_as_json(db), foreign_keys(db)

    up, _ = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")
    assert up.returncode == 0, up.stderr
    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr

    assert legacy_references(db) == references
    assert rows_as_json(db) == rows  # the moved contacts are back too
    assert every["K8"] in {str(r[0]) for r in db.execute("SELECT id FROM contacts")}
    # Orphans name no row: the keys on their columns come back NOT VALID.
    assert {(t, n, d) for t, n, d, _ in foreign_keys(db)} == {(t, n, d) for t, n, d, _ in keys}
    assert {n for _, n, _, validated in foreign_keys(db) if not validated} == {
        "leads_client_id_fkey",
        "clients_converted_from_lead_id_fkey",
        "contacts_lead_id_fkey",
        "contacts_client_id_fkey",
    }


@pytest.mark.slow
def test_pg_dump_circular_warning_before_and_not_after(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    before = pg_dump_data_only(db)
    assert before.returncode == 0, before.stderr
    assert CIRCULAR_WARNING in before.stderr

    assert db.cli("db", "migrate", "--target", "001").returncode == 0
    after = pg_dump_data_only(db)
    assert after.returncode == 0, after.stderr
    assert "warning" not in after.stderr.lower(), after.stderr

    assert db.cli("db", "downgrade", "000").returncode == 0
    assert CIRCULAR_WARNING in pg_dump_data_only(db).stderr


@pytest.mark.slow
def test_round_trip_through_every_later_migration_is_exact(db: Database) -> None:
    """Legacy → head (002 also rewrites converted leads' statuses) → 000 gives back
    every row as it was, statuses and updated_at included."""
    build_every_anomaly(db, blocking=False)
    references, rows, keys = legacy_references(db), rows_as_json(db), foreign_keys(db)
    up, report = run_json(db, "db", "migrate")
    assert up.returncode == 0, up.stderr
    assert report["to_version"] >= 2
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted AND status <> 'converted'") == 0
    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert legacy_references(db) == references
    assert rows_as_json(db) == rows
    assert foreign_keys(db) == keys
    assert db.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'migration\\_00%'") == 0
