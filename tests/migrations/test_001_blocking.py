"""Migration 001, blocking anomalies: orphaned references and contacts without a
parent refuse the run (exit 3, nothing changed, a report per category), and
--archive-orphans archives and clears them instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.conftest import Database
from tests.migrations.legacy import Legacy, findings, new_id, reason_counts, run_json
from tests.support import schema_dump, table_digests

BLOCKING = (
    "orphan_lead_client_id",
    "orphan_client_converted_from_lead_id",
    "orphan_contact_lead_id",
    "orphan_contact_client_id",
    "contact_without_parent",
    "contact_with_only_orphan_parents",
)


@dataclass
class Case:
    offender: str  # the id the report must show
    counts: dict[str, int]  # non-zero blocking findings expected
    archive: dict[str, int] = field(default_factory=dict)  # link archive rows by reason
    moved: dict[str, int] = field(default_factory=dict)  # orphan contacts by reason


def orphan_lead_client_id(legacy: Legacy) -> Case:
    # A restore that re-added the key NOT VALID let this one through.
    legacy.execute("ALTER TABLE leads DROP CONSTRAINT leads_client_id_fkey")
    lead = legacy.lead(client=new_id())
    legacy.execute(
        "ALTER TABLE leads ADD CONSTRAINT leads_client_id_fkey "
        "FOREIGN KEY (client_id) REFERENCES clients (id) NOT VALID"
    )
    return Case(lead, {"orphan_lead_client_id": 1}, {"orphan_lead_client_id": 1})


def orphan_client_converted_from_lead_id(legacy: Legacy) -> Case:
    with legacy.unchecked():
        client = legacy.client(lead=new_id())
    return Case(
        client,
        {"orphan_client_converted_from_lead_id": 1},
        {"orphan_client_converted_from_lead_id": 1},
    )


def orphan_contact_lead_id(legacy: Legacy) -> Case:
    _, client = legacy.converted()
    with legacy.unchecked():
        contact = legacy.contact(lead=new_id(), client=client)
    return Case(contact, {"orphan_contact_lead_id": 1}, {"orphan_contact_lead_id": 1})


def orphan_contact_client_id(legacy: Legacy) -> Case:
    lead = legacy.lead()
    with legacy.unchecked():
        contact = legacy.contact(lead=lead, client=new_id())
    return Case(contact, {"orphan_contact_client_id": 1}, {"orphan_contact_client_id": 1})


def contact_without_parent(legacy: Legacy) -> Case:
    contact = legacy.contact()
    return Case(contact, {"contact_without_parent": 1}, moved={"contact_without_parent": 1})


def contact_with_only_orphan_parents(legacy: Legacy) -> Case:
    with legacy.unchecked():
        contact = legacy.contact(lead=new_id())
    return Case(
        contact,
        {"orphan_contact_lead_id": 1, "contact_with_only_orphan_parents": 1},
        {"orphan_contact_lead_id": 1},
        {"contact_with_only_orphan_parents": 1},
    )


CASES: dict[str, Callable[[Legacy], Case]] = {
    "orphan_lead_client_id": orphan_lead_client_id,
    "orphan_client_converted_from_lead_id": orphan_client_converted_from_lead_id,
    "orphan_contact_lead_id": orphan_contact_lead_id,
    "orphan_contact_client_id": orphan_contact_client_id,
    "contact_without_parent": contact_without_parent,
    "contact_with_only_orphan_parents": contact_with_only_orphan_parents,
}


def build(db: Database, category: str) -> Case:
    legacy = Legacy(db)
    try:
        legacy.converted()  # a healthy conversion next to the anomaly
        return CASES[category](legacy)
    finally:
        legacy.close()


@pytest.mark.parametrize("category", BLOCKING)
def test_blocking_anomaly_refuses_with_exit_3_and_changes_nothing(
    db: Database, category: str
) -> None:
    case = build(db, category)
    schema, digests = schema_dump(db), table_digests(db)

    result, report = run_json(db, "db", "migrate", "--target", "001")

    assert result.returncode == 3, result.stderr
    assert report["outcome"] == "refused"
    assert category in result.stderr and "--archive-orphans" in result.stderr
    found = findings(report)
    assert {name: f["count"] for name, f in found.items() if f["severity"] == "blocking"} == {
        name: case.counts.get(name, 0) for name in BLOCKING
    }
    finding = found[category]
    assert case.offender in finding["samples"]
    listed = db.execute(finding["query"])  # the query that lists them all
    assert [str(row[0]) for row in listed] == [case.offender]
    assert schema_dump(db) == schema and table_digests(db) == digests
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True
    assert not list(db.workdir.glob("backups/*.sql"))  # refused before the backup


@pytest.mark.parametrize("category", BLOCKING)
@pytest.mark.slow
def test_archive_orphans_archives_and_clears(db: Database, category: str) -> None:
    case = build(db, category)

    result, report = run_json(db, "db", "migrate", "--target", "001", "--archive-orphans")

    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "applied"
    assert {n: f["count"] for n, f in findings(report).items() if f["count"]} == case.counts
    archived = reason_counts(db, "migration_001_link_archive")
    assert archived == case.archive
    assert reason_counts(db, "migration_001_orphan_contacts") == case.moved
    for reason in db.execute("SELECT reason FROM migration_001_link_archive"):
        assert "orphan" in str(reason[0])
    if case.moved:  # the whole row moved, with its columns
        assert db.scalar("SELECT count(*) FROM contacts WHERE id = %s", (case.offender,)) == 0
        assert (
            db.scalar(
                "SELECT email FROM migration_001_orphan_contacts WHERE id = %s", (case.offender,)
            )
            == f"contact-{case.offender[:8]}@example.org"
        )
    elif category.startswith("orphan_contact"):  # cleared, the other parent kept
        parents = db.execute(
            "SELECT lead_id, client_id FROM contacts WHERE id = %s", (case.offender,)
        )
        cleared = 0 if category == "orphan_contact_lead_id" else 1
        assert parents[0][cleared] is None
        assert (
            db.scalar(
                "SELECT num_nonnulls(lead_id, client_id) FROM contacts WHERE id = %s",
                (case.offender,),
            )
            == 1
        )
    # Nothing left that names no row.
    assert (
        db.scalar(
            "SELECT count(*) FROM contacts k WHERE (k.lead_id IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM leads l WHERE l.id = k.lead_id)) OR (k.client_id IS NOT NULL AND "
            "NOT EXISTS (SELECT 1 FROM clients c WHERE c.id = k.client_id))"
        )
        == 0
    )
    assert db.cli("db", "verify").returncode == 0


@pytest.mark.slow
def test_text_report_names_each_category_with_count_samples_and_query(db: Database) -> None:
    legacy = Legacy(db)
    cases = {category: CASES[category](legacy) for category in BLOCKING}
    legacy.close()

    result = db.cli("db", "migrate", "--target", "001")

    assert result.returncode == 3
    lines = result.stdout.splitlines()
    for category, case in cases.items():
        expected = 2 if category == "orphan_contact_lead_id" else 1
        header = next(i for i, line in enumerate(lines) if f" {category} [blocking]" in line)
        assert lines[header].split()[0] == str(expected)
        assert lines[header + 1].strip().startswith("samples:")
        assert case.offender in lines[header + 1]
        query = lines[header + 2].strip()
        assert query.startswith("list all: ")
        listed = db.execute(query.removeprefix("list all: "))
        assert case.offender in {str(row[0]) for row in listed}
    assert "Nothing was changed" in result.stderr
    assert db.scalar("SELECT to_regclass('aicrm_schema_migrations') IS NULL") is True

    # A dry-run refuses the same way, with the same counts.
    dry, report = run_json(db, "db", "migrate", "--target", "001", "--dry-run")
    assert dry.returncode == 3
    assert {n: f["count"] for n, f in findings(report).items() if f["severity"] == "blocking"} == {
        category: 2 if category == "orphan_contact_lead_id" else 1 for category in BLOCKING
    }
