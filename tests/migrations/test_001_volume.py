"""Migration 001 at volume (slow): a few hundred thousand rows with anomalies in
bulk, to keep the set-based statements honest. The 1M-lead benchmark lives elsewhere."""

from __future__ import annotations

import pytest
from psycopg import sql

from aicrm.db.script import trusted
from tests.conftest import Database
from tests.migrations.legacy import LEGACY_REFERENCES, counts, reason_counts, run_json
from tests.support import MIGRATIONS

BULK = """
INSERT INTO leads (email, source, created_at, updated_at)
SELECT 'lead' || g || '@example.org', (ARRAY['web', 'ads', NULL])[1 + g % 3],
       timestamptz '2024-01-01' + g * interval '1 minute', timestamptz '2025-01-01'
FROM generate_series(1, 200000) AS g;
-- every third lead converted, both sides naming each other
INSERT INTO clients (name, converted_from_lead_id, created_at, updated_at)
SELECT 'client of ' || email, id, created_at + interval '3 days', timestamptz '2025-01-01'
FROM (SELECT id, email, created_at, row_number() OVER (ORDER BY created_at) AS n FROM leads) l
WHERE n % 3 = 0;
UPDATE leads l SET client_id = c.id FROM clients c WHERE c.converted_from_lead_id = l.id;
-- a second, later claim on every tenth of them; one side only on every seventh
INSERT INTO clients (name, converted_from_lead_id, created_at, updated_at)
SELECT 'second claim', converted_from_lead_id, created_at + interval '1 day', updated_at
FROM clients WHERE abs(hashtext(id::text)) % 10 = 0;
UPDATE leads SET client_id = NULL WHERE abs(hashtext(id::text)) % 7 = 0;
-- contacts: on leads, on clients, and some on both
INSERT INTO contacts (lead_id, client_id, email, updated_at)
SELECT CASE WHEN n % 4 <> 1 THEN id END, CASE WHEN n % 4 IN (1, 2) THEN client_id END,
       'contact' || n || '@example.org', timestamptz '2025-01-01'
FROM (SELECT id, client_id, row_number() OVER (ORDER BY created_at) AS n FROM leads) l
WHERE client_id IS NOT NULL OR n % 2 = 0;
"""

REFERENCE_DIGEST = sql.SQL(
    "SELECT count(*), md5(string_agg(r::text, ',' ORDER BY r::text)) FROM ({}) AS r"
).format(sql.SQL(LEGACY_REFERENCES))


@pytest.mark.slow
def test_bulk_anomalies_round_trip(db: Database) -> None:
    db.execute(trusted((MIGRATIONS / "000_original_schema.sql").read_text()))
    db.execute(BULK)
    db.execute("ANALYZE")
    before = db.execute(REFERENCE_DIGEST)[0]
    stamps = db.scalar("SELECT md5(string_agg(updated_at::text, ',' ORDER BY id)) FROM leads")

    up, report = run_json(db, "db", "migrate", "--target", "001", timeout=600)
    assert up.returncode == 0, up.stderr
    found = counts(report)
    assert found["lead_claimed_by_several_clients"] > 1000
    assert found["lead_converted_only_on_client_side"] > 1000
    assert found["contact_with_both_parents"] > 1000
    assert reason_counts(db, "migration_001_link_archive") == {
        name: found[name]
        for name in (
            "lead_claimed_by_several_clients",
            "lead_client_id_disagrees",
            "contact_lead_link_archived",
        )
        if found[name]
    }
    assert (
        db.scalar("SELECT md5(string_agg(updated_at::text, ',' ORDER BY id)) FROM leads") == stamps
    )

    down, _ = run_json(db, "db", "downgrade", "000", timeout=600)
    assert down.returncode == 0, down.stderr
    assert db.execute(REFERENCE_DIGEST)[0] == before
