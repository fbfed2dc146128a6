"""Migration 001's schema: the constraints reject what they must, the views give the
hand-computed numbers, the seed's example queries run (on their indexes), and the
verification finds foreign-key cycles by the catalog, whatever their names."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from tests.conftest import Database
from tests.migrations.legacy import Legacy, day, new_id, run_json

SEED_QUERIES = (
    "SELECT * FROM leads WHERE is_converted = true",
    "SELECT * FROM lead_conversion_summary",
    "SELECT * FROM client_lead_history WHERE client_id = %s",
    "SELECT * FROM leads WHERE is_converted = false",
)


def small_crm(db: Database) -> dict[str, str]:
    """Six leads over three sources (one NULL), three of them converted."""
    legacy = Legacy(db)
    ids: dict[str, str] = {}
    try:
        ids["A"] = legacy.lead(created=day(0), source="web", email="a@example.org")
        ids["CA"] = legacy.client(lead=ids["A"], created=day(10), name="Acme")
        legacy.set_lead_client(ids["A"], ids["CA"])
        ids["B"] = legacy.lead(created=day(0), source="web", email="b@example.org")
        ids["CB"] = legacy.client(lead=ids["B"], created=day(2.5), name="Beta")
        ids["C"] = legacy.lead(created=day(0), source="web")
        ids["D"] = legacy.lead(created=day(0), source=None)
        ids["CE"] = legacy.client(created=day(1), name="Echo")  # before its lead
        ids["E"] = legacy.lead(created=day(4), source=None, client=ids["CE"], email="e@x.org")
        ids["F"] = legacy.lead(created=day(3), source="ads")
        ids["K"] = legacy.contact(lead=ids["C"])
    finally:
        legacy.close()
    return ids


@pytest.fixture
def migrated(db: Database) -> dict[str, str]:
    ids = small_crm(db)
    filenode = db.scalar("SELECT pg_relation_filenode('leads')")
    result, report = run_json(db, "db", "migrate", "--target", "001")
    assert result.returncode == 0, result.stderr
    assert report["to_version"] == 1
    # Fast defaults and a DROP COLUMN: leads was never rewritten.
    assert db.scalar("SELECT pg_relation_filenode('leads')") == filenode
    return ids


def test_lead_conversion_summary_numbers(db: Database, migrated: dict[str, str]) -> None:
    rows = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT source, total_leads, converted_leads, active_leads, conversion_rate, "
            "avg_days_to_convert FROM lead_conversion_summary"
        )
    }
    assert set(rows) == {"web", "unknown", "ads"}
    total, converted, active, rate, days = rows["web"]
    assert (total, converted, active) == (3, 2, 1)
    assert rate == pytest.approx(Decimal(2) / 3)
    assert days == pytest.approx(Decimal("6.25"))  # (10 + 2.5) / 2
    assert rows["unknown"][:3] == (2, 1, 1)
    assert rows["unknown"][3] == Decimal("0.5") and rows["unknown"][4] == 0  # GREATEST
    assert rows["ads"] == (1, 0, 1, 0, None)


def test_client_lead_history_rows(db: Database, migrated: dict[str, str]) -> None:
    ids = migrated
    rows = {
        str(r[2]): r
        for r in db.execute(
            "SELECT client_id, client_name, lead_id, lead_email, lead_source, "
            "lead_created_at, conversion_date, days_to_convert FROM client_lead_history"
        )
    }
    assert set(rows) == {ids["A"], ids["B"], ids["E"]}
    client, name, _, email, source, created, converted, days = rows[ids["A"]]
    assert (str(client), name, email, source) == (ids["CA"], "Acme", "a@example.org", "web")
    assert (created, converted, days) == (day(0), day(10), 10)
    assert rows[ids["B"]][7] == Decimal("2.5")
    _, name, _, email, source, created, converted, days = rows[ids["E"]]
    assert (name, email, source) == ("Echo", "e@x.org", None)
    assert (created, converted, days) == (day(4), day(4), 0)  # the lead came after its client


def test_seed_example_queries_run(db: Database, migrated: dict[str, str]) -> None:
    with db.connect(autocommit=True) as conn:
        counts = [
            len(conn.execute(query, (migrated["CA"],) if "%s" in query else None).fetchall())
            for query in SEED_QUERIES
        ]
    assert counts == [3, 3, 1, 3]


# An index built over HOT-updated rows (the backfill) is used by transactions whose
# snapshot is newer than its build (pg_index.indcheckxmin): on a shared server, another
# session's long transaction can delay that.
INDEXES_USABLE = """
SELECT bool_and(NOT i.indcheckxmin
                OR i.xmin::text::bigint < txid_snapshot_xmin(txid_current_snapshot()) % 4294967296)
FROM pg_index AS i WHERE i.indrelid = 'leads'::regclass
"""


# The seed queries the index test explains, each written out with its EXPLAIN.
EXPLAINED = {
    SEED_QUERIES[0]: "EXPLAIN SELECT * FROM leads WHERE is_converted = true",
    SEED_QUERIES[2]: "EXPLAIN SELECT * FROM client_lead_history WHERE client_id = %s",
    SEED_QUERIES[3]: "EXPLAIN SELECT * FROM leads WHERE is_converted = false",
}


def test_seed_example_queries_can_use_the_new_indexes(
    db: Database, migrated: dict[str, str]
) -> None:
    assert all(explain == f"EXPLAIN {query}" for query, explain in EXPLAINED.items())
    with db.connect() as conn:
        conn.execute("SET enable_seqscan = off")
        if not conn.execute(INDEXES_USABLE).fetchone()[0]:  # type: ignore[index]
            pytest.skip("an older transaction elsewhere on this server holds back the new indexes")
        plans = {
            query: "\n".join(
                str(row[0])
                for row in conn.execute(
                    EXPLAINED[query], (migrated["CA"],) if "%s" in query else None
                )
            )
            for query in (SEED_QUERIES[0], SEED_QUERIES[2], SEED_QUERIES[3])
        }
    assert "leads_is_converted_idx" in plans[SEED_QUERIES[0]]
    assert "leads_is_converted_idx" in plans[SEED_QUERIES[3]]
    assert "leads_converted_to_client_id_idx" in plans[SEED_QUERIES[2]]


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("UPDATE leads SET is_converted = true WHERE id = %(C)s", psycopg.errors.CheckViolation),
        (
            "UPDATE leads SET converted_to_client_id = %(CB)s WHERE id = %(C)s",
            psycopg.errors.CheckViolation,
        ),
        (
            "UPDATE leads SET conversion_date = now() WHERE id = %(C)s",
            psycopg.errors.CheckViolation,
        ),
        ("UPDATE leads SET conversion_date = NULL WHERE id = %(A)s", psycopg.errors.CheckViolation),
        (
            "UPDATE leads SET is_converted = false, converted_to_client_id = NULL WHERE id = %(A)s",
            psycopg.errors.CheckViolation,
        ),
        (
            "UPDATE leads SET is_converted = true, conversion_date = now(), "
            "converted_to_client_id = %(nowhere)s WHERE id = %(C)s",
            psycopg.errors.ForeignKeyViolation,
        ),
        (
            "INSERT INTO contacts (lead_id, client_id) VALUES (%(C)s, %(CA)s)",
            psycopg.errors.CheckViolation,
        ),
        (
            "INSERT INTO contacts (email) VALUES ('nobody@example.org')",
            psycopg.errors.CheckViolation,
        ),
        ("UPDATE contacts SET lead_id = NULL WHERE id = %(K)s", psycopg.errors.CheckViolation),
        ("UPDATE contacts SET client_id = %(CA)s WHERE id = %(K)s", psycopg.errors.CheckViolation),
    ],
)
@pytest.mark.slow
def test_checks_reject_bad_rows(
    db: Database, migrated: dict[str, str], statement: str, error: type[Exception]
) -> None:
    params = {**migrated, "nowhere": new_id()}
    with db.connect(autocommit=True) as conn, pytest.raises(error):
        conn.execute(statement, params)


def test_good_rows_are_accepted(db: Database, migrated: dict[str, str]) -> None:
    ids = migrated
    db.execute(
        "UPDATE leads SET is_converted = true, conversion_date = now(), "
        "converted_to_client_id = %s WHERE id = %s",
        (ids["CB"], ids["C"]),
    )
    db.execute("INSERT INTO contacts (client_id) VALUES (%s)", (ids["CA"],))
    db.execute(
        "UPDATE contacts SET lead_id = NULL, client_id = %s WHERE id = %s", (ids["CA"], ids["K"])
    )
    assert db.scalar("SELECT count(*) FROM leads WHERE is_converted") == 4


@pytest.mark.slow
def test_verify_passes_and_finds_a_cycle_by_the_catalog(
    db: Database, migrated: dict[str, str]
) -> None:
    ok = db.cli("db", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "FAILED" not in ok.stdout

    # A new cycle under a name nobody would guess: leads -> contacts -> leads.
    db.execute("ALTER TABLE leads ADD COLUMN main_contact uuid")
    db.execute(
        'ALTER TABLE leads ADD CONSTRAINT "Lead Main Contact" '
        "FOREIGN KEY (main_contact) REFERENCES contacts (id)"
    )
    broken = db.cli("db", "verify")
    assert broken.returncode == 1
    assert "foreign-key cycle: " in broken.stdout
    assert "leads -> contacts -> leads" in broken.stdout


@pytest.mark.slow
def test_empty_database_goes_to_001_and_back(db: Database) -> None:
    result, report = run_json(db, "db", "migrate", "--target", "001")
    assert result.returncode == 0, result.stderr
    assert report["migrations"] == ["000_original_schema", "001_resolve_circular_fk"]
    assert all(c["ok"] for c in report["verification"])
    assert db.scalar("SELECT max(version) FROM aicrm_schema_migrations") == 1
    down, _ = run_json(db, "db", "downgrade", "000")
    assert down.returncode == 0, down.stderr
    assert db.scalar("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 4
    assert db.cli("db", "migrate", "--target", "001").returncode == 0
