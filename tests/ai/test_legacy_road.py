"""The upgraded legacy database: the original schema with years of leads and
backdated conversions, no status history, migrated to head. Migration 010 writes the
history the data proves (each lead's creation, each conversion at its
conversion_date, marked reconstructed); training reads no status it cannot date, so
today's status (which tells the outcome) never reaches a training row."""

from __future__ import annotations

import re

import pytest

from aicrm.ai import scoring
from aicrm.ai._features import Feature, creation_frame
from aicrm.sample import generate_legacy
from aicrm.sample._legacy import UNTIL
from tests.conftest import Database

LEADS = 1_500


@pytest.fixture
def upgraded(db: Database) -> Database:
    done = db.cli("db", "migrate", "--target", "000")
    assert done.returncode == 0, done.stderr
    with db.connect() as conn:
        generate_legacy(conn, leads=LEADS, anomalies=False)
        # 002 refuses statuses it does not know; as its refusal advises, fix them first
        conn.execute("UPDATE leads SET status = 'converted' WHERE status = 'won'")
        conn.execute(
            "UPDATE leads SET status = 'lost' WHERE status NOT IN "
            "('new', 'contacted', 'qualified', 'unqualified', 'lost', 'converted')"
        )
    done = db.cli("db", "migrate")
    assert done.returncode == 0, done.stderr
    return db


@pytest.mark.slow
def test_the_migration_writes_the_history_the_data_proves(upgraded: Database) -> None:
    leads = upgraded.scalar("SELECT count(*) FROM leads")
    converted = upgraded.scalar(
        "SELECT count(*) FROM leads WHERE is_converted AND conversion_date IS NOT NULL"
    )
    assert converted > 0
    created = upgraded.execute(
        "SELECT count(*), count(*) FILTER (WHERE h.changed_at = l.created_at "
        "AND h.changes = jsonb_build_object('id', l.id, 'created_at', l.created_at)) "
        "FROM crm_history h JOIN leads l ON l.id = h.row_id "
        "WHERE h.operation = 'insert' AND h.reconstructed AND h.actor = 'aicrm:reconstructed'"
    )
    assert created == [(leads, leads)]
    conversions = upgraded.execute(
        "SELECT count(*), count(*) FILTER (WHERE h.changed_at = l.conversion_date "
        "AND NOT h.changes ? 'status' "
        "AND h.changes -> 'converted_to_client_id' ->> 1 = l.converted_to_client_id::text) "
        "FROM crm_history h JOIN leads l ON l.id = h.row_id "
        "WHERE h.operation = 'update' AND h.reconstructed"
    )
    assert conversions == [(converted, converted)]
    # nothing else is reconstructed, and running it again writes nothing
    assert upgraded.scalar("SELECT count(*) FROM crm_history WHERE reconstructed") == (
        leads + converted
    )
    assert upgraded.scalar("SELECT aicrm_reconstruct_lead_history()") == 0
    # lead_status_periods still starts each lead at its creation, as before 010
    assert (
        upgraded.scalar(
            "SELECT count(DISTINCT lead_id) FROM lead_status_periods WHERE status IS NOT NULL"
        )
        == leads
    )


@pytest.mark.slow
def test_todays_status_is_not_read_into_the_past(upgraded: Database) -> None:
    with upgraded.connect() as conn:
        frame = creation_frame(conn, [Feature("status", "category", categories=["new", "lost"])],
                               horizon=90)  # fmt: skip
    assert len(frame) == LEADS
    assert (frame.values[:, 0] == 0).all()  # unknown at creation, for every lead


@pytest.mark.slow
def test_training_leaves_the_undated_status_out_and_says_why(upgraded: Database) -> None:
    with upgraded.connect() as conn:
        result = scoring.train(conn, as_of=UNTIL, actor="test")
    assert result.model.method == "model"
    used = {c.feature for c in result.model.encoding.columns}
    assert not used & {"status", "status_changes", "days_in_status", "reached_qualified"}
    left_out = next(n for n in result.notes if n.startswith("Left out (the same"))
    assert "status" in left_out and "days_in_status" in left_out
    note = next(n for n in result.notes if n.startswith("The status history does not say"))
    counted = re.search(r"the status of (\d+) of the (\d+) labelled leads at their creation", note)
    assert counted is not None and counted[1] == counted[2] == str(result.model.n_leads)
    # no leak: the reported quality is not the 0.957 today's status gave
    assert result.model.metrics["auc"] < 0.8
    held = result.model.metrics["holdout"]
    assert held["leads"] > 0 and abs(held["auc"] - result.model.metrics["auc"]) < 0.1


@pytest.mark.slow
def test_the_downgrade_removes_what_010_wrote(upgraded: Database) -> None:
    before = upgraded.scalar("SELECT count(*) FROM crm_history WHERE NOT reconstructed")
    done = upgraded.cli("db", "downgrade", "009")
    assert done.returncode == 0, done.stderr
    assert upgraded.scalar("SELECT count(*) FROM crm_history") == before
    assert (
        upgraded.scalar(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'crm_history'::regclass "
            "AND attname = 'reconstructed' AND NOT attisdropped"
        )
        == 0
    )
