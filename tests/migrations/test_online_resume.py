"""Fault injection: the online runner SIGKILLed at every phase boundary, inside
expand's steps, inside backfill batches (before their commit) and inside the
switch, then run again: the run resumes and ends exactly where an uninterrupted
(transactional) 001 ends. And `aicrm db downgrade 000` from every phase gives back
the legacy database, row for row."""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import Database
from tests.migrations.legacy import build_every_anomaly, legacy_references, rows_as_json
from tests.migrations.test_online_helpers import drop_twin, end_state, kill_at, migrate, twin

# More leads than one backfill batch holds (the first batch is 500 rows): about
# one in three converted on both sides, some contacts on both parents.
BULK = """
INSERT INTO leads (email, source, created_at, updated_at)
SELECT 'bulk' || g || '@example.org', (ARRAY['web', 'ads', NULL])[1 + g % 3],
       timestamptz '2024-01-01' + g * interval '1 minute', timestamptz '2025-01-01'
FROM generate_series(1, 3000) AS g;
INSERT INTO clients (name, converted_from_lead_id, created_at, updated_at)
SELECT 'client of ' || email, id, created_at + interval '3 days', timestamptz '2025-01-01'
FROM leads WHERE email LIKE 'bulk%' AND abs(hashtext(email)) % 3 = 0;
UPDATE leads l SET client_id = c.id FROM clients c
WHERE c.converted_from_lead_id = l.id AND abs(hashtext(l.email)) % 7 <> 0;
INSERT INTO contacts (lead_id, client_id, email, updated_at)
SELECT l.id, CASE WHEN abs(hashtext(l.email)) % 2 = 0 THEN l.client_id END,
       'k' || l.email, timestamptz '2025-01-01'
FROM leads l WHERE l.email LIKE 'bulk%' AND abs(hashtext(l.email)) % 4 = 0;
ANALYZE;
"""

PHASE_POINTS = [
    "phase:expand",
    "phase:backfill:leads",
    "phase:backfill:clients",
    "phase:backfill:contacts",
    "phase:contract:constraints",
    "phase:contract:validate",
    "phase:contract:indexes",
    "phase:contract:switch",
]
INNER_POINTS = [
    "expand:2",
    "expand:4",
    "expand:6",
    "batch:leads:1",
    "batch:clients:1",
    "batch:contacts:1",
    "contract_constraints:2",
    "contract_validate:2",
    "contract_indexes:1",
    "switch",
]


def legacy(db: Database) -> None:
    build_every_anomaly(db, blocking=True)
    db.execute(BULK)


def _kill_chain(db: Database, points: list[str]) -> list[str]:
    """Kill one run at each point in turn, each run resuming the last; then finish."""
    phases = [kill_at(db, point, "--target", "001", "--archive-orphans") for point in points]
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 0
    status = db.cli("db", "status", "--json")
    assert json.loads(status.stdout)["online"]["phase"] == phases[-1]
    migrate(db, "--target", "001")  # resumes without --online, keeps --archive-orphans
    return phases


def _check_against_transactional(db: Database, reference: Database) -> None:
    migrate(reference, "--target", "001", "--archive-orphans")
    assert end_state(db) == end_state(reference)


@pytest.mark.slow
def test_kill_at_every_phase_boundary_then_resume(db: Database) -> None:
    legacy(db)
    reference = twin(db, "tx")
    try:
        phases = _kill_chain(db, PHASE_POINTS)
        assert phases == [p.removeprefix("phase:") for p in PHASE_POINTS]
        _check_against_transactional(db, reference)
    finally:
        drop_twin(reference)


@pytest.mark.slow
def test_kill_inside_steps_and_batches_then_resume(db: Database) -> None:
    legacy(db)
    reference = twin(db, "tx")
    try:
        _kill_chain(db, INNER_POINTS)
        _check_against_transactional(db, reference)
    finally:
        drop_twin(reference)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 8])
def test_kill_at_random_backfill_batches(db: Database, seed: int) -> None:
    legacy(db)
    rng = random.Random(seed)
    points = [
        f"batch:{table}:{rng.randint(1, 3 if table == 'leads' else 1)}"
        for table in ("leads", "leads", "clients", "contacts")
    ]
    reference = twin(db, "tx")
    try:
        _kill_chain(db, points)
        _check_against_transactional(db, reference)
    finally:
        drop_twin(reference)


@pytest.mark.parametrize(
    "point",
    ["phase:backfill:leads", "batch:contacts:1", "phase:contract:indexes", "phase:contract:switch"],
)
@pytest.mark.slow
def test_downgrade_from_any_phase(db: Database, point: str) -> None:
    legacy(db)
    references, rows = legacy_references(db), rows_as_json(db)
    kill_at(db, point, "--target", "001", "--archive-orphans")
    down = db.cli("db", "downgrade", "000", "--json")
    assert down.returncode == 0, down.stderr
    assert legacy_references(db) == references
    assert rows_as_json(db) == rows
    assert db.scalar("SELECT to_regclass('aicrm_online_migration')") is None
    assert db.scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'migration\\_001%'") == 0
    assert db.scalar("SELECT count(*) FROM pg_proc WHERE proname LIKE 'migration\\_001%'") == 0
    # and the online run can start again from scratch
    migrate(db, "--target", "001", "--online", "--archive-orphans")
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
