"""Migration 001 on a database holding every anomaly category at once: the dry-run's
findings equal the real run's and the archive's, every legacy reference survives
(expressed by the new structure or archived), and each resolution rule holds."""

from __future__ import annotations

import pytest

from tests.conftest import Database
from tests.migrations.legacy import (
    archived_references,
    build_every_anomaly,
    counts,
    day,
    expressed_references,
    legacy_references,
    reason_counts,
    run_json,
)

CHECKS = (
    "orphan_lead_client_id",
    "orphan_client_converted_from_lead_id",
    "orphan_contact_lead_id",
    "orphan_contact_client_id",
    "contact_without_parent",
    "contact_with_only_orphan_parents",
    "lead_claimed_by_several_clients",
    "lead_client_id_disagrees",
    "lead_converted_only_on_client_side",
    "lead_converted_only_on_lead_side",
    "client_converted_from_several_leads",
    "contact_with_both_parents",
    "contact_lead_link_archived",
)


@pytest.mark.slow
def test_dry_run_findings_equal_the_real_run_and_the_archive(db: Database) -> None:
    every = build_every_anomaly(db)
    expected = {name: every.findings.get(name, 0) for name in CHECKS}

    dry, dry_report = run_json(
        db, "db", "migrate", "--target", "001", "--dry-run", "--archive-orphans"
    )
    assert dry.returncode == 0, dry.stderr
    assert dry_report["outcome"] == "dry run"
    assert counts(dry_report) == expected
    assert db.scalar("SELECT to_regclass('migration_001_link_archive') IS NULL") is True

    real, real_report = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")
    assert real.returncode == 0, real.stderr
    assert counts(real_report) == counts(dry_report)
    assert [(f["check"], f["samples"]) for f in dry_report["findings"]] == [
        (f["check"], f["samples"]) for f in real_report["findings"]
    ]

    # The archive, by reason, is exactly the findings of the categories it holds.
    archive = reason_counts(db, "migration_001_link_archive")
    assert archive == every.archive
    assert all(archive[name] == expected[name] for name in archive)
    moved = reason_counts(db, "migration_001_orphan_contacts")
    assert moved == every.moved
    assert all(moved[name] == expected[name] for name in moved)
    assert reason_counts(db, "migration_001_legacy_values") == every.legacy_values
    # The samples are the rows archived under that reason.
    for finding in real_report["findings"]:
        if finding["check"] in archive:
            rows = {
                str(r[0])
                for r in db.execute(
                    "SELECT row_id FROM migration_001_link_archive WHERE reason LIKE %s",
                    (finding["check"] + ":%",),
                )
            }
            assert set(finding["samples"]) == rows


def test_every_legacy_reference_is_expressed_or_archived(db: Database) -> None:
    build_every_anomaly(db)
    before = legacy_references(db)
    assert len(before) > 20

    result, _ = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")
    assert result.returncode == 0, result.stderr

    kept = expressed_references(db) | archived_references(db)
    missing = sorted(ref for ref in before if ref not in kept)
    assert missing == []
    # and the archive holds only legacy references, none made up
    assert archived_references(db) <= before


@pytest.mark.slow
def test_every_legacy_reference_survives_without_blocking_anomalies(db: Database) -> None:
    build_every_anomaly(db, blocking=False)
    before = legacy_references(db)

    result, report = run_json(db, "db", "migrate", "--target", "001")
    assert result.returncode == 0, result.stderr
    assert not [f for f in report["findings"] if f["severity"] == "blocking" and f["count"]]

    assert before <= expressed_references(db) | archived_references(db)


def test_resolution_rules(db: Database) -> None:
    every = build_every_anomaly(db, blocking=False)
    result, _ = run_json(db, "db", "migrate", "--target", "001")
    assert result.returncode == 0, result.stderr
    conversions = {
        str(lead): (str(client) if client else None, date, converted)
        for lead, client, date, converted in db.execute(
            "SELECT id, converted_to_client_id, conversion_date, is_converted FROM leads"
        )
    }

    def converted(lead: str, client: str, created: float) -> None:
        assert conversions[every[lead]] == (every[client], day(created), True), lead

    # conversion_date = GREATEST(client.created_at, lead.created_at)
    converted("L1", "C1", 40)  # both sides agree
    converted("L2", "C2b", 110)  # several claims: the earliest created_at
    converted("L3", "C3low", 130)  # same created_at: the lowest id
    converted("L4", "C4", 140)  # the claim wins over a disagreeing client_id
    converted("L5", "C5", 150)
    converted("L6", "C6", 160)  # only the client names the lead
    converted("L7", "C7", 75)  # only leads.client_id: the lead is the later one
    converted("L8", "C8", 180)  # a client two leads convert to
    converted("L9", "C8", 180)
    assert conversions[every["L10"]] == (None, None, False)

    archive = {
        (str(t), str(r), str(c)): (str(ref), str(reason))
        for t, r, c, ref, reason in db.execute(
            "SELECT table_name, row_id, column_name, referenced_id, reason "
            "FROM migration_001_link_archive"
        )
    }
    assert set(archive) == {
        ("clients", every["C2a"], "converted_from_lead_id"),
        ("clients", every["C3high"], "converted_from_lead_id"),
        ("leads", every["L4"], "client_id"),
        ("contacts", every["K2"], "lead_id"),
        ("contacts", every["K3"], "lead_id"),
    }
    assert archive["clients", every["C2a"], "converted_from_lead_id"][0] == every["L2"]
    assert archive["leads", every["L4"], "client_id"][0] == every["C5"]
    assert archive["contacts", every["K2"], "lead_id"][0] == every["L6"]
    assert all(reason.split(":")[1].strip() for _, reason in archive.values())

    # Contacts with both parents keep client_id; every contact has exactly one parent.
    contacts = {
        str(k): (str(lead) if lead else None, str(client) if client else None)
        for k, lead, client in db.execute("SELECT id, lead_id, client_id FROM contacts")
    }
    for name in ("K1", "K2", "K3"):
        assert contacts[every[name]] == (None, every["C1"])
    assert contacts[every["K4"]] == (every["L10"], None)
    assert contacts[every["K5"]] == (None, every["C5"])
    # K1's lead link is implied by the conversion L1 -> C1: not archived.
    assert ("contacts", every["K1"], "lead_id") not in archive
