"""Migration 001 on random legacy databases (seeded, reproducible): whatever the mix of
conversions, claims, ties and orphans, the dry-run's findings equal the archive's
rows, every reference survives, and the downgrade gives back every row exactly."""

from __future__ import annotations

import random

import pytest

from tests.conftest import Database
from tests.migrations.legacy import (
    Legacy,
    archived_references,
    counts,
    day,
    expressed_references,
    legacy_references,
    new_id,
    reason_counts,
    rows_as_json,
    run_json,
)


def random_crm(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    legacy = Legacy(db)
    try:
        with legacy.unchecked():
            leads = [legacy.lead(created=day(rng.choice((1, 2, 3, 50)))) for _ in range(25)]
            clients = []
            for _ in range(18):
                claim = rng.choice([None, None, *leads, *leads, new_id()])
                # few distinct moments: ties on created_at are common
                created = day(rng.choice((2, 3, 40, 40, 60)))
                clients.append(legacy.client(lead=claim, created=created))
            for lead in leads:
                legacy.set_lead_client(lead, rng.choice([None, None, None, *clients, new_id()]))
            for _ in range(30):
                legacy.contact(
                    lead=rng.choice([None, None, *leads, new_id()]),
                    client=rng.choice([None, None, *clients, new_id()]),
                )
    finally:
        legacy.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_random_legacy_database_round_trip(db: Database, seed: int) -> None:
    random_crm(db, seed)
    references, rows = legacy_references(db), rows_as_json(db)

    dry, dry_report = run_json(
        db, "db", "migrate", "--target", "001", "--dry-run", "--archive-orphans"
    )
    assert dry.returncode == 0, dry.stderr
    up, report = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")
    assert up.returncode == 0, up.stderr
    found = counts(report)
    assert counts(dry_report) == found

    archive = reason_counts(db, "migration_001_link_archive")
    assert archive == {name: found[name] for name in archive}
    assert sum(archive.values()) == sum(
        found[name]
        for name in found
        if name.startswith("orphan_")
        or name
        in (
            "lead_claimed_by_several_clients",
            "lead_client_id_disagrees",
            "contact_lead_link_archived",
        )
    )
    moved = reason_counts(db, "migration_001_orphan_contacts")
    assert sum(moved.values()) == (
        found["contact_without_parent"] + found["contact_with_only_orphan_parents"]
    )
    assert references <= expressed_references(db) | archived_references(db)

    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert legacy_references(db) == references
    assert rows_as_json(db) == rows
